"""Warm when the prefix changes: entities renamed, moved, exposed; tools; options.

Against the real llama-server (SmolLM2, the fastest here: its template leaves the
tools out, which the prefix key still covers), behind a recording proxy so the
warm-up requests themselves can be read. The debounce is waited for by moving Home
Assistant's clock, as core's tests do; nothing here measures time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    PREFIX_CHANGE_COOLDOWN_SECONDS,
    SUBENTRY_AI_TASK,
    SUBENTRY_CONVERSATION,
)
from custom_components.local_voice.slots import SlotManager
from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import (
    async_expose_entity,
)
from homeassistant.const import CONF_PROMPT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar, entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util

from .backends import Backend
from .common import llama_entry, setup_entry
from .conversation_support import RecordingProxy, async_setup_home, converse

OPTIONS = {CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 2}


async def _after_cooldown(hass: HomeAssistant) -> None:
    """Let the debounce run out, then wait for the warm-ups it started."""
    await hass.async_block_till_done()
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=PREFIX_CHANGE_COOLDOWN_SECONDS + 1)
    )
    await hass.async_block_till_done(wait_background_tasks=True)


def _warm_up_systems(proxy: RecordingProxy) -> list[str]:
    """The system messages of the warm-ups sent (their user turn is empty)."""
    return [
        request["messages"][0]["content"]
        for request in proxy.requests
        if request["messages"][-1] == {"role": "user", "content": ""}
    ]


def _subentry_id(entry: MockConfigEntry, kind: str) -> str:
    return next(
        s.subentry_id for s in entry.subentries.values() if s.subentry_type == kind
    )


async def _chat_reads_context_only(
    hass: HomeAssistant, state: SlotManager, device_id: str
) -> None:
    """A new chat evaluates only its context block and words: the prefix its slot's
    last warm-up read (all but the warm-up's empty user turn) is reused."""
    before = len(state.timings)
    await converse(hass, "Hello", device_id=device_id)
    timings = state.timings[before]
    warm = [w for w in state.warmups if w["slot"] == timings["slot"]][-1]
    assert timings["prompt_n"] < 100, timings
    assert timings["cache_n"] >= warm["prompt_n"] + warm["cache_n"] - 10, timings


async def test_entity_changes_warm_once(
    hass: HomeAssistant, llama_chat_server: Backend
) -> None:
    """A rename, then a burst (moved, exposed, renamed back): one warm-up each,
    with the new prefix, before the next chat; a change outside the prefix: none."""
    home = await async_setup_home(hass)
    entities = er.async_get(hass)
    proxy = await RecordingProxy(llama_chat_server.url).start()
    try:
        entry = await setup_entry(hass, llama_entry(proxy.url, OPTIONS))
        state = entry.runtime_data.slots
        agent = _subentry_id(entry, SUBENTRY_CONVERSATION)
        assert len(state.warmups) == 2
        old_key = state.held[0][1]

        entities.async_update_entity("light.kitchen_ceiling", name="Pantry light")
        await hass.async_block_till_done()
        assert len(state.warmups) == 2  # the burst may go on: not yet
        await _after_cooldown(hass)
        assert [w["slot"] for w in list(state.warmups)[2:]] == [0, 1]
        renamed_key = state.held[0][1]
        assert renamed_key != old_key
        assert state.held == {0: (agent, renamed_key), 1: (agent, renamed_key)}
        systems = _warm_up_systems(proxy)
        assert "Pantry light" not in systems[0]
        assert all("Pantry light" in system for system in systems[2:])
        await _chat_reads_context_only(hass, state, home.satellites["kitchen"])

        # A burst: moved to another area, a new entity exposed, renamed back.
        bedroom = ar.async_get(hass).async_get_area_by_name("Bedroom")
        assert bedroom is not None
        entities.async_update_entity("switch.coffee_machine", area_id=bedroom.id)
        fan = entities.async_get_or_create(
            "fan", "test", "ceiling_fan", original_name="Ceiling fan"
        )
        hass.states.async_set(fan.entity_id, "off", {"friendly_name": "Ceiling fan"})
        async_expose_entity(hass, conversation.DOMAIN, fan.entity_id, True)
        entities.async_update_entity("light.kitchen_ceiling", name=None)
        await _after_cooldown(hass)
        assert [w["slot"] for w in list(state.warmups)[4:]] == [0, 1]
        burst_key = state.held[0][1]
        assert burst_key not in (old_key, renamed_key)
        latest = _warm_up_systems(proxy)[-1]
        assert "Ceiling fan" in latest
        assert "Pantry light" not in latest
        await _chat_reads_context_only(hass, state, home.satellites["bedroom"])

        # Not in the prefix: an entity nobody exposed renamed, a state changed.
        hidden = entities.async_get_or_create("light", "test", "attic")
        async_expose_entity(hass, conversation.DOMAIN, hidden.entity_id, False)
        hass.states.async_set(hidden.entity_id, "off")
        entities.async_update_entity(hidden.entity_id, name="Attic light")
        lamp = hass.states.get("light.living_room_lamp")
        assert lamp is not None
        hass.states.async_set(lamp.entity_id, "off", lamp.attributes)
        await _after_cooldown(hass)
        assert len(state.warmups) == 6
    finally:
        await proxy.stop()


async def test_other_agents_slots_kept(
    hass: HomeAssistant, llama_chat_server: Backend
) -> None:
    """The AI task used a slot: the conversation agent warms only its own."""
    await async_setup_home(hass)
    entry = llama_entry(llama_chat_server.url, OPTIONS)
    task = _subentry_id(entry, SUBENTRY_AI_TASK)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_subentry(
        entry, entry.subentries[task], data={**entry.subentries[task].data, **OPTIONS}
    )
    await setup_entry(hass, entry)
    state = entry.runtime_data.slots
    agent = _subentry_id(entry, SUBENTRY_CONVERSATION)
    task_entity = next(
        e.entity_id
        for e in er.async_get(hass).entities.values()
        if e.domain == "ai_task" and e.platform == "local_voice"
    )
    await hass.services.async_call(
        "ai_task",
        "generate_data",
        {"entity_id": task_entity, "task_name": "t", "instructions": "Say hi"},
        blocking=True,
        return_response=True,
    )
    task_slot = state.pinned[(task, None)]
    assert state.held[task_slot][0] == task

    er.async_get(hass).async_update_entity("light.kitchen_ceiling", name="Pantry light")
    await _after_cooldown(hass)
    assert [w["slot"] for w in list(state.warmups)[2:]] == [1 - task_slot]
    assert state.held[task_slot][0] == task
    assert state.held[1 - task_slot][0] == agent


async def test_new_tools_and_options_warm(
    hass: HomeAssistant, llama_chat_server: Backend
) -> None:
    """An integration that brings a tool, and new options (the entry reloads)."""
    home = await async_setup_home(hass)
    proxy = await RecordingProxy(llama_chat_server.url).start()
    try:
        entry = await setup_entry(hass, llama_entry(proxy.url, OPTIONS))
        state = entry.runtime_data.slots
        assert await async_setup_component(
            hass,
            "intent_script",
            {"intent_script": {"OpenGarage": {"speech": {"text": "Opening"}}}},
        )
        await _after_cooldown(hass)
        assert [w["slot"] for w in list(state.warmups)[2:]] == [0, 1]
        tools = [t["function"]["name"] for t in proxy.requests[-1]["tools"]]
        assert "intent_script__OpenGarage" in tools
        await _chat_reads_context_only(hass, state, home.satellites["kitchen"])

        agent = _subentry_id(entry, SUBENTRY_CONVERSATION)
        subentry = entry.subentries[agent]
        data: dict[str, Any] = {**subentry.data, CONF_PROMPT: "Answer like a pirate."}
        hass.config_entries.async_update_subentry(entry, subentry, data=data)
        await hass.async_block_till_done(wait_background_tasks=True)
        state = entry.runtime_data.slots  # the entry reloaded: a new slot manager
        assert [w["slot"] for w in state.warmups] == [0, 1]
        assert _warm_up_systems(proxy)[-1].startswith("Answer like a pirate.")
        await _chat_reads_context_only(hass, state, home.satellites["kitchen"])
    finally:
        await proxy.stop()
