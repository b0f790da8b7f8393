"""Text-to-speech on a Wyoming TTS server (Kokoro, Piper) that starts speaking early.

Home Assistant streams the conversation agent's text into
async_stream_tts_audio. A server that streams text (supports_synthesize_streaming)
gets it as it comes, in one synthesize-start / synthesize-chunk... /
synthesize-stop stream; any other server gets one synthesize request per
sentence, as soon as the sentence is complete. Either way the first audio comes
long before the agent has finished. What is spoken passes the speech filter
(no markdown, emoji, URLs or code).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncGenerator, Mapping
import contextlib
from typing import Any

from wyoming.info import TtsProgram
from wyoming.tts import SynthesizeVoice

from homeassistant.components import tts
from homeassistant.components.tts.entity import TTSAudioRequest
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import language as language_util

from .const import (
    ATTR_SPEAKER,
    DOMAIN,
    LOGGER,
    SERVICE_TTS,
)
from .coordinator import WyomingConfigEntry, WyomingData
from .entity import WyomingEntity
from .wyoming_client.audio import SPEECH_FORMAT, AudioFormat, wav_bytes
from .wyoming_client.errors import ServerUnreachable, WyomingError
from .wyoming_client.server import installed_programs
from .wyoming_client.synthesis import (
    TTS_AUDIO_TIMEOUT_SECONDS,
    TTS_TEXT_TIMEOUT_SECONDS,
    Synthesis,
)
from .wyoming_client.synthesis_modes import (
    PerSentence,
    StreamingText,
    SynthesisMode,
    WholeText,
)

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: WyomingConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the text-to-speech entity of a TTS server entry."""
    async_add_entities([LocalVoiceTextToSpeech(entry.runtime_data)])


async def _one(text: str) -> AsyncGenerator[str]:
    yield text


