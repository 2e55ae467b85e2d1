// The app and everything it reaches, in one resource group: a Flex Consumption function app
// (Python 3.13, system-assigned identity), its storage account (no shared keys), Key Vault
// for the Twilio secrets, and Application Insights with Entra-only ingestion.
// Plain resources, no registry modules, no `if` resources (a condition goes on a module
// call instead): checkov then sees every property, offline (`make test`).
// Keep comment runs short inside objects: checkov's Bicep parser refuses more than four
// comment or blank lines after a property, which `make test` reports as a parse failure.
targetScope = 'resourceGroup'

param location string
param tags object
param resourceToken string
param functionAppName string

param twilioAccountSid string
@secure()
param twilioAuthToken string
param twilioApiKeySid string
@secure()
param twilioApiKeySecret string
param twilioFromNumber string
param twilioMessagingServiceSid string
param twilioAllowedSenders string
param allowedCountries string
param defaultRegion string
param twimlAllowedHosts string
param publicBaseUrl string
param limitPerDestination string
param limitPerCaller string
param limitGlobal string

@allowed(['jwt', 'easyauth'])
param callerAuth string
param authAudience string
param authIssuer string
param jwtJwksUrl string
param jwtRequiredScope string
param jwtRequiredRole string

param instanceMemoryMB int
param maximumInstanceCount int
param alwaysReadyHttp int
param alwaysReadyDurable int
param zoneRedundant bool
param storageSku string

// Must match host.json (extensions.http.routePrefix) and the routes in TwiML/,
// StatusCallback/ and IncomingCall/; tests/test_deploy.py checks that they do.
var routePrefix = 'api'
var deploymentContainerName = 'app-package'
var authTokenSecretName = 'twilio-auth-token'
var apiKeySecretName = 'twilio-api-key-secret'
var storageSuffix = environment().suffixes.storage
var entraIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
var entraKeys = '${environment().authentication.loginEndpoint}${tenant().tenantId}/discovery/v2.0/keys'
var issuer = !empty(authIssuer) ? authIssuer : entraIssuer
// Durable's rules for a task hub: letters and digits, starting with a letter, 3-45 long.
var taskHubName = take(replace(functionAppName, '-', ''), 45)
// Always-ready instances per scale group; a group with none is left out.
var alwaysReadyHttpGroup = alwaysReadyHttp > 0 ? [{ name: 'http', instanceCount: alwaysReadyHttp }] : []
var alwaysReadyDurableGroup = alwaysReadyDurable > 0 ? [{ name: 'durable', instanceCount: alwaysReadyDurable }] : []

// Built-in role definitions (the same IDs in every tenant).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  /*
    checkov:skip=CKV_AZURE_206: redundancy is the storageSku parameter (LRS by default): the account holds the deployment package, Durable's queues and history, and short-lived app state (24 h idempotency keys, limit windows); Twilio enforces opt-outs itself too (21610)
    checkov:skip=CKV_AZURE_43: the name is 'st' + uniqueString(), 15 lowercase letters and digits; checkov cannot evaluate a computed name
    checkov:skip=CKV_AZURE_35: a default-deny firewall needs VNet integration and private endpoints, without which Flex Consumption can neither run from nor deploy to the account; access is Entra-only (allowSharedKeyAccess false)
    checkov:skip=CKV_AZURE_59: as CKV_AZURE_35: the public endpoint stays on, usable only with an Entra token and the roles below
  */
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {}
}

// Where azd deploy and func publish put the app package; the app reads it with its identity.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  /*
    checkov:skip=CKV_AZURE_109: Key Vault references from a Flex Consumption app without VNet integration reach the vault over its public endpoint; reading a secret still takes an Entra token and the Secrets User role (RBAC only)
    checkov:skip=CKV_AZURE_189: as CKV_AZURE_109
  */
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

module authTokenSecret 'modules/secret.bicep' = {
  name: 'secret-auth-token'
  params: {
    vaultName: vault.name
    name: authTokenSecretName
    value: twilioAuthToken
  }
}

