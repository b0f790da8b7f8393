"""whisper_cpp: options.json -> the Wyoming whisper.cpp command, started here for real.

The real server is the one scripts/backends installs: the same wyoming-whisper-cpp
release the add-on pins, with whisper tiny.en (CI fails without it, elsewhere the
tests that need it are skipped).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import subprocess
from types import ModuleType

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from tests.addons import hub_stub
from tests.addons.addon_support import (
    ADDONS,
    command_argv,
    config,
    default_options,
    discovery_payloads,
    load_module,
    write_options,
)
from tests.backends import VENV_PY, WHISPER_DIR, free_port, require, running, start

SLUG = "whisper_cpp"
HEALTHCHECK = ADDONS / SLUG / "rootfs/usr/local/bin/healthcheck"


@pytest.fixture
def whisper(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Return the add-on's whisper_command module."""
    return load_module(SLUG, "whisper_command", monkeypatch)


def test_default_options_give_the_documented_command(whisper: ModuleType) -> None:
    models = Path("/config/models/ggerganov/whisper.cpp")
    command = whisper.build_command(
        default_options(SLUG), models, python="python3", host="0.0.0.0", port=10300
    )
    assert command.argv == [
        "python3", "-m", "wyoming_whisper_cpp",
        "--uri", "tcp://0.0.0.0:10300",
        "--model", "base",
        "--data-dir", str(models),
        "--download-dir", str(models),
        "--language", "auto",
        "--beam-size", "1",
    ]  # fmt: skip
    assert command.env == {}


def test_model_comes_from_the_whisper_cpp_repository(whisper: ModuleType) -> None:
    spec = whisper.model_file(default_options(SLUG, model="large-v3-turbo-q5_0"))
    assert (spec.repo_id, spec.filename) == (
        "ggerganov/whisper.cpp",
        "ggml-large-v3-turbo-q5_0.bin",
    )


def test_model_is_fetched_then_the_command_points_at_it(
    whisper: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = tmp_path / "hub/ggerganov/whisper.cpp"
    repo.mkdir(parents=True)
    (repo / "ggml-small.en.bin").write_bytes(b"ggml" * 1000)
    options = write_options(
        tmp_path / "options.json",
        default_options(SLUG, model="small.en", language="auto", beam_size=5),
    )
    models = tmp_path / "models"
    with hub_stub.serve(tmp_path / "hub") as hub:
        hub_stub.make_default(hub, monkeypatch)
        argv = ["--options", str(options), "--models-dir", str(models), "--dry-run"]
        assert whisper.main([*argv, "--python", "py"]) == 0
    command = json.loads(capsys.readouterr().out)
    folder = str(models / "ggerganov/whisper.cpp")
    assert command["argv"][:3] == ["py", "-m", "wyoming_whisper_cpp"]
    assert command["argv"][command["argv"].index("--data-dir") + 1] == folder
    assert command["argv"][-4:] == ["--language", "auto", "--beam-size", "5"]
    assert (models / "ggerganov/whisper.cpp/ggml-small.en.bin").is_file()


def test_discovery_payloads(
    whisper: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """local_voice gets its asr service; Home Assistant's Wyoming gets the URI."""
    payloads = discovery_payloads(
        SLUG, whisper, default_options(SLUG), (tmp_path, capsys), "a0d7b954-whisper-cpp"
    )
    assert payloads == {
        "local_voice": {
            "service": "asr",
            "host": "a0d7b954-whisper-cpp",
            "port": 10300,
        },
        "wyoming": {"uri": "tcp://a0d7b954-whisper-cpp:10300"},
    }


def _server_names(code: str) -> list[str]:
    """Evaluate `code` in the Python environment of the real server."""
    require(VENV_PY)
    out = subprocess.run([VENV_PY, "-c", code], check=True, capture_output=True)
    return list(json.loads(out.stdout))


def test_schema_offers_only_what_the_server_knows() -> None:
    """Every model and language in config.yaml is one pywhispercpp accepts."""
    schema = config(SLUG)["schema"]
    models = schema["model"].removeprefix("list(").removesuffix(")").split("|")
    languages = schema["language"].removeprefix("list(").removesuffix(")").split("|")
    known_models = _server_names(
        "import json; from pywhispercpp.constants import AVAILABLE_MODELS as m; "
        "print(json.dumps(m))"
    )
    known_languages = _server_names(
        "import json; from pywhispercpp.model import Model; "
        "print(json.dumps(sorted(Model.available_languages())))"
    )
    assert set(models) <= set(known_models)
    assert set(languages) - {"auto"} <= set(known_languages)
    assert config(SLUG)["options"]["model"] in models


async def _describe(port: int) -> Info:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 10)
            assert event is not None
            if Info.is_type(event.type):
                return Info.from_event(event)


def test_produced_command_starts_the_wyoming_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The add-on's start-up code, as s6 runs it, becomes a server that answers.

    tiny.en is already in the model folder: nothing is fetched.
    """
    model = WHISPER_DIR / "ggml-tiny.en.bin"
    require(VENV_PY, model)
    folder = tmp_path / "models/ggerganov/whisper.cpp"
    folder.mkdir(parents=True)
    (folder / model.name).symlink_to(model)
    options = write_options(
        tmp_path / "options.json", default_options(SLUG, model="tiny.en")
    )
    port = free_port()
    argv = command_argv(SLUG, "whisper_command", options)
    argv += ["--models-dir", str(tmp_path / "models")]
    argv += ["--python", str(VENV_PY), "--host", "127.0.0.1", "--port", str(port)]
    with running(start("addon-whisper", argv, "tcp", tmp_path, port)) as srv:
        info = asyncio.run(_describe(port))
        assert Path(f"/proc/{srv.process.pid}/exe").resolve() == VENV_PY.resolve()
        monkeypatch.setenv("LOCAL_VOICE_PORT", str(port))
        assert subprocess.run([HEALTHCHECK, "--ready"], check=False).returncode == 0
    assert [(p.name, [m.name for m in p.models]) for p in info.asr] == [
        ("whisper.cpp", ["tiny.en"])
    ]
