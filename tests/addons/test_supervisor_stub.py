"""The Supervisor stand-in answers the real bashio the way build-addon --smoke needs.

bashio 0.17.5 (the version the base image pins, in ../shared/addon-base) runs here on
the host's bash, curl and jq: `bashio::discovery` must post `{"service", "config"}`
with the add-on's payload unchanged and get the uuid back, and a wrong token must be
refused, so that the smoke's comparison of announced and expected messages is sound.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess

import pytest

from tests.addons import supervisor_stub
from tests.addons.addon_support import ROOT, require_tool

BASHIO = ROOT.parent / "shared/addon-base/bashio-0.17.5/lib/bashio.sh"


def _bashio(url: str, token: str, script: str) -> subprocess.CompletedProcess[str]:
    if not BASHIO.is_file():
        pytest.fail(f"{BASHIO} is missing: the workplace's add-on base pieces")
    require_tool("jq", "jq")
    require_tool("curl", "curl")
    env = {**os.environ, "SUPERVISOR_API": url, "SUPERVISOR_TOKEN": token}
    return subprocess.run(
        ["bash", "-c", f"source {BASHIO} && {script}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_discovery_reaches_the_stub_unchanged(tmp_path: Path) -> None:
    payload = {"service": "asr", "host": "local-whisper-cpp", "port": 10300}
    with supervisor_stub.serve({"model": "base"}) as stub:
        result = _bashio(
            stub.url,
            supervisor_stub.TOKEN,
            f"bashio::discovery local_voice '{json.dumps(payload)}'",
        )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 32  # the uuid the Supervisor returns
    assert stub.discoveries() == [{"service": "local_voice", "config": payload}]
    assert stub.unexpected() == []


def test_wrong_token_is_refused() -> None:
    with supervisor_stub.serve({}) as stub:
        result = _bashio(stub.url, "wrong", "bashio::discovery local_voice '{}'")
    assert result.returncode != 0
    assert "permission denied" in result.stdout + result.stderr
    assert stub.discoveries() == [{"service": "local_voice", "config": {}}]