module apiKeySecret 'modules/secret.bicep' = if (!empty(twilioApiKeySecret)) {
  name: 'secret-api-key'
  params: {
    vaultName: vault.name
    name: apiKeySecretName
    value: twilioApiKeySecret
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

// Telemetry is accepted only with an Entra token: the app's identity, as Monitoring
// Metrics Publisher (APPLICATIONINSIGHTS_AUTHENTICATION_STRING tells the host to use it).
resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  /*
    checkov:skip=CKV_AZURE_225: zone redundancy is the zoneRedundant parameter (off by default): not every Flex Consumption region has it, and it bills always-ready instances in at least two zones
  */
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

// azd deploys azure.yaml's `api` service to the site tagged with its name.
resource site 'Microsoft.Web/sites@2024-04-01' = {
  /*
    checkov:skip=CKV_AZURE_222: Twilio's webhooks (TwiML, StatusCallback) and the mobile apps reach the app over the internet; every route authenticates its caller (Twilio's signature, a bearer token or Easy Auth)
    checkov:skip=CKV_AZURE_17: neither Twilio's webhooks nor the mobile apps present client certificates
    checkov:skip=CKV_AZURE_78: Flex Consumption rejects siteConfig.ftpsState (ARM error 51021) and has no FTP deployment at all
    checkov:skip=CKV_AZURE_212: Flex Consumption scales through functionAppConfig.scaleAndConcurrency; siteConfig.numberOfWorkers does not apply to it
    checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health-check instance replacement; /api/health answers external probes
    checkov:skip=CKV_AZURE_18: siteConfig.http20Enabled is left out: Flex Consumption rejects several siteConfig properties, and this one is not documented as accepted there
    checkov:skip=CKV_AZURE_67: as CKV_AZURE_18 (the same property, checked for function apps)
  */
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: concat(alwaysReadyHttpGroup, alwaysReadyDurableGroup)
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

// The app's identity: blob, queue and table for the host and Durable (blob also for the
// deployment package, table for the app's own tables), the Twilio secrets, telemetry.
resource blobRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, site.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, site.id, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, site.id, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, site.id, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, site.id, monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: site.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

module easyAuth 'modules/easyauth.bicep' = if (callerAuth == 'easyauth') {
  name: 'easyauth'
  params: {
    siteName: site.name
    issuer: issuer
    clientId: authAudience
  }
}

// The app's real address: the site's default host name, which may be a unique one
// (<name>-<hash>.<region>-01.azurewebsites.net), unless a custom domain is given.
var baseUrl = !empty(publicBaseUrl) ? publicBaseUrl : 'https://${site.properties.defaultHostName}'

// App settings. tests/test_deploy.py reads the keys of these four objects.
// The Functions host: storage through the identity, telemetry with Entra, the task hub.
// The worker configures OpenTelemetry with Azure Monitor itself (shared/telemetry.py);
// the HTTP instrumentations that record full URLs and exception texts are left off.
var hostSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__blobServiceUri: 'https://${storage.name}.blob.${storageSuffix}'
  AzureWebJobsStorage__queueServiceUri: 'https://${storage.name}.queue.${storageSuffix}'
  AzureWebJobsStorage__tableServiceUri: 'https://${storage.name}.table.${storageSuffix}'
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: 'requests,urllib3,urllib'
  TASKHUB_NAME: taskHubName
}

// The app (shared/settings.py), where an empty value counts as unset.
var appSettings = {
  TWILIO_ACCOUNT_SID: twilioAccountSid
  TWILIO_AUTH_TOKEN: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${authTokenSecretName})'
  TWILIO_API_KEY_SID: twilioApiKeySid
  TWILIO_FROM_NUMBER: twilioFromNumber
  TWILIO_MESSAGING_SERVICE_SID: twilioMessagingServiceSid
  TWILIO_ALLOWED_SENDERS: twilioAllowedSenders
  ALLOWED_COUNTRIES: allowedCountries
  DEFAULT_REGION: defaultRegion
  TWIML_ALLOWED_HOSTS: twimlAllowedHosts
  PUBLIC_BASE_URL: baseUrl
  LIMIT_PER_DESTINATION: limitPerDestination
  LIMIT_PER_CALLER: limitPerCaller
  LIMIT_GLOBAL: limitGlobal
  CALLER_AUTH: callerAuth
  JWT_REQUIRED_ROLE: jwtRequiredRole
}

// A reference to a secret that does not exist would reach the app as the literal
// "@Microsoft.KeyVault(...)" text, so the API key secret is referenced only when given.
var apiKeySettings = empty(twilioApiKeySecret) ? {} : {
  TWILIO_API_KEY_SECRET: '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${apiKeySecretName})'
}

var jwtSettings = callerAuth != 'jwt' ? {} : {
  JWT_ISSUER: issuer
  JWT_AUDIENCE: authAudience
  JWT_JWKS_URL: !empty(jwtJwksUrl) ? jwtJwksUrl : (empty(authIssuer) ? entraKeys : '')
  JWT_REQUIRED_SCOPE: jwtRequiredScope
}

// Roles and secrets first: the host then starts with its storage, vault and telemetry
// access in place, rather than failing and caching a failed Key Vault reference.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  /*
    checkov applies its Microsoft.Web/sites/config checks to every config name; these belong to others (web, authsettingsV2, azurestorageaccounts):
    checkov:skip=CKV_AZURE_13: caller authentication is CALLER_AUTH: bearer tokens checked by the app, or authsettingsV2 (modules/easyauth.bicep)
    checkov:skip=CKV_AZURE_63: HTTP logging belongs to the web config resource; the app logs to Application Insights
    checkov:skip=CKV_AZURE_65: detailed error pages belong to the web config resource; the app answers problem+json itself
    checkov:skip=CKV_AZURE_66: failed request tracing belongs to the web config resource; Application Insights records failures
    checkov:skip=CKV_AZURE_80: .NET Framework version belongs to the web config resource and does not apply to Python
    checkov:skip=CKV_AZURE_88: Azure Files belongs to the azurestorageaccounts config; Flex Consumption runs from a blob container
    checkov:skip=CKV_AZURE_222: public network access belongs to the site (see above): Twilio and the mobile apps reach the app over the internet
  */
  parent: site
  name: 'appsettings'
  properties: union(hostSettings, appSettings, apiKeySettings, jwtSettings)
  dependsOn: [
    blobRole
    queueRole
    tableRole
    secretsRole
    telemetryRole
    authTokenSecret
    apiKeySecret
  ]
}

output functionAppName string = site.name
output keyVaultName string = vault.name
output baseUrl string = baseUrl
output twimlUrl string = '${baseUrl}/${routePrefix}/TwiML'
output statusCallbackUrl string = '${baseUrl}/${routePrefix}/StatusCallback'
output incomingCallUrl string = '${baseUrl}/${routePrefix}/IncomingCall'
output incomingSmsUrl string = '${baseUrl}/${routePrefix}/IncomingSms'
