"""The start of a voice turn, before its words: where it is said, which agent answers.

Two signs, both public: an Assist satellite's entity starts listening (its state),
or local_voice's speech-to-text starts hearing a stream with no satellite listening
(the app, a browser). The agent that answers is the conversation engine of the
pipeline the satellite has chosen (else the preferred one); for a stream heard by
local_voice's STT, of the pipelines that use that STT entity. The pipeline's
conversation language is the language the turn will be answered in.
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.components.assist_pipeline import Pipeline, async_get_pipelines
from homeassistant.components.assist_pipeline.pipeline import async_get_pipeline
from homeassistant.components.assist_pipeline.select import get_chosen_pipeline
from homeassistant.components.assist_satellite.entity import AssistSatelliteState
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import (
    async_dispatcher_connect,
    async_dispatcher_send,
)

from .const import DOMAIN

SIGNAL_HEARING = f"{DOMAIN}_hearing"
_SATELLITE = "assist_satellite."


@callback
def async_hearing(hass: HomeAssistant, stt_entity_id: str) -> None:
    """Say that local_voice's STT entity started hearing a stream."""
    async_dispatcher_send(hass, SIGNAL_HEARING, stt_entity_id)


def _chosen_pipeline(hass: HomeAssistant, device_id: str | None) -> Pipeline:
    """Return the pipeline a satellite's device chose.

    Resolved as the satellite resolves it: its device's pipeline select, read by
    Assist's own `get_chosen_pipeline`; none chosen is the preferred pipeline.
    """
    chosen: str | None = None
    registry = er.async_get(hass)
    for entry in er.async_entries_for_device(registry, device_id or ""):
        if entry.domain == "select" and entry.unique_id.endswith("-pipeline"):
            prefix = entry.unique_id.removesuffix("-pipeline")
            chosen = get_chosen_pipeline(hass, entry.platform, prefix)
    return async_get_pipeline(hass, chosen)


@callback
def async_track_voice_turns(
    hass: HomeAssistant,
    agent_id: Callable[[], str],
    action: Callable[[str | None, str], None],
) -> CALLBACK_TYPE:
    """Call `action(device_id, language)` when a voice turn the agent answers starts."""

    @callback
    def is_satellite(data: EventStateChangedData) -> bool:
        return data["entity_id"].startswith(_SATELLITE)

    @callback
    def satellite_changed(event: Event[EventStateChangedData]) -> None:
        new, old = event.data["new_state"], event.data["old_state"]
        if new is None or new.state != AssistSatelliteState.LISTENING:
            return
        if old is not None and old.state == AssistSatelliteState.LISTENING:
            return
        entry = er.async_get(hass).async_get(event.data["entity_id"])
        device_id = entry.device_id if entry else None
        pipeline = _chosen_pipeline(hass, device_id)
        if pipeline.conversation_engine == agent_id():
            action(device_id, pipeline.conversation_language)

    @callback
    def hearing(stt_entity_id: str) -> None:
        if "assist_pipeline" not in hass.config.components:
            return  # heard outside a pipeline: no agent follows
        listening = AssistSatelliteState.LISTENING
        if any(
            state.state == listening
            for state in hass.states.async_all(_SATELLITE.rstrip("."))
        ):
            return  # the satellite said so first, with its device
        for pipeline in async_get_pipelines(hass):
            if (pipeline.stt_engine, pipeline.conversation_engine) == (
                stt_entity_id,
                agent_id(),
            ):
                action(None, pipeline.conversation_language)
                return

    undo_state = hass.bus.async_listen(
        EVENT_STATE_CHANGED, satellite_changed, event_filter=is_satellite
    )
    undo_signal = async_dispatcher_connect(hass, SIGNAL_HEARING, hearing)

    @callback
    def undo() -> None:
        undo_state()
        undo_signal()

    return undo
