"""A loopback stand-in of the Supervisor API, for the add-ons' real bashio.

No Supervisor runs on the test machines. The add-on scripts reach it only through
bashio (`SUPERVISOR_API`, `SUPERVISOR_TOKEN`): `bashio::discovery` posts to
`/discovery`, and bashio's config and info helpers read `/addons/self/options/config`
and `/addons/self/info`. The stub answers those the way the Supervisor does
(`{"result": "ok", "data": ...}`, 401 without the token) and records every request,
so a check can compare what an add-on announced with what it should announce.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
import json
from typing import Any
import uuid

from tests.addons.hub_stub import loopback_server

TOKEN = "smoke-supervisor-token"


@dataclass
class Call:
    """One request the stub answered: method, path and JSON body (None if none)."""

    method: str
    path: str
    body: Any


@dataclass
class SupervisorStub:
    """The running stub: its URL, the add-on's options and the requests seen."""

    options: dict[str, Any]
    info: dict[str, Any]
    url: str = ""
    calls: list[Call] = field(default_factory=list)

    def discoveries(self) -> list[dict[str, Any]]:
        """The discovery messages posted so far, in order."""
        return [
            call.body
            for call in self.calls
            if call.method == "POST" and call.path == "/discovery"
        ]

    def unexpected(self) -> list[Call]:
        """Requests for anything the stub does not answer."""
        return [call for call in self.calls if _route(call) is None]


def _route(call: Call) -> str | None:
    known = {
        ("POST", "/discovery"): "discovery",
        ("GET", "/addons/self/options/config"): "options",
        ("GET", "/addons/self/info"): "info",
    }
    return known.get((call.method, call.path))


def _handler(stub: SupervisorStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Keep the output quiet."""

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            call = Call(self.command, self.path, body)
            stub.calls.append(call)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"result": "error", "message": "Unauthorized"})
                return
            route = _route(call)
            if route == "discovery":
                data: Any = {"uuid": uuid.uuid4().hex}
            elif route == "options":
                data = stub.options
            elif route == "info":
                data = stub.info
            else:
                self._reply(404, {"result": "error", "message": "Not found"})
                return
            self._reply(200, {"result": "ok", "data": data})

    return Handler


@contextlib.contextmanager
def serve(
    options: dict[str, Any], info: dict[str, Any] | None = None
) -> Iterator[SupervisorStub]:
    """Serve the stub on a loopback port until the block ends (threads joined)."""
    stub = SupervisorStub(options, info or {})
    with loopback_server(_handler(stub), "supervisor-stub") as url:
        stub.url = url
        yield stub
