"""Slot warm-up: every slot holds the static prefix before its first chat.

Against a real llama-server of the test's own (SmolLM2-135M, 2 slots), so it can be
restarted: a restart empties the slots, and the agent notices it either from the
coordinator (server down, then back) or from a chat that found its slot cold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.local_voice.const import CONF_MAX_TOKENS, CONF_TEMPERATURE
from custom_components.local_voice.slots import SlotManager
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant

from .backends import SMOL, Backend, llama_argv, require, start
from .common import llama_entry, setup_entry
from .conversation_support import (
    FakeLlama,
    Home,
    agent_id,
    async_setup_home,
    converse,
    http_error,
    replay,
    sse_events,
)

# Static instructions long enough to be worth caching (~900 tokens).
PROMPT = "\n".join(
    f"House rule {n}: in room {n}, answer in one short and friendly sentence."
    for n in range(1, 61)
)
OPTIONS = {
    CONF_LLM_HASS_API: [],
    CONF_PROMPT: PROMPT,
    CONF_MAX_TOKENS: 2,
    CONF_TEMPERATURE: 0.0,
}


async def _chat(hass: HomeAssistant, state: SlotManager, device_id: str) -> dict:
    """Send a new chat from a device; return its request's timings."""
    before = len(state.timings)
    await converse(hass, "Hello", device_id=device_id)
    assert len(state.timings) == before + 1
    return dict(state.timings[-1])


def _read_prefix(timings: dict) -> bool:
    """Whether a request evaluated the ~900-token prefix instead of reusing it."""
    return bool(timings["prompt_n"] > 500)


@dataclass
class WarmServer:
    """SmolLM2 llama-server processes of the test's own, and the entry on them."""

    home: Home
    entry: MockConfigEntry
    argv: list[str]
    logs: Path
    processes: list[Backend]

    def stop(self) -> None:
        """Stop the server: its slots are gone."""
        self.processes[-1].stop()

    def start_again(self) -> None:
        """Start a new process on the same port: the slots are empty."""
        port = self.processes[-1].port
        self.processes.append(
            start("llama-warm", self.argv, "http", self.logs, port=port)
        )

    def restart(self) -> None:
        """Stop and start again, between two polls."""
        self.stop()
        self.start_again()


@pytest.fixture
async def warm(hass: HomeAssistant, backend_logs: Path) -> AsyncIterator[WarmServer]:
    """The entry on a fresh server, polled when the test says so, not every 30 s."""
    require(SMOL)
    home = await async_setup_home(hass)
    argv = llama_argv(SMOL, ctx=4096, slots=2)
    processes = [start("llama-warm", argv, "http", backend_logs)]
    try:
        entry = await setup_entry(hass, llama_entry(processes[0].url, OPTIONS))
        entry.runtime_data.coordinator.update_interval = timedelta(days=1)
        yield WarmServer(home, entry, argv, backend_logs, processes)
    finally:
        for process in processes:
            process.stop()


async def test_slots_warm_again_after_restarts(
    hass: HomeAssistant, warm: WarmServer
) -> None:
    """At start, after an unnoticed restart and after a noticed one."""
    kitchen = warm.home.satellites["kitchen"]
    bedroom = warm.home.satellites["bedroom"]
    state = warm.entry.runtime_data.slots
    coordinator = warm.entry.runtime_data.coordinator
    await coordinator.async_refresh()
    # At start: both slots of the fresh server read the prefix once.
    assert [w["slot"] for w in state.warmups] == [0, 1]
    assert all(_read_prefix(w) for w in state.warmups)
    kitchen_chat = await _chat(hass, state, kitchen)
    bedroom_chat = await _chat(hass, state, bedroom)
    assert {state.pinned[(s, d)] for (s, d) in state.pinned} == {0, 1}
    assert not _read_prefix(kitchen_chat)
    assert not _read_prefix(bedroom_chat)

    # Restarted between two polls: the kitchen's chat finds its slot cold and
    # pays; the bedroom's slot is warmed behind it, before the bedroom speaks.
    warm.restart()
    assert _read_prefix(await _chat(hass, state, kitchen))
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(state.warmups) == 3
    assert _read_prefix(state.warmups[-1])
    assert not _read_prefix(await _chat(hass, state, bedroom))

    # Down long enough for the coordinator to see it: warmed again when back.
    warm.stop()
    await coordinator.async_refresh()
    assert hass.states.get(agent_id(hass)).state == STATE_UNAVAILABLE
    warm.start_again()
    await coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    assert [w["slot"] for w in list(state.warmups)[3:]] == [0, 1]
    assert all(_read_prefix(w) for w in list(state.warmups)[3:])
    assert not _read_prefix(await _chat(hass, state, kitchen))
    assert not _read_prefix(await _chat(hass, state, bedroom))


async def test_new_process_warmed_at_next_poll(
    hass: HomeAssistant, warm: WarmServer
) -> None:
    """Restarted between two polls, and a poll comes before anyone speaks: /props
    tells the new process (llama-server's per-start media marker); warmed again."""
    state = warm.entry.runtime_data.slots
    coordinator = warm.entry.runtime_data.coordinator
    await coordinator.async_refresh()  # the same process: nothing to warm
    await hass.async_block_till_done(wait_background_tasks=True)
    assert len(state.warmups) == 2

    warm.restart()
    await coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    assert [w["slot"] for w in list(state.warmups)[2:]] == [0, 1]
    assert all(_read_prefix(w) for w in list(state.warmups)[2:])
    assert not _read_prefix(await _chat(hass, state, warm.home.satellites["kitchen"]))


async def test_failed_warm_up_costs_nothing(hass: HomeAssistant) -> None:
    """A server that refuses the warm-up: the agent loads and answers all the same."""
    fake = await FakeLlama(
        hass,
        [replay(sse_events("answer.sse"))],
        warm_up=http_error(500, "warm-up refused"),
    ).start()
    try:
        entry = await setup_entry(hass, llama_entry(fake.url, OPTIONS))
        state = entry.runtime_data.slots
        assert len(fake.warm_ups) == 1  # the first refusal stops the warm-up
        assert not state.warmups
        assert state.held == {}  # nothing is believed warm
        result = await converse(hass, "Hello")
        assert result.response.speech["plain"]["speech"]
        assert len(fake.requests) == 1
    finally:
        await fake.stop()
