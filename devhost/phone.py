"""The phone's side of Twilio: the signed webhooks Twilio posts to an app.

When someone texts (or calls) one of the account's numbers, Twilio POSTs a form to the
URL configured on that number or its Messaging Service, signed with the account's auth
token (X-Twilio-Signature: RequestValidator over the URL and the form's parameters). The
sandbox plays that part with `post_webhook`, so what the app verifies locally is what
Twilio would send; `inbound_sms_params` names an inbound message's parameters as Twilio
does (docs: "Twilio's request to your incoming message Webhook URL").
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from twilio.request_validator import RequestValidator
from yarl import URL

TWILIO_TIMEOUT_SECONDS = 15  # how long Twilio waits for a webhook's answer
API_VERSION = "2010-04-01"
USER_AGENT = "TwilioProxy/1.1"
# Twilio's opt-out handling names the keyword's kind in this parameter (only with Advanced
# Opt-Out on a Messaging Service): STOP, START or HELP.
OPT_OUT_TYPE = "OptOutType"


@dataclass(frozen=True)
class WebhookAnswer:
    """How the app answered: its HTTP status and body, or (status 0) why there was none."""

    status: int
    content_type: str = ""
    body: str = ""
    failure: str = ""  # the transport error's name when nothing was answered

    @property
    def outcome(self) -> int | str:
        """The status, or the failure's name: what the sandbox records of a callback."""
        return self.status or self.failure


async def post_webhook(
    url: str,
    params: Mapping[str, str],
    auth_token: str,
    *,
    timeout: float = TWILIO_TIMEOUT_SECONDS,
) -> WebhookAnswer:
    """POST `params` as a form to `url`, signed as Twilio signs it with `auth_token`.
    The URL is sent byte for byte as signed (yarl must not re-encode its query)."""
    signature = RequestValidator(auth_token).compute_signature(url, dict(params))
    headers = {"X-Twilio-Signature": signature, "User-Agent": USER_AGENT}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(URL(url, encoded=True), data=dict(params), headers=headers) as response,
        ):
            return WebhookAnswer(
                response.status, response.headers.get("Content-Type", ""), await response.text()
            )
    except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
        return WebhookAnswer(0, failure=type(exc).__name__)


def message_sid() -> str:
    return f"SM{uuid.uuid4().hex}"


def inbound_sms_params(
    account_sid: str,
    from_: str,
    to: str,
    body: str,
    *,
    sid: str | None = None,
    messaging_service_sid: str | None = None,
    media: Sequence[tuple[str, str]] = (),
    segments: int = 1,
    opt_out_type: str | None = None,
) -> dict[str, str]:
    """An inbound message's webhook parameters, named as Twilio names them. `media` is
    (URL, content type) pairs. Geographic fields (FromCity…) are sent empty, as Twilio
    does when it does not know them; the countries come from the numbers."""
    sid = sid or message_sid()
    params = {
        "ToCountry": country_of(to), "ToState": "", "ToCity": "", "ToZip": "",
        "FromCountry": country_of(from_), "FromState": "", "FromCity": "", "FromZip": "",
        "SmsMessageSid": sid, "SmsSid": sid, "MessageSid": sid, "SmsStatus": "received",
        "NumMedia": str(len(media)), "NumSegments": str(segments),
        "Body": body, "From": from_, "To": to,
        "AccountSid": account_sid, "ApiVersion": API_VERSION,
    }  # fmt: skip
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    for index, (media_url, content_type) in enumerate(media):
        params[f"MediaUrl{index}"] = media_url
        params[f"MediaContentType{index}"] = content_type
    if opt_out_type:
        params[OPT_OUT_TYPE] = opt_out_type
    return params


def country_of(number: str) -> str:
    """The ISO country Twilio names in a webhook's *Country fields; "" when it cannot tell."""
    import phonenumbers

    try:
        code = phonenumbers.parse(number).country_code
    except phonenumbers.NumberParseException:
        return ""
    region = phonenumbers.region_code_for_country_code(code or 0)
    # The country's main region ("US" for +1), as Twilio gives it without a lookup.
    return "" if region == phonenumbers.UNKNOWN_REGION else region
