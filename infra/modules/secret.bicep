// One Key Vault secret, written by the deployment (a control-plane operation: provisioning
// needs no data-plane role on the vault). A module rather than a conditional resource, so
// that checkov sees its properties (it does not look inside `if` resources).
param vaultName string
param name string
@secure()
param value string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  /*
    checkov:skip=CKV_AZURE_41: Twilio's auth tokens and API keys do not expire; an expiry here would break the app's Key Vault reference, and every webhook signature check with it. Rotate in Twilio's console, then azd env set + azd provision
  */
  parent: vault
  name: name
  properties: {
    value: value
    contentType: 'text/plain'
  }
}