class LocalVoiceTextToSpeech(WyomingEntity, tts.TextToSpeechEntity):
    """Speak with a Wyoming TTS server; stream text in and audio out.

    A new request stops the one still running (barge-in): its connection is
    dropped and the rest of its audio is never produced.

    Named as the server itself: Home Assistant's TTS refuses an engine whose own
    name is None ("TTS engine name is not set"), which the device-named pattern of
    the STT entity gives, so the id is `tts.kokoro` this way.
    """

    _attr_has_entity_name = False

    def __init__(self, data: WyomingData) -> None:
        """Describe the server's voices."""
        super().__init__(data, SERVICE_TTS)
        self._attr_name = data.coordinator.config_entry.title
        self._attr_supported_options = [tts.ATTR_VOICE, ATTR_SPEAKER]
        self._voices: dict[str, list[tts.Voice]] = {}
        self._voice_names: set[str] = set()
        self._server_streams_text = False
        self._running: set[Synthesis] = set()
        self._attr_supported_languages = []
        self._attr_default_language = data.coordinator.hass.config.language
        self._update_from_info()

    @callback
    def _update_from_info(self) -> None:
        """Take voices, languages and streaming support from the server's info."""
        programs = installed_programs(self.coordinator.data, SERVICE_TTS)
        if not programs:
            return  # keep what the server offered last
        program = programs[0]
        assert isinstance(program, TtsProgram)
        voices: dict[str, list[tts.Voice]] = defaultdict(list)
        for voice in program.voices:
            if not voice.installed:
                continue
            for language in voice.languages:
                voices[language].append(
                    tts.Voice(voice_id=voice.name, name=voice.description or voice.name)
                )
        for language_voices in voices.values():
            language_voices.sort(key=lambda voice: voice.name)
        self._voices = dict(voices)
        self._voice_names = {v.voice_id for vs in voices.values() for v in vs}
        self._server_streams_text = program.supports_synthesize_streaming
        languages = sorted(voices)
        if languages != self._attr_supported_languages:
            self._attr_supported_languages = languages
        config = self.coordinator.hass.config
        if languages and self._attr_default_language not in languages:
            # Home Assistant's language (and country) first, else the first one.
            matches = language_util.matches(config.language, languages, config.country)
            self._attr_default_language = matches[0] if matches else languages[0]

    @property
    def server_streams_text(self) -> bool:
        """Return True if the server takes text as a stream."""
        return self._server_streams_text

    @callback
    def async_get_supported_voices(self, language: str) -> list[tts.Voice] | None:
        """Return the server's voices for a language."""
        return self._voices.get(language)

    def async_supports_streaming_input(self) -> bool:
        """Take streamed text; a server that cannot stream it gets sentences."""
        return True

    async def async_get_tts_audio(
        self, message: str, language: str, options: dict[str, Any]
    ) -> tts.TtsAudioType:
        """Synthesize a whole message at once (one request, WAV)."""
        synthesis = self._begin(_one(message), language, options, WholeText())
        audio_format: AudioFormat | None = None
        pcm: list[bytes] = []
        try:
            async with contextlib.aclosing(synthesis.audio()) as chunks:
                async for chunk in chunks:
                    audio_format = audio_format or AudioFormat(
                        chunk.rate, chunk.width, chunk.channels
                    )
                    pcm.append(chunk.audio)
        except WyomingError as err:
            raise await self._failed(err) from err
        finally:
            self._end(synthesis)
        return "wav", wav_bytes(audio_format or SPEECH_FORMAT, b"".join(pcm))

    async def async_stream_tts_audio(
        self, request: TTSAudioRequest
    ) -> tts.TTSAudioResponse:
        """Stream text in and audio out; speaking starts with the first sentence."""
        mode = StreamingText() if self._server_streams_text else PerSentence()
        synthesis = self._begin(
            request.message_gen, request.language, request.options, mode
        )
        return tts.TTSAudioResponse("wav", self._stream_wav(synthesis))

    async def _stream_wav(self, synthesis: Synthesis) -> AsyncGenerator[bytes]:
        """Yield a WAV header, then PCM as the server produces it."""
        header_sent = False
        try:
            async with contextlib.aclosing(synthesis.audio()) as chunks:
                async for chunk in chunks:
                    if not header_sent:
                        header_sent = True
                        yield wav_bytes(
                            AudioFormat(chunk.rate, chunk.width, chunk.channels)
                        )
                    yield chunk.audio
            if not header_sent:
                yield wav_bytes(SPEECH_FORMAT)  # nothing to say, or stopped early
        except WyomingError as err:
            raise await self._failed(err) from err
        finally:
            self._end(synthesis)

    def _begin(
        self,
        text: AsyncGenerator[str],
        language: str,
        options: Mapping[str, Any],
        mode: SynthesisMode,
    ) -> Synthesis:
        """Stop what is still speaking, then prepare the new synthesis."""
        for running in list(self._running):
            LOGGER.debug(
                "New speech on %s: stopping the one still running", self.entity_id
            )
            running.cancel()
            if not running.started:
                self._running.discard(running)  # never read: nothing to record
        synthesis = Synthesis(
            self.server,
            text,
            mode,
            voice=self._voice(options, language),
            text_timeout=TTS_TEXT_TIMEOUT_SECONDS,
            audio_timeout=TTS_AUDIO_TIMEOUT_SECONDS,
        )
        self._running.add(synthesis)
        return synthesis

    def _voice(self, options: Mapping[str, Any], language: str) -> SynthesizeVoice:
        """Return the voice asked for, else ask the server for one of the language.

        Wyoming's language-only request lets the server keep its own default voice
        when that one reads the language (the voice the user gave its add-on).
        Home Assistant passes only supported_languages, the languages of the
        server's voices; any other language is logged, never quietly misread.
        """
        name = options.get(tts.ATTR_VOICE)
        if name and (not self._voice_names or name in self._voice_names):
            return SynthesizeVoice(
                name=name, speaker=options.get(ATTR_SPEAKER), language=language
            )
        if name:
            LOGGER.warning(
                "%s has no voice %s: asking it for a voice of %s",
                self.server,
                name,
                language,
            )
        if self._voices and language not in self._voices:
            LOGGER.warning(
                "%s has no voice for language %s: its default voice speaks",
                self.server,
                language,
            )
        return SynthesizeVoice(language=language)

    def _end(self, synthesis: Synthesis) -> None:
        """Forget the synthesis; keep its stage timings (diagnostics, sensors)."""
        if synthesis not in self._running:
            return
        self._running.discard(synthesis)
        self.timings.append(
            {
                "kind": "tts",
                "streaming": not isinstance(synthesis.mode, WholeText),
                "server_streams_text": self._server_streams_text,
                **synthesis.stats.as_dict(),
            }
        )
        self.coordinator.async_update_listeners()  # the sensors

    async def _failed(self, err: WyomingError) -> HomeAssistantError:
        """Log, mark the server down if it is unreachable, and explain."""
        LOGGER.error("Text-to-speech failed: %s", err)
        if isinstance(err, ServerUnreachable):
            await self.coordinator.async_request_refresh()
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="tts_failed",
            translation_placeholders={"error": str(err)},
        )
