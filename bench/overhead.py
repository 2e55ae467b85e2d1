"""Per-request overhead, warm and in-process, with Twilio's transport stubbed out.

Ours: each handler called with a prepared request, the production code path down to the
requests transport, which answers at once with a recorded Twilio body. The floor: the
bare `messages.create` on the same stub plus building one HttpRequest/HttpResponse and
one JSON parse/dump: what any handler on this stack must pay.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import azure.functions as func
from twilio.request_validator import RequestValidator

from bench.app_env import PUBLIC_BASE_URL, app_environment
from bench.stand_ins import ACCOUNT_SID, AUTH_TOKEN, stub_transport

ITERATIONS = 500
REPEATS = 7


def per_call(operation: Callable[[], Any]) -> float:
    """Seconds per call over one batch of ITERATIONS calls."""
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        operation()
    return (time.perf_counter() - start) / ITERATIONS


def floor() -> Callable[[], Any]:
    from twilio.rest import Client

    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    stub_transport(client.http_client.session)
    body = json.dumps({"to": "+14155550100", "body": "Hello"}).encode()

    def operation() -> func.HttpResponse:
        req = func.HttpRequest(
            "POST",
            f"{PUBLIC_BASE_URL}/api/SendSms",
            headers={"Content-Type": "application/json"},
            body=body,
        )
        fields = json.loads(req.get_body())
        message = client.messages.create(to=fields["to"], from_="+15005550006", body=fields["body"])
        return func.HttpResponse(
            json.dumps({"sid": message.sid, "status": message.status}),
            status_code=201,
            mimetype="application/json",
        )

    return operation


def ours(
    functions: dict[str, Callable[[func.HttpRequest], func.HttpResponse]],
) -> dict[str, Callable[[], Any]]:
    from shared.settings import get_settings
    from shared.twilio_client import get_client

    stub_transport(get_client(get_settings()).http_client.session)
    validator = RequestValidator(AUTH_TOKEN)
    sms = json.dumps({"to": "+14155550100", "body": "Hello"}).encode()
    call = json.dumps({"to": "+14155550100", "message": "Hello"}).encode()
    twiml_url = f"{PUBLIC_BASE_URL}/api/TwiML?message=Hello+there&voice=woman"
    twiml_form = {
        "CallSid": "CA" + "1" * 32,
        "From": "+15005550006",
        "To": "+14155550100",
        "CallStatus": "in-progress",
    }
    callback_url = f"{PUBLIC_BASE_URL}/api/StatusCallback"
    json_headers = {"Content-Type": "application/json"}
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    from urllib.parse import urlencode

    def post(name: str, url: str, body: bytes, headers: dict[str, str]) -> Callable[[], Any]:
        return lambda: functions[name](func.HttpRequest("POST", url, headers=headers, body=body))

    # Signing is Twilio's work, not ours: sign every request before the clock starts.
    twiml_headers = {
        **form_headers,
        "X-Twilio-Signature": validator.compute_signature(twiml_url, twiml_form),
    }
    twiml_body = urlencode(twiml_form).encode()
    callbacks = []
    for index in range(100):  # sent/delivered on 50 SIDs: real updates, not only duplicates
        form = {
            "MessageSid": f"SM{index % 50:032d}",
            "MessageStatus": "sent" if index % 2 else "delivered",
        }
        signature = validator.compute_signature(callback_url, form)
        callbacks.append(
            ({**form_headers, "X-Twilio-Signature": signature}, urlencode(form).encode())
        )
    counter = iter(range(10**9))

    def twiml() -> func.HttpResponse:
        return functions["TwiML"](
            func.HttpRequest("POST", twiml_url, headers=twiml_headers, body=twiml_body)
        )

    def status_callback() -> func.HttpResponse:
        headers, body = callbacks[next(counter) % len(callbacks)]
        return functions["StatusCallback"](
            func.HttpRequest("POST", callback_url, headers=headers, body=body)
        )

    return {
        "SendSms": post("SendSms", f"{PUBLIC_BASE_URL}/api/SendSms", sms, json_headers),
        "MakeCall": post("MakeCall", f"{PUBLIC_BASE_URL}/api/MakeCall", call, json_headers),
        "TwiML": twiml,
        "StatusCallback": status_callback,
    }


def run(functions: dict[str, Callable[[func.HttpRequest], func.HttpResponse]]) -> dict[str, Any]:
    with app_environment():
        operations = {"floor": floor(), **ours(functions)}
        for name, operation in operations.items():  # each must really succeed
            status = operation().status_code
            assert status in (200, 201, 204), f"{name} answered {status}"
        # Interleaved rounds: drift on a shared machine hits floor and ours alike.
        rounds: dict[str, list[float]] = {name: [] for name in operations}
        for _ in range(REPEATS):
            for name, operation in operations.items():
                rounds[name].append(per_call(operation))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    floor_seconds = medians.pop("floor")
    return {"floor": floor_seconds, "ours": medians, "iterations": ITERATIONS, "repeats": REPEATS}
