// `azd up` entry point: one resource group per azd environment, everything in it from
// app.bicep. Parameters come from main.parameters.json, i.e. from `azd env set NAME value`.
// docs/deployment.md explains each one and how every app setting is provided.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('The azd environment name; names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource: one where Flex Consumption offers Python 3.13.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Function app name; default func-<token>. Letters, digits and hyphens, starting with a letter: the Durable task hub is named after it.')
param functionAppName string = ''

// Twilio: the account and its credentials.
@description('TWILIO_ACCOUNT_SID: the Account SID (AC...).')
param twilioAccountSid string

@secure()
@description('TWILIO_AUTH_TOKEN: the primary auth token (REST auth unless an API key is set; always webhook signatures). Stored in Key Vault.')
param twilioAuthToken string

@description('TWILIO_API_KEY_SID: an API key SID (SK...) for REST auth instead of the auth token; empty for none.')
param twilioApiKeySid string = ''

@secure()
@description('TWILIO_API_KEY_SECRET: that API key\'s secret, stored in Key Vault; empty for none.')
param twilioApiKeySecret string = ''

// Senders and destinations.
@description('TWILIO_FROM_NUMBER: default sender (E.164); needed for calls, and for SMS without a Messaging Service.')
param twilioFromNumber string = ''

@description('TWILIO_MESSAGING_SERVICE_SID: default SMS sender when no number is set (MG...).')
param twilioMessagingServiceSid string = ''

@description('TWILIO_ALLOWED_SENDERS: other senders a caller may pick (comma list of E.164 / MG...).')
param twilioAllowedSenders string = ''

@description('ALLOWED_COUNTRIES: destination countries (comma list of ISO codes, or *); empty: the default sender\'s country.')
param allowedCountries string = ''

@description('DEFAULT_REGION: region for national-format numbers (ISO code, e.g. US).')
param defaultRegion string = ''

@description('TWIML_ALLOWED_HOSTS: hosts a caller may point Twilio at, MakeCall\'s url and audio messages (comma list).')
param twimlAllowedHosts string = ''

@description('PUBLIC_BASE_URL: only for a custom domain or a front door; empty: https://<the app\'s default host name>.')
param publicBaseUrl string = ''

// What a caller may spend (empty: the app's defaults, 5/hour, 30/hour, 1000/day).
@description('LIMIT_PER_DESTINATION: N/second|minute|hour|day or off; empty: the app\'s default.')
param limitPerDestination string = ''

@description('LIMIT_PER_CALLER: N/second|minute|hour|day or off; empty: the app\'s default.')
param limitPerCaller string = ''

@description('LIMIT_GLOBAL: N/second|minute|hour|day or off; empty: the app\'s default.')
param limitGlobal string = ''

// Who may call the mobile routes. Never function keys: a key shipped in an app is public.
@allowed(['jwt', 'easyauth'])
@description('CALLER_AUTH: jwt (the app checks bearer tokens) or easyauth (App Service Authentication with Microsoft Entra ID).')
param callerAuth string = 'jwt'

@minLength(1)
@description('jwt: the audience (aud) tokens must carry (JWT_AUDIENCE); easyauth: the Entra app registration\'s client ID.')
param authAudience string

@description('The token issuer; empty: Microsoft Entra ID v2.0 of the deploying tenant.')
param authIssuer string = ''

@description('JWT_JWKS_URL: the issuer\'s signing keys (jwt); empty with an empty authIssuer: Entra\'s keys of the deploying tenant.')
param jwtJwksUrl string = ''

@description('JWT_REQUIRED_SCOPE: a scope every token must carry (jwt); empty for none.')
param jwtRequiredScope string = ''

@description('JWT_REQUIRED_ROLE: an app role every caller must have (jwt and easyauth); empty for none.')
param jwtRequiredRole string = ''

// Scale and resilience.
@allowed([2048, 4096])
@description('Memory of each instance (MB).')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('The most instances the app scales out to.')
param maximumInstanceCount int = 100

@minValue(0)
@description('Always-ready instances for HTTP functions: 1 or more spares Twilio\'s 15 s TwiML wait a cold start (billed while idle).')
param alwaysReadyHttp int = 0

@minValue(0)
@description('Always-ready instances for Durable functions (Microsoft recommends 1 on Flex Consumption).')
param alwaysReadyDurable int = 1

@description('Zone-redundant plan (where the region supports it; always-ready instances are then billed on at least two).')
param zoneRedundant bool = false

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
@description('Redundancy of the storage account (host storage, Durable state and the app\'s tables).')
param storageSku string = 'Standard_LRS'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module app 'app.bicep' = {
  name: 'app'
  scope: group
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    functionAppName: !empty(functionAppName) ? functionAppName : 'func-${resourceToken}'
    twilioAccountSid: twilioAccountSid
    twilioAuthToken: twilioAuthToken
    twilioApiKeySid: twilioApiKeySid
    twilioApiKeySecret: twilioApiKeySecret
    twilioFromNumber: twilioFromNumber
    twilioMessagingServiceSid: twilioMessagingServiceSid
    twilioAllowedSenders: twilioAllowedSenders
    allowedCountries: allowedCountries
    defaultRegion: defaultRegion
    twimlAllowedHosts: twimlAllowedHosts
    publicBaseUrl: publicBaseUrl
    limitPerDestination: limitPerDestination
    limitPerCaller: limitPerCaller
    limitGlobal: limitGlobal
    callerAuth: callerAuth
    authAudience: authAudience
    authIssuer: authIssuer
    jwtJwksUrl: jwtJwksUrl
    jwtRequiredScope: jwtRequiredScope
    jwtRequiredRole: jwtRequiredRole
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttp: alwaysReadyHttp
    alwaysReadyDurable: alwaysReadyDurable
    zoneRedundant: zoneRedundant
    storageSku: storageSku
  }
}

// azd writes these into .azure/<env>/.env. None of them is a parameter's variable, so no
// output feeds back into the next provision.
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output AZURE_KEY_VAULT_NAME string = app.outputs.keyVaultName
@description('The app\'s base URL (its PUBLIC_BASE_URL): the real default host name, or the custom one.')
output APP_BASE_URL string = app.outputs.baseUrl
@description('For a Twilio number\'s voice webhook (A call comes in), GET or POST.')
output TWIML_URL string = app.outputs.twimlUrl
@description('For a Twilio number\'s call status changes (POST); SendSms and MakeCall set it per request themselves.')
output STATUS_CALLBACK_URL string = app.outputs.statusCallbackUrl
@description('For a Twilio number\'s voice webhook (A call comes in), GET or POST: forward, else voicemail.')
output INCOMING_CALL_URL string = app.outputs.incomingCallUrl
@description('For a Twilio number\'s or Messaging Service\'s incoming messages (A message comes in), POST.')
output INCOMING_SMS_URL string = app.outputs.incomingSmsUrl
