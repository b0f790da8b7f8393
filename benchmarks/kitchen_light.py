"""Ask "Turn on the kitchen light" in N new conversations; count the lights turned on.

A small model's tool calls, measured the way a new user meets them: the Home
Assistant that scripts/develop sets up (its configuration, its Qwen2.5-Coder-0.5B
llama-server, the recommended conversation options), started in a temporary folder
and driven only through its public HTTP API (onboarding, /api/conversation/process,
/api/services, /api/states). Speech backends are left out: they play no part here.

    .venv/bin/python benchmarks/kitchen_light.py [--runs 10]

Prints, per conversation, whether the light went on, the seconds the answer took,
and what the user was told; then the count.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from homeassistant.components.http.config import (
    HTTP_STORAGE_SCHEMA,
    STORAGE_MINOR_VERSION,
    STORAGE_VERSION,
)
from homeassistant.helpers.json import JSONEncoder
from scripts.develop import CONFIGURATION_YAML, write_config
from tests.backends import QWEN, Backend, free_port, llama_argv, require, start

AGENT = "conversation.local_voice_conversation"
LIGHT = "light.kitchen_light"
CLIENT_ID = "http://127.0.0.1/"


def _call(
    base: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    form: bool = False,
) -> Any:
    """Send one request to Home Assistant; return its JSON answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None and form:
        data = urllib.parse.urlencode(body).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(f"{base}{path}", data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=600) as resp:
        return json.loads(resp.read() or b"null")


def _token(base: str) -> str:
    """Onboard the first user, as the UI would, and return an access token."""
    code = _call(
        base,
        "/api/onboarding/users",
        {
            "client_id": CLIENT_ID,
            "name": "Bench",
            "username": "bench",
            "password": "bench-password-1",
            "language": "en",
        },
    )["auth_code"]
    return str(
        _call(
            base,
            "/auth/token",
            {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID},
            form=True,
        )["access_token"]
    )


def _wait_for(base: str, token: str, entity_id: str, timeout: float = 300) -> None:
    """Wait until Home Assistant runs and has the entity."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = _call(base, f"/api/states/{entity_id}", token=token)
            if state.get("state") not in (None, "unavailable"):
                return
        except urllib.error.HTTPError, urllib.error.URLError, ConnectionError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{entity_id} did not appear")


def _wait_for_onboarding(base: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _call(base, "/api/onboarding")
        except urllib.error.HTTPError, urllib.error.URLError, ConnectionError:
            time.sleep(1)
        else:
            return
    raise RuntimeError("Home Assistant did not start")


def _write_http_config(config: Path, port: int) -> None:
    """Listen on loopback only: the confirmed (stable) HTTP config, as stored.

    HTTP settings in YAML would be a trial config that Home Assistant reverts,
    restarting, after five minutes.
    """
    stable = {
        **HTTP_STORAGE_SCHEMA({"server_host": ["127.0.0.1"], "server_port": port}),
        "created_at": "2026-01-01T00:00:00+00:00",
        "error": None,
        "error_message": None,
    }
    (config / ".storage" / "http").write_text(
        json.dumps(
            {
                "version": STORAGE_VERSION,
                "minor_version": STORAGE_MINOR_VERSION,
                "key": "http",
                "data": {
                    "stable": stable,
                    "pending": None,
                    "yaml_migration_done": True,
                },
            },
            cls=JSONEncoder,
        )
    )


def main() -> None:
    """Start llama-server and Home Assistant, ask N times, print the count."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--text", default="Turn on the kitchen light")
    args = parser.parse_args()
    require(QWEN)
    work = Path(tempfile.mkdtemp(prefix="kitchen-light-"))
    config = work / "config"
    port = free_port()
    yaml = CONFIGURATION_YAML.replace("frontend:\n", "").replace("config:\n", "api:\n")
    llama = start("llama", llama_argv(QWEN), "http", work)
    # The speech entries point at ports nobody listens on: they only retry.
    idle = [
        Backend(name, "127.0.0.1", free_port(), llama.process, work / f"{name}.log")
        for name in ("asr", "tts")
    ]
    write_config(config, llama, *idle, yaml=yaml)
    _write_http_config(config, port)
    base = f"http://127.0.0.1:{port}"
    hass = subprocess.Popen(
        [sys.executable, "-m", "homeassistant", "-c", str(config)],
        stdout=(work / "home-assistant.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_onboarding(base)
        token = _token(base)
        _wait_for(base, token, LIGHT)
        _wait_for(base, token, AGENT)
        turned_on = 0
        for run in range(1, args.runs + 1):
            _call(
                base,
                "/api/services/input_boolean/turn_off",
                {"entity_id": "input_boolean.kitchen"},
                token,
            )
            began = time.monotonic()
            result = _call(
                base,
                "/api/conversation/process",
                {"text": args.text, "agent_id": AGENT, "language": "en"},
                token,
            )
            seconds = time.monotonic() - began
            time.sleep(0.5)  # the template light follows its input_boolean
            on = _call(base, f"/api/states/{LIGHT}", token=token)["state"] == "on"
            turned_on += on
            response = result["response"]
            said = response.get("speech", {}).get("plain", {}).get("speech", "")
            print(
                f"{run:2}: light {'on ' if on else 'off'} {seconds:5.1f} s"
                f" {response['response_type']}: {said!r}",
                flush=True,
            )
        print(f"turned on: {turned_on}/{args.runs}  (logs in {work})")
    finally:
        hass.terminate()
        hass.wait(60)
        llama.stop()


if __name__ == "__main__":
    main()
