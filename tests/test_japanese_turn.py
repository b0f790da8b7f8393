"""A whole voice turn in Japanese, on the REAL servers, through Assist's pipeline.

The command is spoken by Kokoro's Japanese voice, heard by Whisper base through
local_voice's STT in the pipeline's language, done either by Assist's Japanese
intents (local_voice's agent with "prefer handling commands locally") or by
local_voice's agent on Qwen2.5-Coder-0.5B, answered in Japanese by the Japanese
voice that the pipeline's language picks, and heard back by Whisper. Each test
prints its figures: what was heard, what was done, the answer, and the stages' times.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
import difflib
import json

import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_mock_service,
)

from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    DOMAIN,
    SERVICE_ASR,
    SERVICE_TTS,
)
from custom_components.local_voice.prompt import language_line
from custom_components.local_voice.vocabulary import as_katakana
from custom_components.local_voice.wyoming_client.audio import SPEECH_FORMAT
from homeassistant.components import conversation, stt
from homeassistant.components.assist_pipeline import (
    PipelineEventType,
    async_get_pipeline,
    async_update_pipeline,
)
from homeassistant.components.homeassistant.exposed_entities import (
    async_expose_entity,
)
from homeassistant.components.tts.const import DATA_TTS_MANAGER
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import area_registry as ar, entity_registry as er
from homeassistant.setup import async_setup_component

from .backends import Backend
from .common import llama_entry, setup_entry, wyoming_entry
from .conversation_support import RecordingProxy
from .speech_support import Relay, chunked, convert, parse_wav, speech_metadata
from .test_pipeline import run_pipeline, spoken_audio
from .test_stt_languages import slow_cpu  # noqa: F401 (autouse fixture)
from .test_tts import tts_entity

COMMAND = "キッチンのライトをオンにして。"


def _similar(heard: str, said: str) -> float:
    """Return how alike two Japanese texts are, punctuation, spaces and kana aside.

    Whisper writes a word in hiragana or katakana from run to run ("きちん").
    """

    def bare(text: str) -> str:
        return as_katakana("".join(char for char in text if char.isalnum()))

    return difflib.SequenceMatcher(None, bare(heard), bare(said)).ratio()


def _japanese(text: str) -> bool:
    """Return True when the text is written in Japanese (kana or kanji)."""
    return any(
        "\u3040" <= char <= "\u30ff" or "\u4e00" <= char <= "\u9fff" for char in text
    )


class JapaneseHome:
    """A home whose kitchen light is named in Japanese; the voice turn's engines."""

    def __init__(self, hass: HomeAssistant, relay: Relay) -> None:
        """Remember the Home Assistant and the relay in front of Kokoro."""
        self.hass = hass
        self.relay = relay
        self.turn_on: list[ServiceCall] = []
        self.stt_id = self.tts_id = ""
        self.asr: MockConfigEntry | None = None
        self.tts: MockConfigEntry | None = None

    async def async_setup(self, asr_port: int) -> None:
        """Set up Assist, a light in the area キッチン, and the STT and TTS entities."""
        hass = self.hass
        for component in ("homeassistant", "conversation", "intent", "assist_pipeline"):
            assert await async_setup_component(hass, component, {})
        kitchen = ar.async_get(hass).async_create("キッチン")
        registry = er.async_get(hass)
        light = registry.async_get_or_create("light", "test", "kitchen")
        registry.async_update_entity(light.entity_id, area_id=kitchen.id)
        hass.states.async_set(light.entity_id, "off", {"friendly_name": "ライト"})
        async_expose_entity(hass, conversation.DOMAIN, light.entity_id, True)
        self.turn_on = async_mock_service(hass, "light", "turn_on")

        self.asr = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_port))
        self.tts = await setup_entry(hass, wyoming_entry(SERVICE_TTS, self.relay.port))
        hass.data[DATA_TTS_MANAGER].use_file_cache = False
        stt_id = registry.async_get_entity_id("stt", DOMAIN, f"{self.asr.entry_id}-asr")
        tts_id = registry.async_get_entity_id("tts", DOMAIN, f"{self.tts.entry_id}-tts")
        assert stt_id is not None
        assert tts_id is not None
        self.stt_id, self.tts_id = stt_id, tts_id

    async def async_speak(self, text: str) -> bytes:
        """Return `text` as Kokoro's Japanese voice says it, as 16 kHz PCM."""
        assert self.tts is not None
        entity = tts_entity(self.hass, self.tts)
        _, data = await entity.async_get_tts_audio(text, "ja", {})
        assert data is not None
        audio_format, pcm = parse_wav(data)
        return convert(pcm, audio_format, SPEECH_FORMAT)

    async def async_hear(self, speech: bytes) -> str:
        """Return what local_voice's STT hears in Japanese."""
        entity = self.hass.data[stt.DATA_COMPONENT].get_entity(self.stt_id)
        assert isinstance(entity, stt.SpeechToTextEntity)
        result = await entity.async_process_audio_stream(
            speech_metadata("ja"), chunked(speech)
        )
        return result.text or ""

    async def async_turn(self, agent_id: str, *, prefer_local: bool) -> dict[str, str]:
        """Say the command through a pipeline in Japanese; return what happened."""
        hass = self.hass
        pipeline = async_get_pipeline(hass)
        await async_update_pipeline(
            hass,
            pipeline,
            language="ja",
            stt_engine=self.stt_id,
            stt_language="ja",
            conversation_engine=agent_id,
            conversation_language="ja",
            prefer_local_intents=prefer_local,
            tts_engine=self.tts_id,
            tts_language="ja",
            tts_voice=None,  # the language picks the voice
        )
        speech = await self.async_speak(COMMAND)
        voices_before = len(self.relay.seen("synthesize-start"))
        events = await run_pipeline(hass, pipeline.id, speech)
        (stt_end,) = events[PipelineEventType.STT_END]
        (intent_start,) = events[PipelineEventType.INTENT_START]
        (intent_end,) = events[PipelineEventType.INTENT_END]
        assert stt_end.data is not None
        assert intent_end.data is not None
        response = intent_end.data["intent_output"]["response"]
        answer_audio = await spoken_audio(hass, events)
        (start,) = self.relay.seen("synthesize-start")[voices_before:]
        assert self.asr is not None
        assert self.tts is not None
        seconds = {
            "transcription": self.asr.runtime_data.timings[-1]["stt_seconds"],
            "agent": (
                datetime.fromisoformat(intent_end.timestamp)
                - datetime.fromisoformat(intent_start.timestamp)
            ).total_seconds(),
            "first audio": self.tts.runtime_data.timings[-1]["first_audio_seconds"],
        }
        heard = await self.async_hear(answer_audio)
        turn = {
            "transcript": stt_end.data["stt_output"]["text"],
            "done": json.dumps(
                [call.data for call in self.turn_on], ensure_ascii=False
            ),
            "answer": response["speech"]["plain"]["speech"],
            "voice": json.dumps(start.data["voice"]),
            "heard back": heard,
            "seconds": ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()),
        }
        print(
            "\n".join(f"japanese turn: {key}: {value}" for key, value in turn.items())
        )
        return turn


