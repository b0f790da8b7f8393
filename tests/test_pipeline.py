"""Real Assist pipelines: local_voice STT -> conversation agent -> local_voice TTS.

Speech in is the "Turn on the kitchen light." fixture; whisper.cpp (tiny.en)
and the kokoro add-on's server on Kokoro-82M are the REAL servers of the session.
The TTS server sits behind a transparent relay that records when text went out and
audio came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Literal

import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_mock_service,
)

from custom_components.local_voice import stt as lv_stt
from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    DOMAIN,
    SERVICE_ASR,
    SERVICE_TTS,
)
from custom_components.local_voice.wyoming_client.audio import SPEECH_FORMAT
from homeassistant.components import conversation, stt, tts
from homeassistant.components.assist_pipeline import (
    AudioSettings,
    Pipeline,
    PipelineEvent,
    PipelineEventType,
    async_get_pipeline,
    async_pipeline_from_audio_stream,
    async_update_pipeline,
)
from homeassistant.components.tts.const import DATA_TTS_MANAGER
from homeassistant.const import MATCH_ALL
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import chat_session, entity_registry as er, intent
from homeassistant.setup import async_setup_component

from .backends import KOKORO_VOICE, Backend
from .common import llama_entry, setup_entry, wyoming_entry
from .speech_support import (
    KITCHEN_WAV,
    Relay,
    assert_heard,
    chunked,
    convert,
    normalize,
    parse_wav,
    read_wav,
    speech_metadata,
    token_deltas,
)

ANSWER = (
    "Sure, the kitchen light is on now. "
    "I also checked the hallway, and that light was already on. "
    "The living room lamp is off, as you asked this morning. "
    "Good night and sleep well."
)


class StreamingAgent(conversation.AbstractConversationAgent):
    """Stands in for an LLM: streams its answer at 20 tokens/s into the chat log.

    After two sentences it waits until the TTS server has sent audio back: the
    answer can only go on if speech started before the agent finished.
    """

    def __init__(self, hass: HomeAssistant, relay: Relay) -> None:
        """Remember where to watch for the first audio."""
        self.hass = hass
        self.relay = relay
        self.waited_for_audio = False

    @property
    def supported_languages(self) -> Literal["*"]:
        """Any language."""
        return MATCH_ALL

    async def async_process(
        self, user_input: conversation.ConversationInput
    ) -> conversation.ConversationResult:
        """Stream the answer into the pipeline's chat log."""
        with (
            chat_session.async_get_chat_session(
                self.hass, user_input.conversation_id
            ) as session,
            conversation.async_get_chat_log(self.hass, session, user_input) as chat_log,
        ):
            async for _ in chat_log.async_add_delta_content_stream(
                user_input.agent_id, self._deltas()
            ):
                pass
        response = intent.IntentResponse(language=user_input.language)
        response.async_set_speech(ANSWER)
        return conversation.ConversationResult(
            response=response, conversation_id=session.conversation_id
        )

    async def _deltas(self) -> AsyncGenerator[dict[str, str]]:
        yield {"role": "assistant"}
        sentences = 0
        for delta in token_deltas(ANSWER):
            await asyncio.sleep(0.05)
            yield {"content": delta}
            if delta.endswith("."):
                sentences += 1
                if sentences == 2:
                    await self.relay.wait_for(
                        lambda: bool(self.relay.seen("audio-chunk")), limit=30
                    )
                    self.waited_for_audio = True


@pytest.fixture
async def engines(
    hass: HomeAssistant,
    asr_server: Backend,
    relay: Relay,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, str, MockConfigEntry, MockConfigEntry]:
    """Assist with local_voice STT and TTS entities: their ids and entries."""
    # On a busy shared CPU, whisper can take more than the production 30 s for
    # the ten seconds of speech these tests transcribe back.
    monkeypatch.setattr(lv_stt, "STT_TIMEOUT_SECONDS", 110)
    for component in ("homeassistant", "conversation", "intent", "assist_pipeline"):
        assert await async_setup_component(hass, component, {})
    asr = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_server.port))
    tts_entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    # Answers must come from the TTS server, not from files of earlier runs.
    hass.data[DATA_TTS_MANAGER].use_file_cache = False
    registry = er.async_get(hass)
    stt_id = registry.async_get_entity_id("stt", DOMAIN, f"{asr.entry_id}-asr")
    tts_id = registry.async_get_entity_id("tts", DOMAIN, f"{tts_entry.entry_id}-tts")
    assert stt_id is not None
    assert tts_id is not None
    return stt_id, tts_id, asr, tts_entry


