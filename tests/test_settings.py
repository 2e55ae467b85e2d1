from __future__ import annotations

import subprocess
import sys

import pytest

from shared.errors import InvalidSetting, MissingSetting
from shared.settings import Secret, Settings, get_settings, load_settings
from tests.conftest import ACCOUNT_SID, ROOT

TOKEN = "super-secret-token-value"


def test_defaults_from_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings == Settings(worker_threads=settings.worker_threads)
    assert settings.twilio_mode == "missing"
    assert settings.twilio_timeout == 10.0
    assert settings.validate_signatures is True
    assert settings.twiml_default_voice == "woman"


def test_empty_values_count_as_unset() -> None:
    settings = load_settings({"TWILIO_ACCOUNT_SID": "", "TWILIO_TIMEOUT_SECONDS": "  "})
    assert settings.account_sid is None
    assert settings.twilio_timeout == 10.0


def test_modes() -> None:
    live = load_settings({"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": TOKEN})
    sandbox = load_settings(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_API_BASE_URL": "http://127.0.0.1:7072/",
        }
    )
    assert (live.twilio_mode, sandbox.twilio_mode) == ("live", "sandbox")
    assert sandbox.twilio_api_base_url == "http://127.0.0.1:7072"


def test_lists_and_flags_are_parsed() -> None:
    settings = load_settings(
        {
            "ALLOWED_COUNTRIES": "us, ca ,*",
            "TWILIO_ALLOWED_SENDERS": "+15005550006,MG" + "a" * 32,
            "TWIML_ALLOWED_HOSTS": "Example.COM, twimlets.com",
            "TWILIO_VALIDATE_SIGNATURES": "false",
            "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
            "DEFAULT_REGION": "gb",
        }
    )
    assert settings.allowed_countries == ("US", "CA")
    assert settings.allow_all_countries is True
    assert settings.allowed_senders == ("+15005550006", "MG" + "a" * 32)
    assert settings.twiml_allowed_hosts == ("example.com", "twimlets.com")
    assert settings.validate_signatures is False
    assert settings.default_region == "GB"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("TWILIO_ACCOUNT_SID", "not-a-sid"),
        ("TWILIO_TIMEOUT_SECONDS", "soon"),
        ("TWILIO_TIMEOUT_SECONDS", "-5"),
        ("TWILIO_VALIDATE_SIGNATURES", "maybe"),
        ("DEFAULT_REGION", "USA"),
        ("PUBLIC_BASE_URL", "functions.example.com"),
        ("PUBLIC_BASE_URL", "https://x.example.com/?a=1"),
        ("TWILIO_MESSAGING_SERVICE_SID", "PN123"),
        ("TWILIO_API_KEY_SID", "SK" + "1" * 32),
        ("TWILIO_RATE_LIMIT_RETRIES", "9"),
        ("SMS_NUMBER_TYPES", "mobile,premium"),
        ("CALL_NUMBER_TYPES", "landline"),
        ("NUMBER_TYPE_EXCEPTIONS", "44,+1"),
        ("TWIML_ALLOWED_HOSTS", "evil.example\\@twimlets.com"),
        ("TWIML_ALLOWED_HOSTS", "https://twimlets.com"),
        ("TWILIO_ALLOWED_SENDERS", "MG123"),
        ("TWILIO_ALLOWED_SENDERS", "MG" + "g" * 32),
        ("TWILIO_ALLOWED_SENDERS", "+14155550199,4155550199"),
        ("TWILIO_ALLOWED_SENDERS", "+1 415 555 0199"),
        ("TWILIO_ALLOWED_SENDERS", "+04155550199"),
        ("TWILIO_ALLOWED_SENDERS", "+1415555019912345"),
        ("TWILIO_ALLOWED_SENDERS", "alice"),
        ("TWIML_DEFAULT_VOICE", "alice"),
        ("TWIML_DEFAULT_VOICE", "robot"),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWT_ALGORITHMS", "none"),
        ("JWT_ALGORITHMS", "RS256,HS512"),
        ("STATE_STORE_FAILURE_MODE", "sometimes"),
        ("INBOUND_SMS_AUTO_REPLY", "x" * 1601),
    ],
)
def test_invalid_values_name_their_key_but_not_the_value(key: str, value: str) -> None:
    with pytest.raises(InvalidSetting) as raised:
        load_settings({key: value})
    expected_key = "TWILIO_API_KEY_SECRET" if key == "TWILIO_API_KEY_SID" else key
    assert raised.value.key == expected_key
    assert raised.value.status_code == 500
    assert expected_key in raised.value.detail
    assert value not in raised.value.detail


def test_require_names_the_missing_key() -> None:
    with pytest.raises(MissingSetting) as raised:
        load_settings({}).require("TWILIO_ACCOUNT_SID")
    assert raised.value.status_code == 503
    assert raised.value.extra == {"setting": "TWILIO_ACCOUNT_SID"}


