"""Fixtures: the real backends, started once per session on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_socket

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

from .backends import (
    KOKORO_FILES,
    QWEN,
    QWEN_TEMPLATE,
    SMOL,
    VENV_PY,
    WHISPER_DIR,
    Backend,
    asr_argv,
    llama_argv,
    piper_argv,
    require,
    running,
    start,
    tts_argv,
)
from .conversation_support import FakeLlama
from .speech_support import Relay

# The benchmarks' realistic home as the `home` fixture.
pytest_plugins = ["tests.benchmark_home"]


@pytest.fixture(autouse=True)
async def auto_enable_custom_integrations(
    hass: HomeAssistant, enable_custom_integrations: None
) -> None:
    """Load custom_components/local_voice, with the core component Assist needs."""
    assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture(autouse=True)
def loopback_sockets() -> None:
    """Allow sockets, to loopback only: the tests talk to real local servers."""
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(["127.0.0.1", "::1"], allow_unix_socket=True)


@pytest.fixture(scope="session")
def backend_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder for the backends' logs (shown when one fails to start)."""
    return tmp_path_factory.mktemp("backend-logs")


@pytest.fixture(scope="session")
def llama_tools_server(backend_logs: Path) -> Iterator[Backend]:
    """Real llama-server with Qwen2.5-Coder-0.5B: emits real tool calls."""
    require(QWEN, QWEN_TEMPLATE)
    with running(start("llama-qwen", llama_argv(QWEN), "http", backend_logs)) as srv:
        yield srv


@pytest.fixture(scope="session")
def llama_chat_server(backend_logs: Path) -> Iterator[Backend]:
    """Real llama-server with SmolLM2-135M: fast plain chat, no tool support."""
    require(SMOL)
    with running(start("llama-smol", llama_argv(SMOL), "http", backend_logs)) as srv:
        yield srv


@pytest.fixture(scope="session")
def asr_server(backend_logs: Path) -> Iterator[Backend]:
    """Real Wyoming whisper.cpp ASR server (tiny.en)."""
    require(VENV_PY, WHISPER_DIR / "ggml-tiny.en.bin")
    with running(start("asr", asr_argv(), "tcp", backend_logs)) as srv:
        yield srv


@pytest.fixture(scope="session")
def asr_base_server(backend_logs: Path) -> Iterator[Backend]:
    """Real Wyoming whisper.cpp ASR server on the multilingual Whisper base."""
    require(VENV_PY, WHISPER_DIR / "ggml-base.bin")
    argv = asr_argv("base")
    with running(start("asr-base", argv, "tcp", backend_logs)) as srv:
        yield srv


@pytest.fixture(scope="session")
def tts_server(backend_logs: Path) -> Iterator[Backend]:
    """The kokoro add-on's own Wyoming server on Kokoro-82M (voice jf_alpha)."""
    require(*KOKORO_FILES)
    with running(start("tts", tts_argv(), "tcp", backend_logs)) as srv:
        yield srv


@pytest.fixture(scope="session")
def piper_server(backend_logs: Path) -> Iterator[Backend]:
    """Real Wyoming Piper TTS server (en_US-joe-medium): a different TTS server."""
    require(VENV_PY)
    with running(start("piper", piper_argv(backend_logs), "tcp", backend_logs)) as srv:
        yield srv


@pytest.fixture
async def fake() -> AsyncIterator[list[FakeLlama]]:
    """Fakes started by a test, stopped after it."""
    fakes: list[FakeLlama] = []
    yield fakes
    for item in fakes:
        await item.stop()


@pytest.fixture
async def relay(tts_server: Backend) -> AsyncIterator[Relay]:
    """A recording relay in front of the session's Kokoro server."""
    relay = await Relay(tts_server.port).start()
    yield relay
    await relay.stop()