async def kokoro_pipeline(hass: HomeAssistant, stt_id: str, tts_id: str) -> Pipeline:
    """Home Assistant's default pipeline, with English STT and Kokoro's Japanese voice.

    Kokoro offers its voices under their own language only, so the pipeline's
    text-to-speech language is set to Japanese, as a user picks it in the pipeline
    settings; the voice reads the English answer as English.
    """
    pipeline = async_get_pipeline(hass)
    await async_update_pipeline(
        hass,
        pipeline,
        stt_engine=stt_id,
        stt_language="en",
        tts_engine=tts_id,
        tts_language="ja",
        tts_voice=KOKORO_VOICE,
    )
    return async_get_pipeline(hass, pipeline.id)


async def run_pipeline(
    hass: HomeAssistant, pipeline_id: str, audio: bytes
) -> dict[PipelineEventType, list[PipelineEvent]]:
    """Run a pipeline from speech to speech; return its events by type."""
    events: dict[PipelineEventType, list[PipelineEvent]] = {}
    async with asyncio.timeout(120):  # a stuck stage fails here, not at pytest's limit
        await async_pipeline_from_audio_stream(
            hass,
            context=Context(),
            event_callback=lambda event: events.setdefault(event.type, []).append(
                event
            ),
            # No language: the pipeline's STT language is used.
            stt_metadata=speech_metadata(""),
            stt_stream=chunked(audio, 1024),
            pipeline_id=pipeline_id,
            tts_audio_output={tts.ATTR_PREFERRED_FORMAT: "wav"},
            audio_settings=AudioSettings(is_vad_enabled=False),
        )
    assert PipelineEventType.ERROR not in events, events[PipelineEventType.ERROR]
    return events


async def spoken_audio(
    hass: HomeAssistant, events: dict[PipelineEventType, list[PipelineEvent]]
) -> bytes:
    """Fetch the pipeline's TTS result as a satellite would; return 16 kHz PCM."""
    (tts_end,) = events[PipelineEventType.TTS_END]
    assert tts_end.data is not None
    stream = tts.async_get_stream(hass, tts_end.data["tts_output"]["token"])
    assert stream is not None
    async with asyncio.timeout(120):
        data = b"".join([chunk async for chunk in stream.async_stream_result()])
    audio_format, pcm = parse_wav(data)
    return convert(pcm, audio_format, SPEECH_FORMAT)


async def test_speech_to_speech_with_default_agent(
    hass: HomeAssistant, engines: tuple[str, str, MockConfigEntry, MockConfigEntry]
) -> None:
    """STT -> Home Assistant's own agent -> streaming TTS, all on real servers."""
    stt_id, tts_id, asr, tts_entry = engines
    hass.states.async_set("light.kitchen", "off", {"friendly_name": "Kitchen light"})
    turn_on = async_mock_service(hass, "light", "turn_on")
    pipeline = await kokoro_pipeline(hass, stt_id, tts_id)
    assert pipeline.conversation_engine == conversation.HOME_ASSISTANT_AGENT

    _, speech = read_wav(KITCHEN_WAV)
    events = await run_pipeline(hass, pipeline.id, speech)

    (stt_end,) = events[PipelineEventType.STT_END]
    assert stt_end.data is not None
    assert normalize(stt_end.data["stt_output"]["text"]) == "turn on the kitchen light"
    assert [call.data["entity_id"] for call in turn_on] == [["light.kitchen"]]
    (intent_end,) = events[PipelineEventType.INTENT_END]
    assert intent_end.data is not None
    answer = intent_end.data["intent_output"]["response"]["speech"]["plain"]["speech"]
    assert answer

    audio = await spoken_audio(hass, events)
    assert len(audio) / SPEECH_FORMAT.bytes_per_second > 0.3
    # Home Assistant sent the answer to the streaming entry point.
    timing = tts_entry.runtime_data.timings[-1]
    assert timing["mode"] == "stream"
    assert timing["outcome"] == "done"
    assert asr.runtime_data.timings[-1]["stt_seconds"] > 0


