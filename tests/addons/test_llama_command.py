"""llama_server: options.json -> the llama-server command, which really starts here.

The last tests start the produced command with the CPU llama-server and the tiny
SmolLM2 model that scripts/backends installs (CI fails without them, elsewhere they
are skipped): the command line must be one llama-server accepts, answering /health.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import re
import socket
import subprocess
from types import ModuleType
from typing import Any
import urllib.error
import urllib.request

import pytest

from tests.addons import hub_stub
from tests.addons.addon_support import (
    ADDONS,
    command_argv,
    default_options,
    discovery_payloads,
    load_module,
    write_options,
)
from tests.backends import BACKENDS, QWEN, SMOL, free_port, require, running, start

SLUG = "llama_server"
HEALTHCHECK = ADDONS / SLUG / "rootfs/usr/local/bin/healthcheck"


@pytest.fixture
def llama(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Return the add-on's llama_command module."""
    return load_module(SLUG, "llama_command", monkeypatch)


def _dry_run(
    llama: ModuleType,
    capsys: pytest.CaptureFixture[str],
    options: dict[str, Any],
    tmp_path: Path,
    *args: str,
) -> tuple[int, dict[str, Any]]:
    """Run the add-on's command line with --dry-run; return its code and command."""
    path = write_options(tmp_path / "options.json", options)
    argv = ["--options", str(path), "--models-dir", str(tmp_path / "models"), *args]
    code = llama.main([*argv, "--dry-run"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def test_default_options_give_the_documented_command(
    llama: ModuleType, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    command = llama.build_command(
        default_options(SLUG), model, host="0.0.0.0", port=8080
    )
    assert command.argv == [
        "/usr/local/bin/llama-server",
        "--host", "0.0.0.0",
        "--port", "8080",
        "--model", str(model),
        "--jinja",
        "--ctx-size", "8192",
        "--parallel", "1",
        "--flash-attn", "auto",
        "--batch-size", "2048",
        "--ubatch-size", "512",
        "--no-webui",
        "--swa-full",
    ]  # fmt: skip
    assert command.env == {}


def test_every_option_reaches_the_command(llama: ModuleType, tmp_path: Path) -> None:
    options = default_options(
        SLUG,
        context_size=16384,
        parallel=2,
        flash_attention="on",
        batch_size=1024,
        ubatch_size=256,
        swa_full=False,
        api_key="s3cret",
        extra_args="--n-gpu-layers 20 --cache-type-k 'q8_0'",
    )
    command = llama.build_command(
        options, tmp_path / "m.gguf", binary="llama-server", host="::", port=1234
    )
    assert command.argv == [
        "llama-server",
        "--host", "::",
        "--port", "1234",
        "--model", str(tmp_path / "m.gguf"),
        "--jinja",
        "--ctx-size", "16384",
        "--parallel", "2",
        "--flash-attn", "on",
        "--batch-size", "1024",
        "--ubatch-size", "256",
        "--no-webui",
        "--n-gpu-layers", "20",
        "--cache-type-k", "q8_0",
    ]  # fmt: skip
    # The key goes in the environment, not on the command line (ps shows that).
    assert command.env == {"LLAMA_API_KEY": "s3cret"}
    assert "s3cret" not in command.describe()


def test_local_model_path_is_used_as_it_is(
    llama: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "share/models/mine.gguf"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF")
    options = default_options(SLUG, model_path=str(model), model_repo="x/never")
    code, command = _dry_run(llama, capsys, options, tmp_path)
    assert code == 0
    assert command["argv"][command["argv"].index("--model") + 1] == str(model)
    assert not (tmp_path / "models").exists()  # nothing downloaded


def test_missing_local_model_is_a_clear_error(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = default_options(SLUG, model_path="/share/models/nope.gguf")
    code, _ = _dry_run(llama, capsys, options, tmp_path)
    assert code == 1
    assert "model_path '/share/models/nope.gguf' is not a file" in caplog.text


def test_model_is_fetched_from_the_hub(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A split GGUF is fetched whole, and llama-server gets its first part."""
    repo = tmp_path / "hub/owner/Model-GGUF"
    repo.mkdir(parents=True)
    parts = [f"m-Q4_K_M-{i:05d}-of-00002.gguf" for i in (1, 2)]
    for part in parts:
        (repo / part).write_bytes(part.encode())
    with hub_stub.serve(tmp_path / "hub") as hub:
        hub_stub.make_default(hub, monkeypatch)
        options = default_options(
            SLUG, model_repo="owner/Model-GGUF", model_file=parts[0]
        )
        code, command = _dry_run(llama, capsys, options, tmp_path)
    assert code == 0
    local = tmp_path / "models/owner/Model-GGUF"
    assert command["argv"][command["argv"].index("--model") + 1] == str(
        local / parts[0]
    )
    assert sorted(p.name for p in local.iterdir()) == parts


def test_bad_extra_args_is_a_clear_error(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = tmp_path / "m.gguf"
    model.touch()
    options = default_options(SLUG, model_path=str(model), extra_args="--x 'open")
    assert _dry_run(llama, capsys, options, tmp_path)[0] == 1
    assert "Option 'extra_args' is not a valid argument list" in caplog.text


def test_router_preset_from_the_models_option(
    llama: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More models: a router on a generated preset, a section per model."""
    files = {name: tmp_path / f"share/{name}.gguf" for name in ("main", "b", "c")}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"GGUF")
    models = [
        {"path": str(files["b"]), "context_size": 4096},
        {"name": "coder", "path": str(files["c"])},
    ]
    options = default_options(
        SLUG, model_path=str(files["main"]), models=models, models_max=1, api_key="k"
    )
    code, command = _dry_run(llama, capsys, options, tmp_path)
    assert code == 0
    preset = tmp_path / "models/router-models.ini"
    assert command["argv"][1:] == [
        "--host", "0.0.0.0",
        "--port", "8080",
        "--models-preset", str(preset),
        "--models-max", "1",
        "--no-webui",
    ]  # fmt: skip
    assert command["env"] == {"LLAMA_API_KEY": "k"}
    sections = preset.read_text().split("\n\n")
    assert [section.split("\n")[0] for section in sections] == [
        "[main]",
        "[b]",
        "[coder]",
    ]
    assert f"model = {files['b']}\njinja = true\nctx-size = 4096\n" in sections[1]
    assert "ctx-size = 8192\nparallel = 1\nflash-attn = auto\n" in sections[2]
    assert all(section.rstrip().endswith("swa-full = true") for section in sections)


@pytest.mark.parametrize(
    ("models", "error"),
    [
        ([{"name": "x"}], "models entry 1: give its path, or its repo and file"),
        ([{"path": "/share/nope.gguf"}], "models entry 1: model_path '/share/nope"),
        ([{"name": "m", "path": "{main}"}], "models entry 1: the name 'm' is taken"),
    ],
)
def test_router_models_option_errors_are_clear(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    models: list[dict[str, str]],
    error: str,
) -> None:
    main = tmp_path / "m.gguf"
    main.touch()
    models = [{k: v.format(main=main) for k, v in entry.items()} for entry in models]
    options = default_options(SLUG, model_path=str(main), models=models)
    assert _dry_run(llama, capsys, options, tmp_path)[0] == 1
    assert error in caplog.text


@pytest.fixture
def worker_port() -> Iterator[int]:
    """A loopback port that accepts connections, standing in for an RPC worker."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_rpc_servers_reach_the_command(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    worker_port: int,
) -> None:
    """The server role spreads its layers over the listed workers (`--rpc`)."""
    model = tmp_path / "m.gguf"
    model.touch()
    workers = [f"127.0.0.1:{worker_port}", f"localhost:{worker_port}"]
    options = default_options(SLUG, model_path=str(model), rpc_servers=workers)
    code, command = _dry_run(llama, capsys, options, tmp_path, "--rpc-wait", "5")
    assert code == 0
    argv = command["argv"]
    assert argv[argv.index("--rpc") + 1] == ",".join(workers)
    assert argv[argv.index("--rpc") - 1] == "--swa-full"  # before extra_args


def test_rpc_worker_that_stays_away_is_a_clear_error(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = tmp_path / "m.gguf"
    model.touch()
    worker = f"127.0.0.1:{free_port()}"
    options = default_options(SLUG, model_path=str(model), rpc_servers=[worker])
    assert _dry_run(llama, capsys, options, tmp_path, "--rpc-wait", "1.5")[0] == 1
    assert f"Waiting for RPC worker {worker}" in caplog.text
    assert f"RPC worker {worker} does not answer" in caplog.text
    assert "role rpc_worker and its port 50052/tcp mapped" in caplog.text


def test_rpc_servers_with_a_router_is_a_clear_error(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    worker_port: int,
) -> None:
    """Each model of a router is a server; a worker serves one at a time."""
    main, other = tmp_path / "m.gguf", tmp_path / "o.gguf"
    main.touch()
    other.touch()
    options = default_options(
        SLUG,
        model_path=str(main),
        models=[{"path": str(other)}],
        rpc_servers=[f"127.0.0.1:{worker_port}"],
    )
    assert _dry_run(llama, capsys, options, tmp_path)[0] == 1
    assert "rpc_servers works with one model" in caplog.text


def test_rpc_worker_role_runs_ggml_rpc_server(
    llama: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker: ggml-rpc-server on its own port, no model, nothing announced."""
    options = default_options(SLUG, role="rpc_worker", extra_args="--threads 3")
    code, command = _dry_run(llama, capsys, options, tmp_path)
    assert code == 0
    assert command["argv"] == [
        "/usr/local/bin/ggml-rpc-server",
        "--host", "0.0.0.0",
        "--port", "50052",
        "--cache",
        "--threads", "3",
    ]  # fmt: skip
    # The tensors a server sends are kept with the models (left out of backups).
    assert command["env"] == {"LLAMA_CACHE": str(tmp_path / "models/rpc-cache")}
    assert not (tmp_path / "models").exists()  # the default model was not fetched
    path = tmp_path / "options.json"
    assert llama.main(["--options", str(path), "--discovery", "local_voice"]) == 0
    assert capsys.readouterr().out == ""  # the discovery service announces nothing


def test_rpc_worker_healthcheck_looks_for_its_listening_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker_port: int
) -> None:
    """ggml-rpc-server speaks no HTTP: healthy while its port listens."""
    options = default_options(SLUG, role="rpc_worker")
    path = write_options(tmp_path / "options.json", options)
    monkeypatch.setenv("LOCAL_VOICE_OPTIONS", str(path))
    monkeypatch.setenv("LOCAL_VOICE_RPC_PORT", str(worker_port))
    assert subprocess.run([HEALTHCHECK, "--ready"], check=False).returncode == 0
    monkeypatch.setenv("LOCAL_VOICE_RPC_PORT", str(free_port()))
    assert subprocess.run([HEALTHCHECK], check=False).returncode != 0


@pytest.mark.parametrize(
    ("filename", "parts"),
    [
        ("model-Q4_K_M.gguf", ["model-Q4_K_M.gguf"]),
        (
            "gpt-oss-120b-mxfp4-00001-of-00003.gguf",
            [f"gpt-oss-120b-mxfp4-{i:05d}-of-00003.gguf" for i in (1, 2, 3)],
        ),
    ],
)
def test_split_models_are_fetched_whole(
    llama: ModuleType, filename: str, parts: list[str]
) -> None:
    assert llama.gguf_parts(filename) == parts


@pytest.mark.parametrize("api_key", ["", "s3cret"])
def test_discovery_payload(
    llama: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    api_key: str,
) -> None:
    """What the integration's async_step_hassio receives (api_key empty when none)."""
    options = default_options(SLUG, **({"api_key": api_key} if api_key else {}))
    host = "a0d7b954-llama-server"
    payloads = discovery_payloads(SLUG, llama, options, (tmp_path, capsys), host)
    assert payloads == {
        "local_voice": {
            "service": "llama_server",
            "host": host,
            "port": 8080,
            "api_key": api_key,
        }
    }
    path = tmp_path / "options.json"
    assert llama.main(["--options", str(path), "--discovery", "wyoming"]) == 1


# --- the produced command, started for real ---------------------------------------


def _get(url: str, key: str | None = None) -> int:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def _read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_produced_command_starts_llama_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The add-on's start-up code, as s6 runs it, becomes a llama-server that answers.

    Defaults plus an API key and a context small enough for 2 cores.
    """
    require(BACKENDS / "llama-server", SMOL)
    port = free_port()
    options = default_options(
        SLUG, model_path=str(SMOL), context_size=2048, api_key="s3cret"
    )
    path = write_options(tmp_path / "options.json", options)
    argv = command_argv(SLUG, "llama_command", path)
    argv += ["--binary", str(BACKENDS / "llama-server")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    with running(start("addon-llama", argv, "http", tmp_path, port)) as srv:
        assert _get(f"{srv.url}/health") == 200
        assert _get(f"{srv.url}/v1/models") == 401  # the API key is in force
        assert _get(f"{srv.url}/v1/models", key="s3cret") == 200
        # The launcher replaced itself with llama-server: s6 supervises the server.
        exe = Path(f"/proc/{srv.process.pid}/exe").resolve()
        assert exe == (BACKENDS / "llama-server").resolve()
        # The container's HEALTHCHECK and the discovery wait agree it is up.
        monkeypatch.setenv("LOCAL_VOICE_PORT", str(port))
        assert subprocess.run([HEALTHCHECK, "--ready"], check=False).returncode == 0
    assert subprocess.run([HEALTHCHECK, "--ready"], check=False).returncode != 0
    log = srv.log.read_text()
    assert "--swa-full" in log and "--jinja" in log and "[LLAMA_API_KEY=***]" in log
    # The devices llama.cpp can use, listed by the launcher before the start.
    assert re.search(r"INFO: Device: \S", log), log
    assert "s3cret" not in log


def test_router_command_starts_a_router(tmp_path: Path) -> None:
    """With a second model in `models`, the add-on's command is a router of both."""
    require(BACKENDS / "llama-server", SMOL, QWEN)
    port = free_port()
    models = [{"name": "qwen", "path": str(QWEN), "context_size": 4096}]
    options = default_options(
        SLUG, model_path=str(SMOL), context_size=2048, models=models
    )
    path = write_options(tmp_path / "options.json", options)
    argv = command_argv(SLUG, "llama_command", path)
    argv += ["--binary", str(BACKENDS / "llama-server")]
    argv += ["--models-dir", str(tmp_path / "models")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    with running(start("addon-router", argv, "http", tmp_path, port)) as srv:
        props = json.loads(_read(f"{srv.url}/props"))
        listed = json.loads(_read(f"{srv.url}/v1/models"))["data"]
    assert props["role"] == "router"
    assert props["max_instances"] == 2  # models_max: all of them by default
    assert sorted(model["id"] for model in listed) == [
        "qwen",
        "smollm2-135m-instruct-q4_1",
    ]
