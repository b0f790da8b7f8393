"""Speech-to-text on a Wyoming ASR server (whisper.cpp), streamed as it is spoken."""

from __future__ import annotations

from collections.abc import AsyncIterable
import re
import time

from wyoming.info import AsrModel, AsrProgram

from homeassistant.components import stt
from homeassistant.components.stt.models import (
    DEFAULT_AUDIO_PROCESSING,
    SpeechAudioProcessing,
)
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import LOGGER, SERVICE_ASR
from .coordinator import WyomingConfigEntry, WyomingData
from .entity import WyomingEntity
from .voice_turn_start import async_hearing
from .wyoming_client.audio import AudioFormat
from .wyoming_client.errors import ServerUnreachable, WyomingError
from .wyoming_client.server import installed_programs
from .wyoming_client.transcription import (
    STT_TIMEOUT_SECONDS,
    Transcription,
    async_transcribe,
)

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: WyomingConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the speech-to-text entity of an ASR server entry."""
    async_add_entities([LocalVoiceSpeechToText(entry.runtime_data)])


def _model_languages(model: AsrModel) -> list[str]:
    """Return the languages a model understands: Whisper's `.en` ones, English.

    wyoming-whisper-cpp reports all of Whisper's languages for every model, so a
    pipeline in another language could pick tiny.en and hear only English.
    """
    if re.search(r"\.en(?![a-z])", model.name) and "en" in model.languages:
        return ["en"]
    return model.languages


class LocalVoiceSpeechToText(WyomingEntity, stt.SpeechToTextEntity):
    """Transcribe with a Wyoming ASR server; audio is forwarded as it arrives.

    PCM WAV audio in any of Home Assistant's rates, 8 to 32 bits, mono or
    stereo, is converted to the 16 kHz, 16-bit mono that Wyoming ASR takes.
    """

    def __init__(self, data: WyomingData) -> None:
        """Describe the server's ASR program."""
        super().__init__(data, SERVICE_ASR)
        self._program: AsrProgram | None = None
        self._languages: list[str] = []
        self._update_from_info()

    @callback
    def _update_from_info(self) -> None:
        """Take languages and audio preferences from the server's info."""
        programs = installed_programs(self.coordinator.data, SERVICE_ASR)
        if not programs:
            return  # keep what the server offered last
        program = programs[0]
        assert isinstance(program, AsrProgram)
        languages: set[str] = set()
        for model in program.models:
            if model.installed:
                languages.update(_model_languages(model))
        self._program = program
        self._languages = sorted(languages)

    @property
    def supported_languages(self) -> list[str]:
        """Return the languages of the server's installed models."""
        return self._languages

    @property
    def supported_formats(self) -> list[stt.AudioFormats]:
        """Return the formats taken (PCM WAV)."""
        return [stt.AudioFormats.WAV]

    @property
    def supported_codecs(self) -> list[stt.AudioCodecs]:
        """Return the codecs taken."""
        return [stt.AudioCodecs.PCM]

    @property
    def supported_bit_rates(self) -> list[stt.AudioBitRates]:
        """Return the sample sizes taken (converted to 16-bit)."""
        return list(stt.AudioBitRates)

    @property
    def supported_sample_rates(self) -> list[stt.AudioSampleRates]:
        """Return the sample rates taken (converted to 16 kHz)."""
        return list(stt.AudioSampleRates)

    @property
    def supported_channels(self) -> list[stt.AudioChannels]:
        """Return the channel counts taken (converted to mono)."""
        return list(stt.AudioChannels)

    @property
    def audio_processing(self) -> SpeechAudioProcessing:
        """Return what the server wants done to the audio before it."""
        if self._program is None:
            return DEFAULT_AUDIO_PROCESSING
        return SpeechAudioProcessing(
            requires_external_vad=self._program.requires_external_vad,
            prefers_auto_gain_enabled=self._program.prefers_auto_gain_enabled,
            prefers_noise_reduction_enabled=self._program.prefers_noise_reduction_enabled,
        )

    async def async_process_audio_stream(
        self, metadata: stt.SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> stt.SpeechResult:
        """Stream the audio to the server; return its transcript."""
        server = self.server
        started = time.monotonic()
        audio_format = AudioFormat(
            rate=int(metadata.sample_rate),
            width=int(metadata.bit_rate) // 8,
            channels=int(metadata.channel),
        )
        refusal: str | None = None
        if (
            metadata.format != stt.AudioFormats.WAV
            or metadata.codec != stt.AudioCodecs.PCM
        ):
            refusal = (
                f"Speech-to-text on {server} takes PCM WAV audio,"
                f" not {metadata.format}/{metadata.codec}"
            )
        elif problem := (
            f"{int(metadata.bit_rate)}-bit samples"
            if int(metadata.bit_rate) % 8
            else audio_format.problem()
        ):
            refusal = f"Speech-to-text on {server} cannot take audio with {problem}"
        elif not installed_programs(self.coordinator.data, SERVICE_ASR):
            refusal = (
                f"{server} offers no speech-to-text"
                " (is it another kind of Wyoming server?)"
            )
        if refusal is not None:
            LOGGER.error("%s", refusal)
            self._record(started, None, "refused")
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        async_hearing(self.hass, self.entity_id)  # the agent may read its context now
        try:
            result = await async_transcribe(
                server,
                stream,
                audio_format,
                metadata.language,
                transcript_timeout=STT_TIMEOUT_SECONDS,
            )
        except ServerUnreachable as err:
            LOGGER.error("Speech-to-text failed: %s", err)
            self._record(started, None, "unreachable")
            await self.coordinator.async_request_refresh()
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        except WyomingError as err:
            LOGGER.error("Speech-to-text failed: %s", err)
            self._record(started, None, "error")
            return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        self._record(started, result, "done")
        LOGGER.debug(
            "%s transcribed %.2f s of audio in %.2f s after its end",
            *(server, result.audio_seconds, result.stt_seconds),
        )
        return stt.SpeechResult(result.text.strip(), stt.SpeechResultState.SUCCESS)

    def _record(
        self, started: float, result: Transcription | None, outcome: str
    ) -> None:
        """Keep this request's stage timings for diagnostics and the sensors."""
        timing: dict[str, object] = {
            "kind": "stt",
            "outcome": outcome,
            "total_seconds": round(time.monotonic() - started, 3),
        }
        if result is not None:
            timing["stt_seconds"] = round(result.stt_seconds, 3)
            timing["audio_seconds"] = round(result.audio_seconds, 3)
        self.timings.append(timing)
        self.coordinator.async_update_listeners()  # the sensors
