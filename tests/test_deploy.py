"""The deployment: infra/ (Bicep for azd), azure.yaml, .funcignore and the GitHub workflow.

No Bicep compiler installs offline, so these read the templates as text: the settings the
template gives the app against the settings the code reads (both ways), the parameters
main.bicep passes on, and the properties production depends on. checkov scans the same
files in `make infra` (scripts/check_infra.py); the last tests show that gate failing.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from shared.deliveries import STATUS_CALLBACK_ROUTE
from shared.inbound import INCOMING_SMS_ROUTE
from shared.inbound_calls import INCOMING_CALL_ROUTE
from shared.webhooks import ROUTE_PREFIX
from tests.conftest import ROOT

INFRA = ROOT / "infra"
MAIN = (INFRA / "main.bicep").read_text()
APP = (INFRA / "app.bicep").read_text()
TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"

# Settings the template sets that no code of ours reads: the Functions host reads them.
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential": "host storage through the managed identity",
    "AzureWebJobsStorage__blobServiceUri": "host storage (blob): keys, leases, Durable",
    "AzureWebJobsStorage__queueServiceUri": "host storage (queue): Durable's queues",
    "AzureWebJobsStorage__tableServiceUri": "host storage (table): Durable's history, and the app's state",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "the host's telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry with an Entra token",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "the worker configures Azure Monitor",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "the distro's URL-recording instrumentations off",
}
# A connection the host resolves from NAME or, identity-based, from NAME__* settings.
HOST_CONNECTIONS = {"AzureWebJobsStorage"}


# --- reading Bicep as text -------------------------------------------------------------


def _string_end(code: str, start: int) -> int:
    """The index of the quote closing the Bicep string opened at `start` (\\' escapes)."""
    i = start + 1
    while code[i] != "'":
        i += 2 if code[i] == "\\" else 1
    return i


def without_comments(text: str) -> str:
    """Bicep without // and /* */ comments (strings, which may hold '//', are kept)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "'":
            end = _string_end(text, i)
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
        elif text.startswith("/*", i):
            i = text.find("*/", i) + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def statement(text: str, start: str) -> str:
    """From the line beginning with `start` to the end of its statement (brackets closed)."""
    code = without_comments(text)
    match = re.search(rf"^{re.escape(start)}", code, re.MULTILINE)
    assert match, start
    depth, i = 0, match.start()
    while i < len(code):
        char = code[i]
        if char == "'":
            i = _string_end(code, i)
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == "\n" and depth == 0:
            break
        i += 1
    return code[match.start() : i]


def object_keys(expression: str) -> list[str]:
    """Keys of the object literals in an expression: one property per line, as Bicep writes."""
    return re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", expression, re.MULTILINE)


def template_settings() -> dict[str, str]:
    """Each app setting the template sets, with the expression that sets it."""
    resource = statement(APP, "resource settings 'Microsoft.Web/sites/config@")
    groups = re.search(r"^\s*properties: union\(([^)]*)\)", resource, re.MULTILINE)
    assert groups, "the appsettings resource is a union() of settings objects"
    settings: dict[str, str] = {}
    for name in (g.strip() for g in groups.group(1).split(",")):
        for line in statement(APP, f"var {name} = ").splitlines():
            found = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.+)$", line)
            if found:
                settings[found.group(1)] = found.group(2).strip()
    return settings


def params(text: str) -> dict[str, str | None]:
    """Each `param` of a Bicep file, with its default's source text (None: required)."""
    found = re.findall(r"^param (\w+) \w+(?: = (.+))?$", without_comments(text), re.MULTILINE)
    return {name: default or None for name, default in found}


# --- what the code reads --------------------------------------------------------------

# shared.settings reads through its _Env helper: env.get("KEY"), env.number("KEY", ...).
_ENV_READERS = {
    "get", "matching", "csv", "region", "number", "boolean", "choice", "limit", "base_url",
}  # fmt: skip


def settings_read_by(source: str) -> set[str]:
    """Environment keys a module reads: os.environ, os.getenv, and shared.settings' env
    (directly, or through a helper it is passed to)."""
    environ = {"os.environ", "environ"}
    keys: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            key, receiver, method = node.args[0], ast.unparse(node.func.value), node.func.attr
            reads = (
                (receiver in environ and method in {"get", "pop"})
                or (receiver == "os" and method == "getenv")
                or (receiver == "env" and method in _ENV_READERS)
            )
        elif (
            isinstance(node, ast.Call) and len(node.args) > 1 and ast.unparse(node.args[0]) == "env"
        ):
            key, reads = node.args[1], True  # a helper given the reader: _hostnames(env, "KEY")
        elif isinstance(node, ast.Subscript):
            key, reads = node.slice, ast.unparse(node.value) in environ
        else:
            continue
        if reads and isinstance(key, ast.Constant) and isinstance(key.value, str):
            keys.add(key.value)
    return keys


def app_sources() -> list[Path]:
    """function_app.py, the folders it registers, and shared/: everything Azure runs."""
    composition = ast.parse((ROOT / "function_app.py").read_text())
    folders = [
        node.module
        for node in composition.body
        if isinstance(node, ast.ImportFrom) and node.module and (ROOT / node.module).is_dir()
    ]
    files = [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]
    for folder in folders:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def code_settings() -> set[str]:
    keys: set[str] = set()
    for path in app_sources():
        keys |= settings_read_by(path.read_text())
    host_json = (ROOT / "host.json").read_text()
    return keys | set(re.findall(r"%(\w+)%", host_json))  # host.json's app-setting references


def documented_settings() -> tuple[set[str], set[str]]:
    """(optional keys of the settings table in docs/settings.md, keys it says the platform
    sets)."""
    text = (ROOT / "docs" / "settings.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    optional: set[str] = set()
    for row in (line for line in section.splitlines() if line.startswith("| `")):
        cells = row.strip().strip("|").split("|")
        if cells[-1].strip() == "no":
            optional |= set(re.findall(r"`(\w+)`", cells[0]))
    platform = section.split("Set by the platform and read too:", 1)[1].split("\n\n", 1)[0]
    return optional, set(re.findall(r"`(\w+)` \(", platform))  # each: `KEY` (what for)


# --- settings: code ⇄ template ---------------------------------------------------------


def test_the_docs_say_which_settings_are_optional_and_which_the_platform_sets() -> None:
    optional, platform = documented_settings()
    assert sorted(platform) == [
        "AZURE_FUNCTIONS_ENVIRONMENT", "PYTHON_THREADPOOL_THREAD_COUNT", "WEBSITE_AUTH_ENABLED",
        "WEBSITE_HOSTNAME", "WEBSITE_INSTANCE_ID",
    ]  # fmt: skip
    assert {"TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET", "JWT_LEEWAY_SECONDS"} <= optional
    assert sorted(optional & {"TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL", "JWT_ISSUER"}) == []


def test_the_reader_finds_each_way_the_code_reads_a_setting() -> None:
    source = """
import os
from os import environ
def f(env, other):
    os.environ.get("A"); os.environ["B"]; os.getenv("C"); environ.get("D")
    env.get("E"); env.number("F", 1.0, low=0, high=1); env.base_url("G"); _hosts(env, "H")
    other.get("NOT_A_SETTING"); env.get(variable); os.environ.get(f"X{1}"); f(other, "NO")
"""
    assert sorted(settings_read_by(source)) == ["A", "B", "C", "D", "E", "F", "G", "H"]


@pytest.mark.parametrize("key", sorted(code_settings()))
def test_each_setting_the_code_reads_is_set_by_the_template_or_optional(key: str) -> None:
    template = set(template_settings())
    optional, platform = documented_settings()
    provided = (
        key in template
        or (key in HOST_CONNECTIONS and any(t.startswith(f"{key}__") for t in template))
        or key in optional
        or key in platform
    )
    assert provided, (
        f"{key}: set it in infra/app.bicep, or document it as optional in docs/settings.md"
    )


def test_each_setting_the_template_sets_is_read_by_the_code_or_the_host() -> None:
    stale = set(template_settings()) - code_settings() - set(HOST_SETTINGS)
    assert sorted(stale) == []
    assert sorted(set(HOST_SETTINGS) - set(template_settings())) == []


def test_the_template_sets_exactly_these_settings() -> None:
    settings = template_settings()
    assert sorted(settings) == sorted([
        *HOST_SETTINGS, "TASKHUB_NAME",
        "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET",
        "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID", "TWILIO_ALLOWED_SENDERS",
        "ALLOWED_COUNTRIES", "DEFAULT_REGION", "TWIML_ALLOWED_HOSTS", "PUBLIC_BASE_URL",
        "LIMIT_PER_DESTINATION", "LIMIT_PER_CALLER", "LIMIT_GLOBAL", "CALLER_AUTH",
        "JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL", "JWT_REQUIRED_SCOPE", "JWT_REQUIRED_ROLE",
    ])  # fmt: skip
    # The Twilio secrets are Key Vault references, never values.
    assert settings["TWILIO_AUTH_TOKEN"] == (
        "'@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${authTokenSecretName})'"
    )
    assert settings["TWILIO_API_KEY_SECRET"] == (
        "'@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${apiKeySecretName})'"
    )
    assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "'Authorization=AAD'"
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "'true'"
    # They record full URLs (Twilio's list calls filter by phone number) and exception texts.
    assert settings["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] == "'requests,urllib3,urllib'"
    assert settings["PUBLIC_BASE_URL"] == "baseUrl"
    assert settings["TASKHUB_NAME"] == "taskHubName"
    assert settings["CALLER_AUTH"] == "callerAuth"


def test_no_setting_of_the_old_consumption_plans_on_flex() -> None:
    # Flex Consumption takes the runtime from functionAppConfig and rejects these.
    deprecated = {
        "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTSHARE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "WEBSITE_TIME_ZONE", "TZ",
    }  # fmt: skip
    assert sorted(deprecated & set(template_settings())) == []


# --- the template's guarantees ----------------------------------------------------------


def test_public_base_url_is_the_sites_real_host_name_or_a_custom_one() -> None:
    assert statement(APP, "var baseUrl = ") == (
        "var baseUrl = !empty(publicBaseUrl) ? publicBaseUrl : "
        "'https://${site.properties.defaultHostName}'"
    )
    # Never a guessed <name>.azurewebsites.net: Flex may give a unique default host name.
    for path in INFRA.rglob("*.bicep"):
        assert "azurewebsites.net" not in without_comments(path.read_text()), path


def test_the_urls_for_twilio_are_the_routes_the_app_serves() -> None:
    assert statement(APP, "var routePrefix = ") == f"var routePrefix = '{ROUTE_PREFIX}'"
    assert statement(APP, "output twimlUrl ") == (
        "output twimlUrl string = '${baseUrl}/${routePrefix}/TwiML'"
    )
    assert statement(APP, "output statusCallbackUrl ") == (
        f"output statusCallbackUrl string = '${{baseUrl}}/${{routePrefix}}/{STATUS_CALLBACK_ROUTE}'"
    )
    assert statement(APP, "output incomingSmsUrl ") == (
        f"output incomingSmsUrl string = '${{baseUrl}}/${{routePrefix}}/{INCOMING_SMS_ROUTE}'"
    )
    twiml = (ROOT / "TwiML" / "__init__.py").read_text()
    assert '@bp.route(route="TwiML"' in twiml
    assert statement(APP, "output incomingCallUrl ") == (
        f"output incomingCallUrl string = '${{baseUrl}}/${{routePrefix}}/{INCOMING_CALL_ROUTE}'"
    )


def test_the_durable_task_hub_is_named_after_the_app() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["durableTask"]["hubName"] == "%TASKHUB_NAME%"
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert example["TASKHUB_NAME"] == "TwilioFunctions"
    assert statement(APP, "var taskHubName = ") == (
        "var taskHubName = take(replace(functionAppName, '-', ''), 45)"
    )
    assert statement(MAIN, "    functionAppName: ") == (
        "    functionAppName: !empty(functionAppName) ? functionAppName : 'func-${resourceToken}'"
    )


def test_flex_consumption_with_python_3_13_and_a_system_identity() -> None:
    site = statement(APP, "resource site 'Microsoft.Web/sites@")
    assert "kind: 'functionapp,linux'" in site
    assert re.search(r"identity: \{\s*type: 'SystemAssigned'\s*\}", site)
    assert re.search(r"runtime: \{\s*name: 'python'\s*version: '3.13'\s*\}", site)
    assert re.search(r"authentication: \{\s*type: 'SystemAssignedIdentity'\s*\}", site)
    assert "httpsOnly: true" in site
    assert "'azd-service-name': 'api'" in site
    plan = statement(APP, "resource plan 'Microsoft.Web/serverfarms@")
    assert re.search(r"sku: \{\s*tier: 'FlexConsumption'\s*name: 'FC1'\s*\}", plan)


def test_storage_takes_entra_tokens_only() -> None:
    storage = statement(APP, "resource storage 'Microsoft.Storage/storageAccounts@")
    for line in (
        "allowSharedKeyAccess: false",
        "allowBlobPublicAccess: false",
        "minimumTlsVersion: 'TLS1_2'",
        "supportsHttpsTrafficOnly: true",
    ):
        assert f"\n    {line}\n" in storage, line


def test_key_vault_uses_rbac_with_soft_delete_and_purge_protection() -> None:
    vault = statement(APP, "resource vault 'Microsoft.KeyVault/vaults@")
    for line in (
        "enableRbacAuthorization: true",
        "enableSoftDelete: true",
        "enablePurgeProtection: true",
    ):
        assert f"\n    {line}\n" in vault, line
    # The secrets come from @secure() parameters, all the way from main.bicep.
    secure = r"@secure\(\)\s*(?:@description\([^\n]*\)\s*)?param (\w+) string"
    assert re.findall(secure, MAIN) == ["twilioAuthToken", "twilioApiKeySecret"]
    assert re.findall(secure, APP) == ["twilioAuthToken", "twilioApiKeySecret"]
    secret = (INFRA / "modules" / "secret.bicep").read_text()
    assert re.findall(secure, secret) == ["value"]


def test_the_apps_identity_gets_exactly_these_roles() -> None:
    roles = {
        "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
        "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    }
    for name, guid in roles.items():
        assert statement(APP, f"var {name} = ") == f"var {name} = '{guid}'"
    assignments = re.findall(
        r"^resource (\w+) 'Microsoft\.Authorization/roleAssignments@2022-04-01' = \{\n"
        r"  name: guid\((\w+)\.id, site\.id, (\w+)\)\n  scope: (\w+)\n",
        without_comments(APP),
        re.MULTILINE,
    )
    assert assignments == [
        ("blobRole", "storage", "storageBlobDataOwner", "storage"),
        ("queueRole", "storage", "storageQueueDataContributor", "storage"),
        ("tableRole", "storage", "storageTableDataContributor", "storage"),
        ("secretsRole", "vault", "keyVaultSecretsUser", "vault"),
        ("telemetryRole", "insights", "monitoringMetricsPublisher", "insights"),
    ]
    assert APP.count("principalId: site.identity.principalId") == 5
    insights = statement(APP, "resource insights 'Microsoft.Insights/components@")
    assert "DisableLocalAuth: true" in insights


def test_callers_authenticate_with_jwt_or_easy_auth_never_function_keys() -> None:
    assert "@allowed(['jwt', 'easyauth'])\n" in MAIN
    assert params(MAIN)["callerAuth"] == "'jwt'"
    assert statement(APP, "module easyAuth ").startswith(
        "module easyAuth 'modules/easyauth.bicep' = if (callerAuth == 'easyauth') {"
    )
    assert statement(APP, "var jwtSettings = ").startswith(
        "var jwtSettings = callerAuth != 'jwt' ? {} : {"
    )


def test_checkov_sees_every_resource() -> None:
    # checkov never scans registry modules, and reads a conditional or looped resource at the
    # wrong level: conditions go on local module calls, whose files it scans on their own.
    for path in INFRA.rglob("*.bicep"):
        code = without_comments(path.read_text())
        assert not re.search(r"^module \w+ 'br[:/]", code, re.MULTILINE), path
        assert not re.search(r"^resource .*= (if|\[)", code, re.MULTILINE), path


# --- parameters: azd env → main.bicep → app.bicep ------------------------------------


def test_main_passes_every_parameter_app_bicep_takes() -> None:
    module = statement(MAIN, "module app 'app.bicep' = ")
    passed = object_keys(module.split("params: {", 1)[1])
    assert sorted(passed) == sorted(params(APP))


def test_each_parameter_comes_from_an_azd_environment_value_with_the_same_default() -> None:
    mapping = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main = params(MAIN)
    assert sorted(mapping) == sorted(main)
    for name, entry in mapping.items():
        found = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", entry["value"])
        assert found, name
        default = main[name]
        if found.group(2) is not None:  # `${VAR=default}`: the same default as the Bicep
            assert default in (f"'{found.group(2)}'", found.group(2)), name
        else:  # `${VAR}`: required (azd asks), or empty meaning "the default"
            assert default in (None, "''"), name
    # Outputs land in the azd environment too: none may feed back as a parameter.
    outputs = set(re.findall(r"^output (\w+) ", MAIN, re.MULTILINE))
    variables = set(re.findall(r"\$\{(\w+)", json.dumps(mapping)))
    assert sorted(outputs & variables) == []
    assert sorted(outputs) == sorted([
        "AZURE_TENANT_ID", "AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME",
        "AZURE_KEY_VAULT_NAME", "APP_BASE_URL", "TWIML_URL", "STATUS_CALLBACK_URL",
        "INCOMING_CALL_URL",
        "INCOMING_SMS_URL",
    ])  # fmt: skip


def test_azure_yaml_deploys_this_folder_to_the_tagged_function_app() -> None:
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert project["services"] == {
        "api": {"project": ".", "language": "python", "host": "function"}
    }


# --- what gets deployed ---------------------------------------------------------------


def _ignored(relative: Path, is_dir: bool, patterns: list[str]) -> bool:
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if directory_only and not is_dir:
            continue
        if fnmatch.fnmatch(relative.name, pattern) or fnmatch.fnmatch(str(relative), pattern):
            return True
    return False


def test_funcignore_leaves_only_the_app_in_the_package() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    packaged: set[str] = set()
    for name in tracked:
        path = Path(name)
        parents = [Path(*path.parts[: i + 1]) for i in range(len(path.parts) - 1)]
        if any(_ignored(p, True, patterns) for p in parents) or _ignored(path, False, patterns):
            continue
        packaged.add(path.parts[0])
    assert sorted(packaged) == [
        "Broadcast", "Cleanup", "Conversations", "DeliveryStatus", "Health", "IncomingCall",
        "IncomingSms", "MakeCall", "OpenApi", "SendSms", "StatusCallback", "TwiML",
        "function_app.py", "host.json", "requirements.txt", "shared",
    ]  # fmt: skip


# --- the workflow ---------------------------------------------------------------------


def test_ci_tests_every_push_and_deploys_main_with_openid_connect() -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    workflow = yaml.safe_load(text)
    assert workflow[True] == {"push": None, "pull_request": None}  # YAML 1.1 reads `on` as True
    assert workflow["permissions"] == {"contents": "read"}
    test, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]
    assert test["steps"][-1] == {"run": "make test"}
    assert "permissions" not in test
    assert deploy["needs"] == "test"
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["permissions"] == {"contents": "read", "id-token": "write"}
    runs = [step.get("run", "") for step in deploy["steps"]]
    assert runs[-2:] == [
        'azd auth login --client-id "$AZURE_CLIENT_ID" --tenant-id "$AZURE_TENANT_ID" '
        "--federated-credential-provider github",
        "azd deploy api --no-prompt",
    ]
    # No stored secret anywhere: the federated credential replaces it.
    assert "secrets." not in re.sub(r"#.*", "", text)


# --- the checkov gate -------------------------------------------------------------------


def _check_infra(directory: Path) -> tuple[int, str]:
    if not TOOLS_PYTHON.exists():
        pytest.fail("the tools venv is missing: `make tools` (make test) installs checkov there")
    run = subprocess.run(
        [str(TOOLS_PYTHON), str(ROOT / "scripts" / "check_infra.py"), str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    return run.returncode, run.stdout


STORAGE = """resource stg 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  /*
    %s
  */
  name: 'stdemo'
  location: 'westeurope'
  sku: {
    name: 'Standard_GRS'
  }
  kind: 'StorageV2'
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    publicNetworkAccess: 'Disabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
    }
  }
}
"""


def test_the_checkov_gate_fails_on_a_file_it_cannot_parse(tmp_path: Path) -> None:
    (tmp_path / "good.bicep").write_text(STORAGE % "no suppression here")
    # Five comment lines after a property: valid Bicep that checkov's parser refuses.
    comments = "".join(f"  // {n}\n" for n in ("one", "two", "three", "four", "five"))
    (tmp_path / "bad.bicep").write_text(
        STORAGE.replace("  location:", f"{comments}  location:") % "no suppression here"
    )
    assert _check_infra(tmp_path) == (
        1,
        f"check-infra: could not parse {tmp_path}/bad.bicep: "
        "checkov skipped it, so nothing in it was checked\n",
    )


def test_the_checkov_gate_fails_on_a_suppression_without_a_reason(tmp_path: Path) -> None:
    (tmp_path / "main.bicep").write_text(STORAGE % "checkov:skip=CKV_AZURE_206")
    assert _check_infra(tmp_path) == (
        1,
        "check-infra: CKV_AZURE_206 on Microsoft.Storage/storageAccounts.stg is skipped without a reason\n",
    )
