"""Traces and counters through the OpenTelemetry API; the platform configures and exports.

On Azure, PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true (infra/app.bicep) has the
Functions worker call azure-monitor-opentelemetry's `configure_azure_monitor()` when it
starts, before any function runs, and attach the host's trace context to every
invocation, so these spans join the host's request in Application Insights. We configure
nothing ourselves (doing it as well would configure twice). The OpenTelemetry API's trace
module is loaded anyway (azure-functions-durable imports it); until a tracer provider is
set, which only the worker does, every call here returns after one isinstance check, and
nothing more is imported (locally, in benchmarks, with telemetry off: no cold-start cost).

The distro's own requests/urllib3 instrumentation is switched off
(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS): it records full URLs, whose query strings carry
phone numbers on Twilio's list calls, and exception messages that quote them. The Twilio
dependency span is ours instead (`twilio_call`), with a URL template and codes only.
Nothing recorded here holds a phone number, a message body or a token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

NAME = "twilio_functions"
SENDS = "twilio_functions.sends"
REFUSALS = "twilio_functions.refusals"
TWILIO_ERRORS = "twilio_functions.twilio_errors"
RULE = "twilio_functions.rule"
TWILIO_CODE = "twilio.error_code"
_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_CREATED = {"Messages.json": "message", "Calls.json": "call"}


class _Instruments:
    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import metrics, trace

        self.trace = trace
        self.tracer = trace.get_tracer(NAME, tracer_provider=tracer_provider)
        meter = metrics.get_meter(NAME, meter_provider=meter_provider)
        self.sends = meter.create_counter(
            SENDS, unit="{send}", description="Messages and calls Twilio accepted, by kind"
        )
        self.refusals = meter.create_counter(
            REFUSALS, unit="{request}", description="Requests refused by a rule, by rule"
        )
        self.twilio_errors = meter.create_counter(
            TWILIO_ERRORS, unit="{answer}", description="Twilio's error answers, by error code"
        )


_instruments: _Instruments | None = None
_providers: tuple[Any, Any] | None = None


def use_providers(tracer_provider: Any, meter_provider: Any) -> None:
    """Record to these providers instead of the global ones (tests); None, None: undo."""
    global _instruments, _providers
    _providers = (
        None if tracer_provider is meter_provider is None else (tracer_provider, meter_provider)
    )
    _instruments = None


def _get() -> _Instruments | None:
    global _instruments
    if _instruments is None:
        if _providers is None:
            from opentelemetry import trace

            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                return None  # nothing configured OpenTelemetry: telemetry is off
        _instruments = _Instruments(*(_providers or (None, None)))
    return _instruments


@contextmanager
def request_span(name: str) -> Iterator[None]:
    """One span around a function's invocation, named after its handler."""
    found = _get()
    if found is None:
        yield
        return
    with found.tracer.start_as_current_span(name, record_exception=False):
        yield


def answered(status_code: int) -> None:
    """The HTTP status the current request answers with."""
    found = _get()
    if found is None:
        return
    span = found.trace.get_current_span()
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 500:
        span.set_status(found.trace.StatusCode.ERROR)


def refused(rule: str | None, twilio_code: int | None) -> None:
    """A problem answer: the rule that refused the request, or Twilio's error code."""
    found = _get()
    if found is None:
        return
    span = found.trace.get_current_span()
    if rule is not None:
        span.set_attribute(RULE, rule)
        found.refusals.add(1, {"rule": rule})
    if twilio_code is not None:
        span.set_attribute(TWILIO_CODE, twilio_code)


class TwilioCall:
    """What a Twilio request answered, for its span and the counters."""

    def __init__(self, found: _Instruments | None, span: Any, method: str, path: str) -> None:
        self._found, self._span, self._method, self._path = found, span, method, path

    def answered(self, status_code: int, body: str) -> None:
        found = self._found
        if found is None:
            return
        self._span.set_attribute("http.response.status_code", status_code)
        if status_code == 201 and self._method == "POST":
            kind = _CREATED.get(self._path.rsplit("/", 1)[-1])
            if kind is not None:
                found.sends.add(1, {"kind": kind})
        if status_code >= 400:
            code = _error_code(body)
            self._span.set_attribute("error.type", str(status_code))
            self._span.set_attribute(TWILIO_CODE, code)
            self._span.set_status(found.trace.StatusCode.ERROR)
            found.twilio_errors.add(1, {"code": code, "status": status_code})


@contextmanager
def twilio_call(method: str, url: str) -> Iterator[TwilioCall]:
    """A client span for one request to Twilio: method, host and the URL's path with its
    SIDs as `{sid}`; never the query string (list calls filter by phone number) nor an
    exception's message (which quotes the URL), only its type."""
    found = _get()
    parts = urlsplit(url)
    if found is None:
        yield TwilioCall(None, None, method, parts.path)
        return
    template = _SID.sub("{sid}", parts.path)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "server.address": parts.hostname or "",
        "url.template": template,
    }
    if parts.port is not None:
        attributes["server.port"] = parts.port
    with found.tracer.start_as_current_span(
        f"{method} {template}", kind=found.trace.SpanKind.CLIENT, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        try:
            yield TwilioCall(found, span, method, parts.path)
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(found.trace.StatusCode.ERROR)
            raise


def _error_code(body: str) -> int:
    """Twilio's error code from an error answer's JSON body; 0 when it has none."""
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return 0
    return code if isinstance(code, int) else 0
