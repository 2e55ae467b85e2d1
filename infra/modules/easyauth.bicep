// App Service Authentication (Easy Auth) with Microsoft Entra ID, for CALLER_AUTH=easyauth.
// It validates tokens and injects X-MS-CLIENT-PRINCIPAL* (removing any a client sent).
// Anonymous requests still pass: Twilio's webhooks, health and the OpenAPI document are
// anonymous, and the app itself refuses callers who are not signed in on mobile routes.
param siteName string
param issuer string
param clientId string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  /*
    checkov:skip=CKV_AZURE_13: false positive: this resource is App Service Authentication; the check reads the v1 authsettings shape (properties.enabled), this is authsettingsV2 (platform.enabled)
    checkov:skip=CKV_AZURE_63: HTTP logging belongs to the web config resource, not authsettingsV2; the app logs to Application Insights
    checkov:skip=CKV_AZURE_65: detailed error pages belong to the web config resource; the app answers problem+json itself
    checkov:skip=CKV_AZURE_66: failed request tracing belongs to the web config resource; Application Insights records failures
    checkov:skip=CKV_AZURE_80: .NET Framework version belongs to the web config resource and does not apply to Python
    checkov:skip=CKV_AZURE_88: Azure Files belongs to the azurestorageaccounts config; Flex Consumption runs from a blob container
    checkov:skip=CKV_AZURE_222: public network access belongs to the site (see app.bicep): Twilio and the mobile apps reach the app over the internet
  */
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          openIdIssuer: issuer
          clientId: clientId
        }
        validation: {
          allowedAudiences: [
            clientId
            'api://${clientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
