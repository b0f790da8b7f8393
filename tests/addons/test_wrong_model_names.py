"""A model name that does not exist stops the add-on at start, saying what to set.

Each add-on's own command line runs against the Hub stand-in, as the s6 `run` script
starts it: a repository or file that is not there ends it with exit code 1 (the
`finish` script then takes the container down instead of s6 restarting it, so
nothing retries in a loop) and one log line that names the option to change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.addons import hub_stub
from tests.addons.addon_support import default_options, load_module, write_options

REPO = "owner/Model-GGUF"
CASES = [
    # slug, module, options, (hub repository, file) present, the option to set
    (
        "llama_server",
        "llama_command",
        {"model_repo": "owner/Missing-GGUF", "model_file": "m.gguf"},
        (REPO, "m.gguf"),
        "set the add-on's model_repo option",
    ),
    (
        "llama_server",
        "llama_command",
        {"model_repo": REPO, "model_file": "m-Q4_K_X.gguf"},
        (REPO, "m.gguf"),
        "set the add-on's model_file option",
    ),
    (
        "whisper_cpp",
        "whisper_command",
        {"model": "base.en"},
        ("ggerganov/whisper.cpp", "ggml-tiny.en.bin"),
        "set the add-on's model option",
    ),
    (
        "kokoro",
        "kokoro_command",
        {"model": "model_quantized", "voice": "af_heart"},
        ("onnx-community/Kokoro-82M-v1.0-ONNX", "onnx/model_quantized.onnx"),
        "set the add-on's voice option",
    ),
]


@pytest.mark.parametrize(
    ("slug", "module", "options", "present", "hint"),
    CASES,
    ids=["llama-repo", "llama-file", "whisper-model", "kokoro-voice"],
)
def test_wrong_name_fails_at_start_naming_the_option(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    slug: str,
    module: str,
    options: dict[str, str],
    present: tuple[str, str],
    hint: str,
) -> None:
    command = load_module(slug, module, monkeypatch)
    repo, filename = present
    (tmp_path / "hub" / repo / filename).parent.mkdir(parents=True)
    (tmp_path / "hub" / repo / filename).write_bytes(b"model")
    path = write_options(tmp_path / "options.json", default_options(slug, **options))
    with hub_stub.serve(tmp_path / "hub") as hub:
        hub_stub.make_default(hub, monkeypatch)
        argv = ["--options", str(path), "--models-dir", str(tmp_path / "models")]
        code = command.main([*argv, "--dry-run"])
    assert code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and hint in errors[0], errors
    # Found out from the file's metadata: no partial download is left behind.
    assert not list((tmp_path / "models").rglob("*.part"))