def test_secrets_never_show_in_reprs() -> None:
    settings = load_settings(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_API_KEY_SID": "SK" + "1" * 32,
            "TWILIO_API_KEY_SECRET": "api-key-secret-value",
        }
    )
    assert TOKEN not in repr(settings)
    assert "api-key-secret-value" not in repr(settings)
    assert str(Secret(TOKEN)) == "Secret('**********')"
    assert settings.require("TWILIO_AUTH_TOKEN") == TOKEN


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("my-app.azurewebsites.net", "https://my-app.azurewebsites.net"),
        ("localhost:7071", "http://localhost:7071"),
    ],
)
def test_public_base_url_defaults_to_the_platform_hostname(hostname: str, expected: str) -> None:
    assert load_settings({"WEBSITE_HOSTNAME": hostname}).public_base_url == expected
    explicit = {"WEBSITE_HOSTNAME": hostname, "PUBLIC_BASE_URL": "https://calls.example.com/"}
    assert load_settings(explicit).public_base_url == "https://calls.example.com"


def test_worker_threads_follow_the_worker_setting() -> None:
    assert load_settings({"PYTHON_THREADPOOL_THREAD_COUNT": "16"}).worker_threads == 16


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("TWILIO_TIMEOUT_SECONDS", "3")
    first = get_settings()
    monkeypatch.setenv("TWILIO_TIMEOUT_SECONDS", "4")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().twilio_timeout == 4.0
    get_settings.cache_clear()


def test_allowed_senders_are_checked_without_loading_phonenumbers() -> None:
    # Settings load on the TwiML and status-callback paths too, which never need it.
    code = (
        "import sys; from shared.settings import load_settings;"
        "s = load_settings({'TWILIO_ALLOWED_SENDERS': '+14155550199, MG' + 'a' * 32});"
        "print(*s.allowed_senders, 'phonenumbers' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["+14155550199", "MG" + "a" * 32, "False"]


def test_importing_the_app_reads_no_settings_and_no_rest_client() -> None:
    # A broken setting must not break indexing (the host would report "0 functions"),
    # and the cold path must not import the REST client.
    code = (
        "import sys, function_app;"
        "from shared.settings import get_settings;"
        "print(get_settings.cache_info().currsize, 'twilio.rest' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"TWILIO_TIMEOUT_SECONDS": "broken", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["0", "False"]


@pytest.mark.parametrize(
    "environ",
    [
        {},  # on Azure AZURE_FUNCTIONS_ENVIRONMENT is unset or Production
        {"AZURE_FUNCTIONS_ENVIRONMENT": "Production"},
        # Development in an Azure app's settings is still Azure: WEBSITE_INSTANCE_ID tells.
        {"AZURE_FUNCTIONS_ENVIRONMENT": "Development", "WEBSITE_INSTANCE_ID": "a1b2"},
    ],
)
def test_signature_checks_cannot_be_switched_off_outside_local_development(
    environ: dict[str, str],
) -> None:
    with pytest.raises(InvalidSetting) as raised:
        load_settings({**environ, "TWILIO_VALIDATE_SIGNATURES": "false"})
    assert raised.value.key == "TWILIO_VALIDATE_SIGNATURES"
    assert load_settings(environ).validate_signatures is True


@pytest.mark.parametrize(
    "environ",
    [
        {"AZURE_FUNCTIONS_ENVIRONMENT": "Development"},  # func start, make run
        {"TWILIO_API_BASE_URL": "http://127.0.0.1:7072"},  # the sandbox: nothing is real
    ],
)
def test_signature_checks_may_be_switched_off_locally(environ: dict[str, str]) -> None:
    assert (
        load_settings({**environ, "TWILIO_VALIDATE_SIGNATURES": "false"}).validate_signatures
        is False
    )


def test_number_type_settings_default_to_what_costs_no_more_than_usual() -> None:
    settings = load_settings({})
    assert settings.sms_number_types == ("mobile", "fixed-line", "fixed-line-or-mobile")
    assert settings.call_number_types == ("mobile", "fixed-line", "fixed-line-or-mobile")
    assert settings.number_type_exceptions == ()
    custom = load_settings(
        {"CALL_NUMBER_TYPES": "Mobile, toll-free", "NUMBER_TYPE_EXCEPTIONS": "+1500555"}
    )
    assert custom.call_number_types == ("mobile", "toll-free")
    assert custom.number_type_exceptions == ("+1500555",)


def test_jwt_algorithms_are_asymmetric_ones_and_rs256_by_default() -> None:
    assert load_settings({}).jwt_algorithms == ("RS256",)
    chosen = load_settings({"JWT_ALGORITHMS": "ES256,PS256"}).jwt_algorithms
    assert chosen == ("ES256", "PS256")
