"""A local directory served over loopback HTTP the way the Hugging Face Hub does.

No hub is reachable from the test machines, so the add-ons' model fetch runs against
this stand-in: `<root>/<owner>/<name>/<filename>` is served at
`/<owner>/<name>/resolve/<revision>/<filename>` with the headers huggingface_hub reads
(ETag, X-Repo-Commit, Content-Length), HTTP range requests, and the Hub's error codes
(`X-Error-Code: RepoNotFound`, `EntryNotFound`, `GatedRepo`) for what is not there.
A repository folder holding a file named `.gated` answers like a gated repository.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import hashlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
import re
import threading
from urllib.parse import unquote

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


@dataclass
class Request:
    """One request the stub answered."""

    method: str
    path: str
    range: str | None


@dataclass
class HubStub:
    """The running stub: its endpoint and the requests it has seen."""

    root: Path
    endpoint: str = ""
    requests: list[Request] = field(default_factory=list)
    honour_ranges: bool = True  # False: answer every GET whole, as some CDNs do

    def downloads(self) -> list[Request]:
        """The GET requests (file bodies) seen so far."""
        return [r for r in self.requests if r.method == "GET"]


def _handler(stub: HubStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def end_headers(self) -> None:
            # One request per connection: the stub's threads end with their request,
            # so closing the stub never waits on an idle keep-alive connection.
            self.send_header("Connection", "close")
            self.close_connection = True
            super().end_headers()

        def _error(self, status: int, code: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, *, body: bool) -> None:
            stub.requests.append(
                Request(self.command, self.path, self.headers.get("Range"))
            )
            match = _RESOLVE.match(unquote(self.path.split("?", 1)[0]))
            if match is None:
                self._error(404, "RepoNotFound")
                return
            repo = stub.root / match["repo"]
            if not repo.is_dir():
                self._error(404, "RepoNotFound")
                return
            if (repo / ".gated").exists():
                self._error(403, "GatedRepo")
                return
            path = repo / match["file"]
            if not path.is_file():
                self._error(404, "EntryNotFound")
                return
            data = path.read_bytes()
            start = 0
            wanted = self.headers.get("Range") if stub.honour_ranges else None
            if body and wanted:
                start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1])  # type: ignore[index]
                self.send_response(206)
                self.send_header(
                    "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
                )
            else:
                self.send_response(200)
            etag = hashlib.sha256(data).hexdigest()
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if body:
                self.wfile.write(data[start:])

    return Handler


@contextlib.contextmanager
def serve(root: Path) -> Iterator[HubStub]:
    """Serve `root` on a loopback port until the block ends (threads joined)."""
    stub = HubStub(root)
    with loopback_server(_handler(stub), "hub-stub") as url:
        stub.endpoint = url
        yield stub


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    """Run an HTTP server on a free loopback port; yield its URL, join its threads."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = False
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def make_default(stub: HubStub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point huggingface_hub's default endpoint at the stub, as HF_ENDPOINT would.

    For code that does not take an endpoint argument (the add-ons' command modules):
    huggingface_hub reads HF_ENDPOINT once, on import, into these two constants.
    """
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", stub.endpoint)
    monkeypatch.setattr(
        "huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
        stub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
