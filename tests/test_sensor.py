"""The sensors, read from Home Assistant's state machine after real requests.

Nothing polls in these tests (no time passes): a value that shows came from the
push after the request. The chats run on SmolLM2-135M, the fast chat model.
"""

from __future__ import annotations

from typing import Any

from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    DOMAIN,
    SERVICE_ASR,
    SERVICE_TTS,
)
from custom_components.local_voice.coordinator import LlamaServerData
from homeassistant.components import stt, tts
from homeassistant.components.sensor import SensorStateClass
from homeassistant.components.tts.const import DATA_TTS_MANAGER
from homeassistant.const import (
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_UNKNOWN,
    EntityCategory,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er

from .backends import Backend
from .common import llama_entry, setup_entry, wyoming_entry
from .conversation_support import async_setup_home, converse
from .speech_support import KITCHEN_WAV, chunked, read_wav, speech_metadata

OPTIONS = {CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 32}

# What each chat sensor shows: (unit, the recorded figure it is).
CHAT_SENSORS = {
    "prompt_tokens": ("tokens", "prompt_n"),
    "cached_tokens": ("tokens", "cache_n"),
    "cache_reuse": ("%", None),
    "time_to_first_token": ("ms", "first_token_ms"),
    "prompt_speed": ("tokens/s", "prompt_per_second"),
    "generation_speed": ("tokens/s", "predicted_per_second"),
}
SERVER_SENSORS = ("slots_in_use", "context_per_slot", "slots")


def sensors(hass: HomeAssistant, entry_id: str) -> dict[str, er.RegistryEntry]:
    """Return the entry's sensors by key."""
    return {
        entity.unique_id.removeprefix(f"{entry_id}-"): entity
        for entity in er.async_entries_for_config_entry(er.async_get(hass), entry_id)
        if entity.domain == "sensor"
    }


def state(hass: HomeAssistant, entity: er.RegistryEntry) -> Any:
    """Return a sensor's state object."""
    current = hass.states.get(entity.entity_id)
    assert current is not None
    return current


async def test_llama_server_sensors(
    hass: HomeAssistant, llama_chat_server: Backend
) -> None:
    """After a real chat, the server's device shows its prompt, cache and speed."""
    home = await async_setup_home(hass)
    entry = await setup_entry(hass, llama_entry(llama_chat_server.url, OPTIONS))
    data = entry.runtime_data
    assert isinstance(data, LlamaServerData)
    found = sensors(hass, entry.entry_id)
    assert set(found) == {*CHAT_SENSORS, *SERVER_SENSORS}

    # One device for the server, with the sensors; the agents run on it.
    devices = dr.async_get(hass)
    server = devices.async_get_device_by_identifier(
        (DOMAIN, entry.entry_id), entry.entry_id
    )
    assert server is not None
    assert server.model == data.coordinator.data.model
    assert {entity.device_id for entity in found.values()} == {server.id}
    agents = [
        devices.async_get_device_by_identifier((DOMAIN, subentry_id), entry.entry_id)
        for subentry_id in entry.subentries
    ]
    assert [agent and agent.via_device_id for agent in agents] == [server.id] * 2

    # Before any chat: the chat figures are unknown, not 0; the server's are known.
    for key in CHAT_SENSORS:
        assert state(hass, found[key]).state == STATE_UNKNOWN, key
    server_slots = await data.client.async_get_slots()
    assert state(hass, found["slots"]).state == str(len(server_slots)) == "2"
    assert state(hass, found["context_per_slot"]).state == str(server_slots[0]["n_ctx"])
    assert state(hass, found["slots_in_use"]).state == "0"

    result = await converse(
        hass, "Turn on the kitchen light", device_id=home.satellites["kitchen"]
    )
    assert result.response.speech
    last = data.slots.timings[-1]
    assert state(hass, found["slots_in_use"]).state == "1"
    for key, (unit, figure) in CHAT_SENSORS.items():
        current = state(hass, found[key])
        assert float(current.state) >= 0, key
        assert current.attributes[ATTR_UNIT_OF_MEASUREMENT] == unit
        assert current.attributes["state_class"] == SensorStateClass.MEASUREMENT
        if figure is not None:
            assert float(current.state) == round(last[figure], 2), key
    for key in ("prompt_tokens", "time_to_first_token", "prompt_speed"):
        assert float(state(hass, found[key]).state) > 0, key
    assert float(state(hass, found["generation_speed"]).state) > 0
    # The slot held the Assist prompt: most of it came from the cache.
    assert last["cache_n"] > last["prompt_n"]
    share = 100 * last["cache_n"] / (last["cache_n"] + last["prompt_n"])
    assert float(state(hass, found["cache_reuse"]).state) == round(share, 1)
    # Measured from sending the request: at least the server's prompt time.
    assert last["first_token_ms"] >= last["prompt_ms"]

    # A question the home's states cannot answer reaches the model.
    await converse(hass, "Tell me a joke", device_id=home.satellites["bedroom"])
    assert state(hass, found["slots_in_use"]).state == "2"
    registry = er.async_get(hass)
    categories = {
        key: registry.async_get(entity.entity_id).entity_category  # type: ignore[union-attr]
        for key, entity in found.items()
    }
    assert categories == {
        **dict.fromkeys((*CHAT_SENSORS, "slots_in_use")),
        "context_per_slot": EntityCategory.DIAGNOSTIC,
        "slots": EntityCategory.DIAGNOSTIC,
    }


async def test_speech_sensors(
    hass: HomeAssistant, asr_server: Backend, tts_server: Backend
) -> None:
    """After real speech-to-text and text-to-speech, their devices show the times."""
    asr = await setup_entry(
        hass, wyoming_entry(SERVICE_ASR, asr_server.port, title="whisper.cpp")
    )
    tts_entry = await setup_entry(
        hass, wyoming_entry(SERVICE_TTS, tts_server.port, title="Kokoro")
    )
    assert set(sensors(hass, asr.entry_id)) == {"transcription_time"}
    assert set(sensors(hass, tts_entry.entry_id)) == {"time_to_first_audio"}
    stt_time = "sensor.whisper_cpp_transcription_time"
    first_audio = "sensor.kokoro_time_to_first_audio"
    for entity_id in (stt_time, first_audio):
        current = hass.states.get(entity_id)
        assert current is not None
        assert current.state == STATE_UNKNOWN
        assert current.attributes[ATTR_UNIT_OF_MEASUREMENT] == "s"
        assert current.attributes["state_class"] == SensorStateClass.MEASUREMENT
        assert current.attributes["device_class"] == "duration"

    engine = hass.data[stt.DATA_COMPONENT].get_entity("stt.whisper_cpp")
    assert isinstance(engine, stt.SpeechToTextEntity)
    _, pcm = read_wav(KITCHEN_WAV)
    result = await engine.internal_async_process_audio_stream(
        speech_metadata(), chunked(pcm)
    )
    assert result.text
    current = hass.states.get(stt_time)
    assert current is not None
    assert float(current.state) == asr.runtime_data.timings[-1]["stt_seconds"] > 0

    # Spoken by the server, not taken from the files of earlier tests.
    hass.data[DATA_TTS_MANAGER].use_file_cache = False
    stream = tts.async_create_stream(
        hass, "tts.kokoro", options={tts.ATTR_PREFERRED_FORMAT: "wav"}
    )
    stream.async_set_message("Hello there.")
    assert b"".join([chunk async for chunk in stream.async_stream_result()])
    timing = tts_entry.runtime_data.timings[-1]
    current = hass.states.get(first_audio)
    assert current is not None
    assert float(current.state) == timing["first_audio_seconds"] > 0
