"""Entry set-up, unload, availability and recovery against real servers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.local_voice.const import (
    SERVICE_ASR,
    SERVICE_TTS,
    UPDATE_INTERVAL_SECONDS,
)
from custom_components.local_voice.diagnostics import (
    async_get_config_entry_diagnostics,
)
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_API_KEY, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util

from .backends import (
    SMOL,
    VENV_PY,
    WHISPER_DIR,
    Backend,
    asr_argv,
    free_port,
    llama_argv,
    require,
    start,
)
from .common import llama_entry, setup_entry, wyoming_entry


def _states(hass: HomeAssistant, entry_id: str) -> dict[str, str]:
    """Return the state of every entity of an entry, by domain."""
    states = {}
    for entity in er.async_entries_for_config_entry(er.async_get(hass), entry_id):
        state = hass.states.get(entity.entity_id)
        assert state is not None
        states[entity.domain] = state.state
    return states


async def _tick(hass: HomeAssistant) -> None:
    """Let the coordinators poll once more."""
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=UPDATE_INTERVAL_SECONDS + 1)
    )
    await hass.async_block_till_done(wait_background_tasks=True)


@pytest.mark.parametrize(
    ("service", "fixture", "title", "entity_id"),
    [
        (SERVICE_ASR, "asr_server", "whisper.cpp", "stt.whisper_cpp"),
        (SERVICE_TTS, "tts_server", "Kokoro", "tts.kokoro"),
    ],
)
async def test_wyoming_setup_unload(
    hass: HomeAssistant,
    request: pytest.FixtureRequest,
    service: str,
    fixture: str,
    title: str,
    entity_id: str,
) -> None:
    """A Wyoming entry loads its platform and a sensor, named as the server."""
    server: Backend = request.getfixturevalue(fixture)
    entry = await setup_entry(hass, wyoming_entry(service, server.port, title=title))
    assert entry.state is ConfigEntryState.LOADED
    domain = entity_id.split(".", maxsplit=1)[0]
    states = _states(hass, entry.entry_id)
    assert sorted(states) == sorted([domain, "sensor"])
    registered = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert entity_id in [entity.entity_id for entity in registered]
    assert len(registered) == 2
    assert states[domain] != STATE_UNAVAILABLE
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_llama_setup_unload(
    hass: HomeAssistant, llama_tools_server: Backend
) -> None:
    """A llama entry gets a conversation and an AI task entity per subentry."""
    entry = await setup_entry(hass, llama_entry(llama_tools_server.url))
    assert entry.state is ConfigEntryState.LOADED
    states = _states(hass, entry.entry_id)
    assert sorted(states) == ["ai_task", "conversation", "sensor"]
    assert STATE_UNAVAILABLE not in states.values()
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED


async def test_credentials_leave_old_unique_ids(
    hass: HomeAssistant, llama_tools_server: Backend
) -> None:
    """An entry from before 1.2 with user-info in its URL: the unique id loses it."""
    url = llama_tools_server.url.replace("://", "://user:s3cret@")
    entry = await setup_entry(hass, llama_entry(url))
    assert entry.state is ConfigEntryState.LOADED
    assert entry.minor_version == 2
    assert entry.unique_id == llama_tools_server.url


async def test_server_down_at_start_retries(hass: HomeAssistant) -> None:
    """Nothing listening: the entry is retried, not failed."""
    entry = await setup_entry(hass, llama_entry(f"http://127.0.0.1:{free_port()}"))
    assert entry.state is ConfigEntryState.SETUP_RETRY
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, free_port()))
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_llama_unavailable_and_recovers(
    hass: HomeAssistant, backend_logs: Path
) -> None:
    """Entities follow llama-server going away and coming back on the same port."""
    require(SMOL)
    argv = llama_argv(SMOL, ctx=2048, slots=1)
    server = start("llama-restart", argv, "http", backend_logs)
    try:
        entry = await setup_entry(hass, llama_entry(server.url))
        assert STATE_UNAVAILABLE not in _states(hass, entry.entry_id).values()

        server.stop()
        await _tick(hass)
        assert set(_states(hass, entry.entry_id).values()) == {STATE_UNAVAILABLE}
        assert entry.state is ConfigEntryState.LOADED

        server = start("llama-restart", argv, "http", backend_logs, port=server.port)
        await _tick(hass)
        assert STATE_UNAVAILABLE not in _states(hass, entry.entry_id).values()
    finally:
        server.stop()


async def test_asr_unavailable_and_recovers(
    hass: HomeAssistant, backend_logs: Path
) -> None:
    """The STT entity follows the Wyoming server going away and coming back."""
    require(VENV_PY, WHISPER_DIR / "ggml-tiny.en.bin")
    server = start("asr-restart", asr_argv(), "tcp", backend_logs)
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, server.port))
        assert _states(hass, entry.entry_id)["stt"] != STATE_UNAVAILABLE

        server.stop()
        await _tick(hass)
        assert _states(hass, entry.entry_id)["stt"] == STATE_UNAVAILABLE

        server = start("asr-restart", asr_argv(), "tcp", backend_logs, port=server.port)
        await _tick(hass)
        assert _states(hass, entry.entry_id)["stt"] != STATE_UNAVAILABLE
    finally:
        server.stop()


async def test_diagnostics(
    hass: HomeAssistant, llama_tools_server: Backend, tts_server: Backend
) -> None:
    """Diagnostics show the server's properties and never the API key."""
    entry = await setup_entry(
        hass, llama_entry(llama_tools_server.url, **{CONF_API_KEY: "secret"})
    )
    # The tool server has no key set, so any key is accepted.
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["entry"]["data"][CONF_API_KEY] == "**REDACTED**"
    assert "secret" not in str(diagnostics)
    assert diagnostics["server_available"] is True
    assert diagnostics["server"]["supports_tools"] is True
    assert diagnostics["server"]["n_ctx"] == 4096
    chat = diagnostics["chat"]
    assert (chat["slots"], chat["timings"]) == ([], [])  # no chat yet
    # The conversation agent warmed both slots at start.
    assert [held["slot"] for held in chat["held"]] == [0, 1]
    assert [warm_up["slot"] for warm_up in chat["warmups"]] == [0, 1]
    # What /slots says of each slot: its context, whether it is busy; no prompts.
    assert diagnostics["server_slots"] == [
        {"id": 0, "n_ctx": 4096, "is_processing": False},
        {"id": 1, "n_ctx": 4096, "is_processing": False},
    ]

    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, tts_server.port))
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["server"]["programs"][0]["name"] == "kokoro"
    assert diagnostics["timings"] == []
