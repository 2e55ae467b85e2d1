"""Settings: one frozen object read from an injectable environ, built once per process.

Every key is documented in local.settings.json.example and docs/settings.md. An empty
value counts as unset, because Azure app settings and local.settings.json cannot hold
"absent" keys conveniently. Credentials are optional here: the app (health, TwiML with
validation off) must start without them; operations that need one raise MissingSetting.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from shared.errors import InvalidSetting, MissingSetting
from shared.phone import NUMBER_TYPES
from shared.urls import is_hostname
from shared.voices import ACCEPTED_VOICES, is_voice

TwilioMode = Literal["live", "sandbox", "missing"]
StoreKind = Literal["table", "memory", "missing"]
CallerAuth = Literal["function-key", "easyauth", "jwt"]
CALLER_AUTH_MODES: tuple[CallerAuth, ...] = ("function-key", "easyauth", "jwt")

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# E.164: "+", then at most 15 digits, the country code not starting with 0. The shape only:
# whether the number exists is phonenumbers' to say (shared.policy), which stays off the
# TwiML and status-callback paths that load settings too (cold start).
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_REGION = re.compile(r"[A-Z]{2}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LIMIT = re.compile(r"(\d{1,9})\s*/\s*(second|minute|hour|day)")
_WINDOW_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_TABLE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,29}")
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_CLIENT_ID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
# The host's storage connection (AzureWebJobsStorage, or its identity-based __* settings);
# the same account holds the app's tables. Keys are spelled out where read, for the
# settings-coverage test (tests/test_deploy.py) to see them.
HOST_STORAGE = "AzureWebJobsStorage"
_NUMBER_PREFIX = re.compile(r"\+[0-9]{1,15}")
# Destinations that cost no more than a normal message or call; premium-rate, shared-cost,
# UAN, personal and toll-free numbers can bill the sender extra or feed SMS pumping.
DEFAULT_NUMBER_TYPES = ("mobile", "fixed-line", "fixed-line-or-mobile")
MAX_REPLY_CHARACTERS = 1600  # Twilio's limit for one message body


def development_storage(table_port: int = 10002) -> str:
    """Azurite's documented, public development account, its table service on `table_port`
    (the default port is what UseDevelopmentStorage=true means)."""
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"TableEndpoint=http://127.0.0.1:{table_port}/devstoreaccount1;"
    )


DEVELOPMENT_STORAGE = development_storage()


@dataclass(frozen=True)
class StoreIdentity:
    """Table Storage reached with an Entra token (the app's managed identity), as the
    host reaches its own storage from the identity-based AzureWebJobsStorage__* settings."""

    endpoint: str  # https://<account>.table.core.windows.net
    client_id: str | None = None  # a user-assigned identity; None: the system-assigned one
    managed_identity: bool = True  # False: DefaultAzureCredential (developer sign-in too)


@dataclass(frozen=True)
class Limit:
    """At most `count` operations per fixed window of `window_seconds`."""

    count: int
    window_seconds: int


class Secret:
    """A string that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    account_sid: str | None = None
    auth_token: Secret | None = None
    api_key_sid: str | None = None
    api_key_secret: Secret | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    allowed_senders: tuple[str, ...] = ()
    allowed_countries: tuple[str, ...] = ()
    allow_all_countries: bool = False
    sms_number_types: tuple[str, ...] = DEFAULT_NUMBER_TYPES
    call_number_types: tuple[str, ...] = DEFAULT_NUMBER_TYPES
    number_type_exceptions: tuple[str, ...] = ()  # E.164 prefixes the type check skips
    default_region: str | None = None
    public_base_url: str | None = None
    twiml_allowed_hosts: tuple[str, ...] = ()
    twilio_timeout: float = 10.0
    twilio_api_base_url: str | None = None
    validate_signatures: bool = True
    local_development: bool = False  # the local host (func start or devhost), not Azure
    twiml_default_message: str = "Hello from Twilio Functions."
    twiml_default_voice: str = "woman"
    # Inbound calls (shared/inbound_calls.py): forward, else (or unanswered) voicemail.
    forward_number: str | None = None  # E.164 shape here; the money policy in inbound_calls
    dial_timeout: int = 20
    voicemail_greeting: str = (
        "Sorry, no one can take your call. Please leave a message after the tone."
    )
    voicemail_max_seconds: int = 120
    voicemail_transcribe: bool = False
    rate_limit_retries: int = 2
    rate_limit_backoff: float = 1.0
    worker_threads: int = 8
    store_connection: Secret | None = None  # a connection string (shared key, Azurite)
    store_identity: StoreIdentity | None = None  # else Table Storage through an identity
    running_on_azure: bool = False  # WEBSITE_INSTANCE_ID is set: never the in-memory store
    state_retention_days: int = 30  # delivery records kept this long after their last change
    store_table_prefix: str = "Twilio"
    store_fail_open: bool = False
    store_connect_timeout: float = 2.0
    store_read_timeout: float = 3.0
    store_cooldown: float = 5.0  # after the store failed to answer, fail at once for this long
    limit_per_destination: Limit | None = Limit(5, 3600)
    limit_per_caller: Limit | None = Limit(30, 3600)
    limit_global: Limit | None = Limit(1000, 86400)
    broadcast_max_recipients: int = 10_000
    broadcast_chunk_size: int = 100
    broadcast_parallelism: int = 10
    broadcast_messages_per_second: float = 10.0
    caller_auth: CallerAuth = "function-key"
    platform_auth_enabled: bool = False  # App Service Authentication (Easy Auth) is on
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: tuple[str, ...] = ("RS256",)
    jwt_required_scope: str | None = None
    jwt_required_role: str | None = None
    jwt_leeway_seconds: float = 60.0
    inbound_sms_auto_reply: str | None = None  # answered to a received SMS (not to keywords)

    @property
    def store_kind(self) -> StoreKind:
        """Where state lives: a table (shared), memory (one process, local only), or
        nowhere (on Azure without a store: routes needing state answer 503)."""
        if self.store_connection is not None or self.store_identity is not None:
            return "table"
        return "missing" if self.running_on_azure else "memory"

    @property
    def twilio_mode(self) -> TwilioMode:
        if not (self.account_sid and self.auth_token):
            return "missing"
        return "sandbox" if self.twilio_api_base_url else "live"

    def require(self, key: str) -> str:
        """The value of a string setting an operation cannot do without."""
        value = {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token.reveal() if self.auth_token else None,
            "TWILIO_FROM_NUMBER": self.from_number,
            "PUBLIC_BASE_URL": self.public_base_url,
            "JWT_ISSUER": self.jwt_issuer,
            "JWT_AUDIENCE": self.jwt_audience,
            "JWT_JWKS_URL": self.jwt_jwks_url,
        }[key]
        if not value:
            raise MissingSetting(key)
        return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse settings from environ (os.environ by default); bad values name their key."""
    env = _Env(os.environ if environ is None else environ)
    api_key_sid = env.matching("TWILIO_API_KEY_SID", _API_KEY_SID, "an API key SID (SK…)")
    api_key_secret = env.get("TWILIO_API_KEY_SECRET")
    if bool(api_key_sid) != bool(api_key_secret):
        missing = "TWILIO_API_KEY_SECRET" if api_key_sid else "TWILIO_API_KEY_SID"
        raise InvalidSetting(missing, "set together with its pair")
    countries = env.csv("ALLOWED_COUNTRIES")
    auth_token = env.get("TWILIO_AUTH_TOKEN")
    twilio_api_base_url = env.base_url("TWILIO_API_BASE_URL")
    local = _local_development(env)
    store_connection = _store_connection(env)
    twiml_allowed_hosts = _hostnames(env, "TWIML_ALLOWED_HOSTS")
    voicemail_max_seconds = _whole(env, "VOICEMAIL_MAX_SECONDS", 120, low=1, high=14400)
    return Settings(
        account_sid=env.matching("TWILIO_ACCOUNT_SID", _ACCOUNT_SID, "an Account SID (AC…)"),
        auth_token=Secret(auth_token) if auth_token else None,
        api_key_sid=api_key_sid,
        api_key_secret=Secret(api_key_secret) if api_key_secret else None,
        from_number=env.get("TWILIO_FROM_NUMBER"),
        messaging_service_sid=env.matching(
            "TWILIO_MESSAGING_SERVICE_SID", _MESSAGING_SERVICE_SID, "a Messaging Service SID (MG…)"
        ),
        allowed_senders=_allowed_senders(env),
        allowed_countries=tuple(c.upper() for c in countries if c != "*"),
        allow_all_countries="*" in countries,
        sms_number_types=_number_types(env, "SMS_NUMBER_TYPES"),
        call_number_types=_number_types(env, "CALL_NUMBER_TYPES"),
        number_type_exceptions=_number_prefixes(env, "NUMBER_TYPE_EXCEPTIONS"),
        default_region=env.region("DEFAULT_REGION"),
        public_base_url=env.base_url("PUBLIC_BASE_URL") or _platform_base_url(env),
        twiml_allowed_hosts=twiml_allowed_hosts,
        twilio_timeout=env.number("TWILIO_TIMEOUT_SECONDS", 10.0, low=0.1, high=120.0),
        twilio_api_base_url=twilio_api_base_url,
        validate_signatures=_validate_signatures(env, local or twilio_api_base_url is not None),
        local_development=local,
        twiml_default_message=env.get("TWIML_DEFAULT_MESSAGE") or Settings.twiml_default_message,
        twiml_default_voice=_voice(env, "TWIML_DEFAULT_VOICE") or Settings.twiml_default_voice,
        forward_number=env.matching(
            "INBOUND_FORWARD_NUMBER", _E164, "an E.164 phone number such as +14155550100"
        ),
        # Twilio's <Dial timeout> takes 5 to 600 seconds.
        dial_timeout=_whole(env, "INBOUND_DIAL_TIMEOUT_SECONDS", 20, low=5, high=600),
        voicemail_greeting=_greeting(env, twiml_allowed_hosts) or Settings.voicemail_greeting,
        voicemail_max_seconds=voicemail_max_seconds,
        voicemail_transcribe=_transcribe(env, voicemail_max_seconds),
        rate_limit_retries=int(env.number("TWILIO_RATE_LIMIT_RETRIES", 2, low=0, high=5)),
        rate_limit_backoff=env.number("TWILIO_RATE_LIMIT_BACKOFF_SECONDS", 1.0, low=0, high=30),
        # The worker's sync thread pool size (its documented default unless overridden):
        # the Twilio connection pool is sized to it so no thread waits for a connection.
        worker_threads=int(
            env.number("PYTHON_THREADPOOL_THREAD_COUNT", _default_threads(), low=1, high=256)
        ),
        store_connection=store_connection,
        store_identity=None if store_connection else _store_identity(env),
        running_on_azure=env.get("WEBSITE_INSTANCE_ID") is not None,
        state_retention_days=int(env.number("STATE_RETENTION_DAYS", 30, low=1, high=3650)),
        store_table_prefix=env.matching(
            "STATE_TABLE_PREFIX", _TABLE_PREFIX, "letters and digits, starting with a letter"
        )
        or Settings.store_table_prefix,
        store_fail_open=env.choice("STATE_STORE_FAILURE_MODE", ("closed", "open"), "closed")
        == "open",
        store_connect_timeout=env.number(
            "STATE_STORE_CONNECT_TIMEOUT_SECONDS", 2.0, low=0.1, high=30
        ),
        store_read_timeout=env.number("STATE_STORE_READ_TIMEOUT_SECONDS", 3.0, low=0.1, high=60),
        store_cooldown=env.number("STATE_STORE_COOLDOWN_SECONDS", 5.0, low=0, high=300),
        limit_per_destination=env.limit("LIMIT_PER_DESTINATION", Settings.limit_per_destination),
        limit_per_caller=env.limit("LIMIT_PER_CALLER", Settings.limit_per_caller),
        limit_global=env.limit("LIMIT_GLOBAL", Settings.limit_global),
        broadcast_max_recipients=int(
            env.number("BROADCAST_MAX_RECIPIENTS", 10_000, low=1, high=100_000)
        ),
        # Recipients per sub-orchestration: bounds every instance's history (≤ 200 activities).
        broadcast_chunk_size=int(env.number("BROADCAST_CHUNK_SIZE", 100, low=1, high=200)),
        broadcast_parallelism=int(env.number("BROADCAST_PARALLELISM", 10, low=1, high=50)),
        broadcast_messages_per_second=env.number(
            "BROADCAST_MESSAGES_PER_SECOND", 10.0, low=0.1, high=1000
        ),
        caller_auth=_caller_auth(env),
        platform_auth_enabled=(env.get("WEBSITE_AUTH_ENABLED") or "").lower() == "true",
        jwt_issuer=env.get("JWT_ISSUER"),
        jwt_audience=env.get("JWT_AUDIENCE"),
        jwt_jwks_url=env.base_url("JWT_JWKS_URL"),
        jwt_algorithms=_jwt_algorithms(env),
        jwt_required_scope=env.get("JWT_REQUIRED_SCOPE"),
        jwt_required_role=env.get("JWT_REQUIRED_ROLE"),
        jwt_leeway_seconds=env.number("JWT_LEEWAY_SECONDS", 60.0, low=0, high=600),
        inbound_sms_auto_reply=_auto_reply(env),
    )


def _auto_reply(env: _Env) -> str | None:
    text = env.get("INBOUND_SMS_AUTO_REPLY")
    if text is not None and len(text) > MAX_REPLY_CHARACTERS:
        raise InvalidSetting("INBOUND_SMS_AUTO_REPLY", f"at most {MAX_REPLY_CHARACTERS} characters")
    return text


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import: cold start, tests)."""
    return load_settings()


def _local_development(env: _Env) -> bool:
    # Core Tools (and devhost) set AZURE_FUNCTIONS_ENVIRONMENT=Development; Azure sets
    # WEBSITE_INSTANCE_ID on every instance, whatever the app's own settings say.
    development = (env.get("AZURE_FUNCTIONS_ENVIRONMENT") or "").lower() == "development"
    return development and env.get("WEBSITE_INSTANCE_ID") is None


def _validate_signatures(env: _Env, may_skip: bool) -> bool:
    validate = env.boolean("TWILIO_VALIDATE_SIGNATURES", True)
    if not validate and not may_skip:
        # Anyone could then post TwiML requests and status callbacks as if they were Twilio.
        raise InvalidSetting(
            "TWILIO_VALIDATE_SIGNATURES", "true outside local development (local host or sandbox)"
        )
    return validate


def _number_types(env: _Env, key: str) -> tuple[str, ...]:
    types = tuple(t.lower() for t in env.csv(key)) or DEFAULT_NUMBER_TYPES
    if any(t not in NUMBER_TYPES for t in types):
        raise InvalidSetting(key, f"a comma list of {', '.join(NUMBER_TYPES)}")
    return types


def _number_prefixes(env: _Env, key: str) -> tuple[str, ...]:
    prefixes = env.csv(key)
    if any(not _NUMBER_PREFIX.fullmatch(p) for p in prefixes):
        raise InvalidSetting(key, "a comma list of E.164 prefixes such as +1500555")
    return prefixes


def _voice(env: _Env, key: str) -> str | None:
    value = env.get(key)
    if value is not None and not is_voice(value):
        raise InvalidSetting(key, ACCEPTED_VOICES)
    return value


def _whole(env: _Env, key: str, default: int, *, low: int, high: int) -> int:
    value = env.number(key, default, low=low, high=high)
    if not value.is_integer():
        raise InvalidSetting(key, f"a whole number between {low} and {high}")
    return int(value)


def _greeting(env: _Env, allowed_hosts: tuple[str, ...]) -> str | None:
    """What voicemail says first: checked as MakeCall checks a message (text to say, or an
    https URL to play from a TWIML_ALLOWED_HOSTS host), so the TwiML cannot fail later."""
    text = env.get("VOICEMAIL_GREETING")
    if text is None:
        return None
    # Here, not at import: the TwiML builders stay off the status-callback path.
    from shared.twiml import message_segment
    from shared.urls import parse_public_url
    from shared.validation import Errors

    expected = (
        "text to say (at most 4096 characters, no control characters) or an https URL "
        "on a TWIML_ALLOWED_HOSTS host to play"
    )
    reader = Errors()
    segment = message_segment(reader, "VOICEMAIL_GREETING", text)
    if reader.found:
        raise InvalidSetting("VOICEMAIL_GREETING", expected)
    if segment.kind == "play":
        parsed = parse_public_url(text)
        if parsed is None or parsed.host not in allowed_hosts:
            raise InvalidSetting("VOICEMAIL_GREETING", expected)
    return text


def _transcribe(env: _Env, max_seconds: int) -> bool:
    transcribe = env.boolean("VOICEMAIL_TRANSCRIBE", False)
    if transcribe and max_seconds > 120:
        # Twilio transcribes <Record> recordings of at most two minutes; a longer one is
        # billed as recorded and never transcribed.
        raise InvalidSetting(
            "VOICEMAIL_TRANSCRIBE", "false while VOICEMAIL_MAX_SECONDS is over 120"
        )
    return transcribe


def _hostnames(env: _Env, key: str) -> tuple[str, ...]:
    hosts = tuple(h.lower() for h in env.csv(key))
    if any(not is_hostname(h) for h in hosts):
        raise InvalidSetting(key, "a comma list of host names such as media.example.com")
    return hosts


def _caller_auth(env: _Env) -> CallerAuth:
    value = env.choice("CALLER_AUTH", CALLER_AUTH_MODES, "function-key")
    return next(mode for mode in CALLER_AUTH_MODES if mode == value)


def _allowed_senders(env: _Env) -> tuple[str, ...]:
    senders = env.csv("TWILIO_ALLOWED_SENDERS")
    for sender in senders:
        expected = _MESSAGING_SERVICE_SID if sender.startswith("MG") else _E164
        if not expected.fullmatch(sender):
            raise InvalidSetting(
                "TWILIO_ALLOWED_SENDERS", "E.164 numbers or Messaging Service SIDs (MG…)"
            )
    return senders


def _jwt_algorithms(env: _Env) -> tuple[str, ...]:
    algorithms = env.csv("JWT_ALGORITHMS") or ("RS256",)
    # Asymmetric only: an HMAC or `none` algorithm would let a token sign itself.
    if any(not a.startswith(("RS", "PS", "ES", "Ed")) for a in algorithms):
        raise InvalidSetting("JWT_ALGORITHMS", "asymmetric algorithms such as RS256 or ES256")
    return algorithms


def _store_connection(env: _Env) -> Secret | None:
    # A dedicated connection wins; otherwise the storage account the Function App has anyway.
    value = env.get("STATE_STORE_CONNECTION") or env.get("AzureWebJobsStorage")
    if value is None:
        return None
    if value.replace(" ", "").lower() == "usedevelopmentstorage=true":
        value = DEVELOPMENT_STORAGE
    return Secret(value)


def _store_identity(env: _Env) -> StoreIdentity | None:
    """The host's identity-based storage settings, read as the host reads them: a table
    service URI, else an account name (public Azure); `__credential=managedidentity` with
    `__clientId` picks a user-assigned identity."""
    endpoint = env.base_url("AzureWebJobsStorage__tableServiceUri")
    if endpoint is not None and not endpoint.startswith("https://"):
        # Bearer tokens are refused over plain http (azure-core), so this could never work.
        raise InvalidSetting("AzureWebJobsStorage__tableServiceUri", "an https URL")
    account = env.matching(
        "AzureWebJobsStorage__accountName", _ACCOUNT_NAME, "a storage account name (3-24 a-z, 0-9)"
    )
    if endpoint is None and account is not None:
        endpoint = f"https://{account}.table.core.windows.net"
    if endpoint is None:
        return None
    credential = (env.get("AzureWebJobsStorage__credential") or "").lower()
    if credential not in ("", "managedidentity"):
        raise InvalidSetting("AzureWebJobsStorage__credential", "managedidentity, or unset")
    client_id = env.matching("AzureWebJobsStorage__clientId", _CLIENT_ID, "a client ID (a GUID)")
    return StoreIdentity(
        endpoint, client_id, managed_identity=credential == "managedidentity" or bool(client_id)
    )


def _default_threads() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def _platform_base_url(env: _Env) -> str | None:
    # Azure sets WEBSITE_HOSTNAME to the app's default host; Twilio reaches it over https.
    host = env.get("WEBSITE_HOSTNAME")
    if not host:
        return None
    local = host.split(":")[0] in {"localhost", "127.0.0.1"}
    return f"{'http' if local else 'https'}://{host}"


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, key: str) -> str | None:
        return self._environ.get(key, "").strip() or None

    def matching(self, key: str, pattern: re.Pattern[str], expected: str) -> str | None:
        value = self.get(key)
        if value is not None and not pattern.fullmatch(value):
            raise InvalidSetting(key, expected)
        return value

    def csv(self, key: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in (self.get(key) or "").split(",") if part.strip())

    def region(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        if not _REGION.fullmatch(value.upper()):
            raise InvalidSetting(key, "a two-letter ISO 3166 region code such as US")
        return value.upper()

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise InvalidSetting(key, f"a number between {low:g} and {high:g}") from None
        if not low <= number <= high:
            raise InvalidSetting(key, f"a number between {low:g} and {high:g}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise InvalidSetting(key, "true or false")

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = (self.get(key) or default).lower()
        if value not in options:
            raise InvalidSetting(key, " or ".join(options))
        return value

    def limit(self, key: str, default: Limit | None) -> Limit | None:
        value = self.get(key)
        if value is None:
            return default
        if value.lower() == "off":
            return None
        match = _LIMIT.fullmatch(value.lower())
        if not match:
            raise InvalidSetting(key, "N/second, N/minute, N/hour, N/day or off")
        return Limit(int(match.group(1)), _WINDOW_SECONDS[match.group(2)])

    def base_url(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
            raise InvalidSetting(key, "an http(s) URL without a query string")
        return value.rstrip("/")
