"""What the benchmarks put where Twilio would be: an in-process transport stub, and an
HTTPS server on 127.0.0.1 that counts connections and TLS handshakes."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from requests.adapters import BaseAdapter

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "bench-auth-token"
_RESOURCE = re.compile(r"/2010-04-01/Accounts/(AC\w+)/(Messages|Calls)\.json$")


def recorded_json(resource: str, to: str = "+14155550100") -> dict[str, Any]:
    """A Twilio create response, shaped as Twilio answers it."""
    sid = ("SM" if resource == "Messages" else "CA") + uuid.uuid4().hex
    body: dict[str, Any] = {
        "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "date_created": "Sat, 28 Nov 2026 10:00:00 +0000",
        "date_updated": "Sat, 28 Nov 2026 10:00:00 +0000", "direction": "outbound-api", "from": "+15005550006",
        "price": None, "price_unit": "USD", "sid": sid, "status": "queued", "to": to,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/{resource}/{sid}.json", "subresource_uris": {},
    }  # fmt: skip
    if resource == "Messages":
        body.update(body="Hello", num_media="0", num_segments="1", error_code=None, error_message=None,
                    messaging_service_sid=None, date_sent=None)  # fmt: skip
    return body


class StubAdapter(BaseAdapter):
    """A requests transport that answers every create at once with a recorded body."""

    def send(  # type: ignore[override]  # the transport options are irrelevant to a stub
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        match = _RESOURCE.search(request.path_url or "")
        response = requests.Response()
        response.status_code = 201
        response._content = json.dumps(
            recorded_json(match.group(2) if match else "Messages")
        ).encode()
        response.headers["Content-Type"] = "application/json"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def stub_transport(session: requests.Session) -> None:
    for prefix in ("https://", "http://"):
        session.mount(prefix, StubAdapter())


def _serve(cert_dir: Path, delay: float) -> None:
    """The stand-in's own process: its CPU must not compete with the client's for the GIL."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = cert_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    counts = {"connections": 0, "handshakes": 0, "requests": 0}
    lock = threading.Lock()

    def count(key: str) -> None:
        with lock:
            counts[key] += 1

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Twilio's API allows
        # Headers and body go out in separate writes: without this, Nagle plus the
        # client's delayed ACK add ~40 ms to every response, as no real server does.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            count("requests")
            if delay:
                time.sleep(delay)
            match = _RESOURCE.search(self.path)
            self._answer(201, recorded_json(match.group(2) if match else "Messages"))

        def _answer(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Control(Handler):
        def do_GET(self) -> None:
            with lock:
                self._answer(200, dict(counts))

        def do_POST(self) -> None:  # reset
            with lock:
                counts.update(dict.fromkeys(counts, 0))
            self._answer(200, {})

    class TlsServer(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

        def get_request(self) -> Any:
            sock, address = super().get_request()
            count("connections")
            return context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            ), address

        def finish_request(self, request: Any, client_address: Any) -> None:
            request.do_handshake()
            count("handshakes")
            super().finish_request(request, client_address)

    twilio = TlsServer(("127.0.0.1", 0), Handler)
    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({
        "url": f"https://127.0.0.1:{twilio.server_address[1]}",
        "control": f"http://127.0.0.1:{control.server_address[1]}",
        "ca": str(ca_file),
    }), flush=True)  # fmt: skip
    twilio.serve_forever()


class CountingTwilio:
    """HTTPS Twilio stand-in on 127.0.0.1, in its own process, counting TCP connections and
    TLS handshakes. Its CA is trusted only by who is handed `ca_file`."""

    def __init__(self, cert_dir: Path, delay: float = 0.0) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.stand_ins", str(cert_dir), str(delay)],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._process.stdout is not None
        ready = json.loads(self._process.stdout.readline())
        self.url, self._control, self.ca_file = ready["url"], ready["control"], Path(ready["ca"])

    def __enter__(self) -> CountingTwilio:
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait(10)
        assert self._process.stdout is not None
        self._process.stdout.close()

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = requests.get(self._control, timeout=10).json()
        return counts

    def reset(self) -> None:
        requests.post(self._control, timeout=10).raise_for_status()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), float(sys.argv[2]))