@pytest.fixture
async def japanese_home(
    hass: HomeAssistant, relay: Relay, asr_base_server: Backend
) -> JapaneseHome:
    """The Japanese home, with Kokoro behind a recording relay."""
    home = JapaneseHome(hass, relay)
    await home.async_setup(asr_base_server.port)
    return home


@pytest.fixture
async def qwen(llama_tools_server: Backend) -> AsyncIterator[RecordingProxy]:
    """Qwen2.5-Coder-0.5B's real server, behind a proxy that keeps the requests."""
    proxy = await RecordingProxy(llama_tools_server.url).start()
    yield proxy
    await proxy.stop()


def _agent_id(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    (agent_id,) = [
        entity.entity_id
        for entity in er.async_entries_for_config_entry(
            er.async_get(hass), entry.entry_id
        )
        if entity.domain == "conversation"
    ]
    return agent_id


def _assert_japanese_turn(home: JapaneseHome, turn: dict[str, str]) -> None:
    """The command was heard, done on the kitchen light, and answered in Japanese."""
    assert _similar(turn["transcript"], COMMAND) >= 0.8, turn["transcript"]
    assert [call.data["entity_id"] for call in home.turn_on] == [["light.test_kitchen"]]
    assert _japanese(turn["answer"]), turn["answer"]
    assert json.loads(turn["voice"]) == {"language": "ja"}
    assert _similar(turn["heard back"], turn["answer"]) >= 0.6, turn


async def test_japanese_turn_through_assist_intents(
    hass: HomeAssistant, japanese_home: JapaneseHome, qwen: RecordingProxy
) -> None:
    """Assist's Japanese sentences do the command before local_voice's agent is."""
    entry = await setup_entry(hass, llama_entry(qwen.url))
    turn = await japanese_home.async_turn(_agent_id(hass, entry), prefer_local=True)
    _assert_japanese_turn(japanese_home, turn)
    assert turn["answer"] == "ライトがオンになりました"  # Assist's own answer
    # The model was not asked: the server only read prompts (warm-ups, 1 token).
    assert [request["max_tokens"] for request in qwen.requests] == [1] * len(
        qwen.requests
    )


async def test_japanese_turn_through_the_agent(
    hass: HomeAssistant, japanese_home: JapaneseHome, qwen: RecordingProxy
) -> None:
    """local_voice's agent does the Japanese command with a tool call, and says so."""
    options = {CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 128}
    entry = await setup_entry(hass, llama_entry(qwen.url, options))
    turn = await japanese_home.async_turn(_agent_id(hass, entry), prefer_local=False)
    _assert_japanese_turn(japanese_home, turn)
    # The chat asked, after its prefix, for answers in Japanese; the turn's warm-up
    # (the STT heard the stream) had read that context before the words came.
    sent = [request["messages"][-1]["content"] for request in qwen.requests]
    (chat,) = [text for text in sent if text.endswith(turn["transcript"])]
    assert language_line("ja") in chat
    warm_up = sent[sent.index(chat) - 1]
    assert warm_up == chat.removesuffix(turn["transcript"])
