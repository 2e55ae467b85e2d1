"""Place one voice call whose TwiML is ours (or an allowed https URL). No HTTP in here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from shared import clock, policy, twiml
from shared.deliveries import CALL_EVENTS, remember_created, status_callback_url
from shared.limits import check_before_send
from shared.messaging import parse_number
from shared.phone import PhoneNumber, mask
from shared.reconcile import find_created
from shared.settings import Settings
from shared.store import Accepted, Attempt, Store
from shared.twilio_client import with_rate_limit_retry
from shared.validation import Errors, decode
from shared.webhooks import function_url

TWIML_ROUTE = "TwiML"
# Twilio documents no limit on a webhook URL's length; 4,000 characters is its limit for
# inline TwiML, and far longer URLs fail at Twilio (seen: a 4,096-character message of
# non-ASCII text, 36 KB once percent-encoded). So the URL is kept within that.
MAX_TWIML_URL_LENGTH = 4000

if TYPE_CHECKING:
    from twilio.rest import Client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRequest:
    to: PhoneNumber
    from_number: str
    twiml_url: str


def parse_call_request(fields: Mapping[str, Any], settings: Settings) -> CallRequest:
    """Validate every field, the policy, and the TwiML the call will fetch: a call whose
    TwiML can only fail (Twilio's application error for the callee) is refused here."""
    from shared.shapes import MakeCallRequest  # msgspec only where a body is parsed

    errors = Errors()
    values = decode(fields, MakeCallRequest, errors)
    message, voice, language = values.get("message"), values.get("voice"), values.get("language")
    if values.get("url") is not None and (message or voice or language):
        errors.error("url", "cannot be combined with message, voice or language")
    segment = twiml.message_segment(errors, "message", message) if message is not None else None
    twiml.check_voice_options(errors, voice, language)
    to = parse_number(errors, "to", values.get("to"), settings)
    parse_number(errors, "from", values.get("from_"), None)
    errors.check()
    body = MakeCallRequest(**values)
    assert to is not None
    sender = policy.call_sender(body.from_, settings)
    policy.check_destination(to, settings, "call")
    if body.url is not None:
        policy.check_twiml_url(body.url, settings)
        return CallRequest(to=to, from_number=sender, twiml_url=body.url)
    if segment is not None and segment.kind == "play":
        policy.check_twiml_url(segment.value, settings, field="message")
    query = {"message": body.message, "voice": body.voice, "language": body.language}
    url = function_url(settings, TWIML_ROUTE, {k: v for k, v in query.items() if v})
    _check_twiml_url_renders(url, settings)
    return CallRequest(to=to, from_number=sender, twiml_url=url)


def _check_twiml_url_renders(url: str, settings: Settings) -> None:
    """What our TwiML route will answer for `url`, checked now: too long a URL or a
    document Twilio cannot parse would only give the callee Twilio's application error."""
    errors = Errors()
    if len(url) > MAX_TWIML_URL_LENGTH:
        errors.error(
            "message",
            f"is too long once encoded in the TwiML URL ({len(url)} of "
            f"{MAX_TWIML_URL_LENGTH} characters); shorten it",
        )
        errors.check()
    # Read back as the TwiML route will read it: what passes here renders there (the
    # route builds the document from exactly this Speech; tests render every case).
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    twiml.speech_from_params(params, settings.twiml_default_message, settings.twiml_default_voice)


def intent(request: CallRequest) -> Attempt:
    """What placing `request` asks Twilio for, to recognise it later in Twilio's list."""
    return Attempt("call", request.to.e164, request.from_number, "", 0.0, "")


def place_call(
    request: CallRequest,
    settings: Settings,
    client: Client,
    store: Store,
    caller: str,
    attempt: Attempt | None = None,
) -> Accepted:
    to = request.to.e164
    check_before_send(
        store, settings, caller=caller, destination=to, sms_sender=None, now=clock.now()
    )
    options: dict[str, Any] = {"to": to, "from_": request.from_number, "url": request.twiml_url}
    callback = status_callback_url(settings)
    if callback:
        options.update(status_callback=callback, status_callback_event=list(CALL_EVENTS))
    call = with_rate_limit_retry(settings, lambda: client.calls.create(**options))
    logger.info("Call %s to %s: %s", call.sid, mask(to), call.status)
    return _remember_placed(store, call, caller, attempt)


def find_placed(client: Client, store: Store, caller: str, attempt: Attempt) -> Accepted | None:
    """The call `attempt` created, if Twilio has it (its answer was lost)."""
    call = find_created(client, store, attempt)
    if call is None:
        return None
    logger.info("Call %s to %s found at Twilio after a lost answer", call.sid, mask(attempt.to))
    return _remember_placed(store, call, caller, attempt)


def _remember_placed(store: Store, call: Any, caller: str, attempt: Attempt | None) -> Accepted:
    from shared.shapes import CallResult, answer

    def record() -> None:
        remember_created(
            store, "call", call.sid, caller=caller, to=call.to, status=call.status,
            attempt=attempt.owner if attempt else None,
        )  # fmt: skip

    # twilio-python names this attribute `_from` on calls (but `from_` on messages).
    body = answer(CallResult(sid=call.sid, status=call.status, to=call.to, from_=call._from))
    return Accepted(body, record)