async def test_speech_starts_before_the_agent_finishes(
    hass: HomeAssistant,
    engines: tuple[str, str, MockConfigEntry, MockConfigEntry],
    relay: Relay,
) -> None:
    """With a streaming agent, audio comes back while the answer is still written."""
    stt_id, tts_id, _, tts_entry = engines
    agent_entry = MockConfigEntry(domain="test", title="Streaming agent")
    agent_entry.add_to_hass(hass)
    agent = StreamingAgent(hass, relay)
    conversation.async_set_agent(hass, agent_entry, agent)
    pipeline = await kokoro_pipeline(hass, stt_id, tts_id)
    await async_update_pipeline(
        hass,
        pipeline,
        conversation_engine=agent_entry.entry_id,
        conversation_language=MATCH_ALL,
    )

    _, speech = read_wav(KITCHEN_WAV)
    events = await run_pipeline(hass, pipeline.id, speech)

    assert agent.waited_for_audio
    progress = [event.data or {} for event in events[PipelineEventType.INTENT_PROGRESS]]
    assert any(data.get("tts_start_streaming") for data in progress)
    # Text went to Kokoro in pieces, and audio came back before the last piece.
    chunks = relay.seen("synthesize-chunk")
    assert len(chunks) >= 4
    assert relay.seen("audio-chunk")[0].at < chunks[-1].at

    # The audio says the whole answer, in order (checked by whisper).
    audio = await spoken_audio(hass, events)
    timing = tts_entry.runtime_data.timings[-1]
    assert timing["mode"] == "stream"
    assert timing["first_audio_seconds"] < timing["text_seconds"]
    asr_entity = hass.data[stt.DATA_COMPONENT].get_entity(stt_id)
    assert isinstance(asr_entity, stt.SpeechToTextEntity)
    async with asyncio.timeout(120):
        result = await asr_entity.async_process_audio_stream(
            speech_metadata(), chunked(audio)
        )
    assert_heard(
        result.text,
        ANSWER,
        min_ratio=0.8,
        landmarks=("kitchen", "hallway", "living room", "sleep well"),
    )


async def test_speech_to_speech_with_local_voice_agent(
    hass: HomeAssistant,
    engines: tuple[str, str, MockConfigEntry, MockConfigEntry],
    llama_chat_server: Backend,
) -> None:
    """STT -> local_voice's own conversation agent on llama-server -> TTS."""
    stt_id, tts_id, asr, tts_entry = engines
    # SmolLM2 at its default temperature can ramble to 1,024 tokens, which took
    # over two minutes on a slow CI machine; a short answer is all this checks.
    llama = await setup_entry(
        hass,
        llama_entry(
            llama_chat_server.url, {CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 64}
        ),
    )
    (agent_id,) = [
        entity.entity_id
        for entity in er.async_entries_for_config_entry(
            er.async_get(hass), llama.entry_id
        )
        if entity.domain == "conversation"
    ]
    pipeline = await kokoro_pipeline(hass, stt_id, tts_id)
    await async_update_pipeline(
        hass, pipeline, conversation_engine=agent_id, conversation_language=MATCH_ALL
    )

    _, speech = read_wav(KITCHEN_WAV)
    events = await run_pipeline(hass, pipeline.id, speech)

    (intent_end,) = events[PipelineEventType.INTENT_END]
    assert intent_end.data is not None
    assert intent_end.data["intent_output"]["response"]["speech"]["plain"]["speech"]
    audio = await spoken_audio(hass, events)
    assert len(audio) / SPEECH_FORMAT.bytes_per_second > 0.3
    assert tts_entry.runtime_data.timings[-1]["outcome"] == "done"
    # Every sensor of the three servers shows a figure of this chat (none unknown).
    registry = er.async_get(hass)
    figures = {
        entity.entity_id: float(state.state)
        for entry in (asr, llama, tts_entry)
        for entity in er.async_entries_for_config_entry(registry, entry.entry_id)
        if entity.domain == "sensor"
        and (state := hass.states.get(entity.entity_id)) is not None
    }
    assert len(figures) == 11
    for name in ("transcription_time", "time_to_first_audio", "time_to_first_token"):
        (value,) = [v for entity_id, v in figures.items() if entity_id.endswith(name)]
        assert value > 0, name
