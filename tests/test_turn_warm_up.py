"""A voice turn's context read into its slot while the user is still speaking.

Real Assist pipelines: local_voice STT on the session's whisper.cpp, the local_voice
agent on a SmolLM2 llama-server of the test's own. They start the ways users start
them: from an Assist satellite (a real `AssistSatelliteEntity`, whose state the
pipeline drives) and from the app (no satellite). The prompt template reads where
it is said, so the whole of it is the chat's context block; the speech pauses
halfway until the warm-up is recorded, and the chat after the transcript then
reads only the words.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    DOMAIN,
    SERVICE_ASR,
)
from custom_components.local_voice.slots import SlotManager
from homeassistant.components import conversation
from homeassistant.components.assist_pipeline import (
    PipelineStage,
    async_get_pipeline,
    async_pipeline_from_audio_stream,
    async_update_pipeline,
)
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.setup import async_setup_component

from .backends import SMOL, Backend, llama_argv, require, start
from .common import llama_entry, setup_entry, wyoming_entry
from .conversation_support import Home, agent_id, async_setup_home
from .satellite_support import Satellite, async_add_satellites
from .speech_support import KITCHEN_WAV, read_wav, speech_metadata

# Long enough that reading it is worth saving (~900 tokens), and it names where it
# is said: all of it is the chat's context block, after the cached system message.
PROMPT = "You answer for the {{ area_name(llm_context.device_id) or 'app' }}.\n" + (
    "\n".join(
        f"House rule {n}: in room {n}, answer in one short and friendly sentence."
        for n in range(1, 61)
    )
)
OPTIONS = {
    CONF_LLM_HASS_API: [],
    CONF_PROMPT: PROMPT,
    CONF_MAX_TOKENS: 2,
    CONF_TEMPERATURE: 0.0,
}
SATELLITES = "satellite_stub"


@pytest.fixture
async def voice(
    hass: HomeAssistant, asr_server: Backend, backend_logs: Path
) -> AsyncIterator[tuple[Home, SlotManager, Satellite]]:
    """Assist with local_voice STT and agent, the agent's pipeline the preferred one."""
    require(SMOL)
    home = await async_setup_home(hass)
    for component in ("assist_pipeline", "assist_satellite"):
        assert await async_setup_component(hass, component, {})
    (satellite,) = (await async_add_satellites(hass, SATELLITES, ["kitchen"])).values()
    assert satellite.device_entry is not None
    kitchen = ar.async_get(hass).async_get_area_by_name("Kitchen")
    assert kitchen is not None
    dr.async_get(hass).async_update_device(
        satellite.device_entry.id, area_id=kitchen.id
    )
    # Slot caches only: the host prompt cache would hide a warm-up that evicted a
    # prompt said again word for word (the same recording, twice).
    process = start(
        "llama-turn",
        llama_argv(SMOL, "--cache-ram", "0", ctx=4096, slots=1),
        "http",
        backend_logs,
    )
    try:
        entry = await setup_entry(hass, llama_entry(process.url, OPTIONS))
        entry.runtime_data.coordinator.update_interval = timedelta(days=1)
        asr = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_server.port))
        stt_id = er.async_get(hass).async_get_entity_id(
            "stt", DOMAIN, f"{asr.entry_id}-asr"
        )
        await async_update_pipeline(
            hass,
            async_get_pipeline(hass),
            stt_engine=stt_id,
            stt_language="en",
            conversation_engine=agent_id(hass),
            tts_engine=None,
        )
        yield home, entry.runtime_data.slots, satellite
    finally:
        process.stop()


def _turn_warm_ups(slots: SlotManager) -> list[dict]:
    return [warm for warm in slots.warmups if warm.get("turn")]


def _speech(slots: SlotManager, *, pause: bool) -> AsyncIterator[bytes]:
    """Say "Turn on the kitchen light." in chunks; with `pause`, stop halfway until
    a new turn warm-up is recorded (counted from now), as if the user spoke slowly."""
    return _chunks(slots, len(_turn_warm_ups(slots)) if pause else None)


async def _chunks(
    slots: SlotManager, warmed_before: int | None
) -> AsyncIterator[bytes]:
    warmed = asyncio.Event()

    def check() -> None:
        if warmed_before is not None and len(_turn_warm_ups(slots)) > warmed_before:
            warmed.set()

    undo = slots.add_listener(check)
    check()  # it may have been recorded before the first chunk was asked for
    _, pcm = read_wav(KITCHEN_WAV)
    try:
        for start_at in range(0, len(pcm), 3200):
            if warmed_before is not None and start_at >= len(pcm) // 2:
                async with asyncio.timeout(60):
                    await warmed.wait()
            yield pcm[start_at : start_at + 3200]
            await asyncio.sleep(0)
    finally:
        undo()


def _chat_read(slots: SlotManager) -> int:
    """Prompt tokens the newest chat read (not from the slot's cache)."""
    return int(slots.timings[-1]["prompt_n"])


async def test_a_satellite_turn_reads_only_its_words(
    hass: HomeAssistant, voice: tuple[Home, SlotManager, Satellite]
) -> None:
    """The kitchen satellite starts listening: its context is read before the words."""
    _, slots, satellite = voice
    assert satellite.device_entry is not None
    device_id = satellite.device_entry.id
    chats = len(slots.timings)
    async with asyncio.timeout(120):
        await satellite.async_accept_pipeline_from_satellite(
            _speech(slots, pause=True), end_stage=PipelineStage.INTENT
        )
    (warm,) = _turn_warm_ups(slots)
    assert warm["slot"] == slots.pinned[(_agent(slots), device_id)]
    assert warm["prompt_n"] > 500  # the context block: the kitchen's instructions
    assert len(slots.timings) == chats + 1
    assert _chat_read(slots) < 40  # the words and the template's tail

    # Said again soon after: the satellite goes on with its conversation, and the
    # warm-up sends that conversation before the new words' place.
    async with asyncio.timeout(120):
        await satellite.async_accept_pipeline_from_satellite(
            _speech(slots, pause=True), end_stage=PipelineStage.INTENT
        )
    assert len(_turn_warm_ups(slots)) == 2
    assert len(slots.timings) == chats + 2
    assert _chat_read(slots) < 40


async def test_an_app_turn_reads_only_its_words(
    hass: HomeAssistant, voice: tuple[Home, SlotManager, Satellite]
) -> None:
    """Speech from the app (no satellite): local_voice's STT hears it; warmed so.
    Each app dialog is a new conversation: the next is warmed as a new chat too."""
    _, slots, _ = voice
    for said in (1, 2):
        async with asyncio.timeout(120):
            await async_pipeline_from_audio_stream(
                hass,
                context=Context(),
                event_callback=lambda _event: None,
                stt_metadata=speech_metadata(""),
                stt_stream=_speech(slots, pause=True),
                end_stage=PipelineStage.INTENT,
            )
        warm_ups = _turn_warm_ups(slots)
        assert len(warm_ups) == said
        assert warm_ups[-1]["slot"] == slots.pinned[(_agent(slots), None)]
        assert _chat_read(slots) < 40
    assert warm_ups[0]["prompt_n"] > 500  # the app's context block


async def test_no_warm_up_for_a_turn_another_agent_answers(
    hass: HomeAssistant, voice: tuple[Home, SlotManager, Satellite]
) -> None:
    """A satellite whose pipeline answers with Home Assistant's own agent: the
    local_voice agent reads nothing into its slot."""
    _, slots, satellite = voice
    await async_update_pipeline(
        hass,
        async_get_pipeline(hass),
        conversation_engine=conversation.HOME_ASSISTANT_AGENT,
    )
    chats = len(slots.timings)
    async with asyncio.timeout(120):
        await satellite.async_accept_pipeline_from_satellite(
            _speech(slots, pause=False), end_stage=PipelineStage.INTENT
        )
    await hass.async_block_till_done(wait_background_tasks=True)
    assert not _turn_warm_ups(slots)
    assert len(slots.timings) == chats


def _agent(slots: SlotManager) -> str:
    """The agent (subentry id) the slot manager knows."""
    (agent,) = {agent for agent, _ in slots.pinned}
    return agent
