"""Speech-to-text against the REAL Wyoming whisper.cpp server (tiny.en).

The test speech is Piper's "Turn on the kitchen light." (tests/fixtures/audio).
A transparent relay records the events on the wire; a faulty loopback server
is used only for protocol faults no real server makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.local_voice import stt as lv_stt
from custom_components.local_voice.const import (
    DOMAIN,
    SERVICE_ASR,
    UPDATE_INTERVAL_SECONDS,
)
from custom_components.local_voice.diagnostics import (
    async_get_config_entry_diagnostics,
)
from custom_components.local_voice.stt import LocalVoiceSpeechToText
from custom_components.local_voice.wyoming_client import connection
from custom_components.local_voice.wyoming_client.audio import AudioFormat
from homeassistant.components import stt
from homeassistant.components.stt.const import DATA_COMPONENT
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util

from .backends import VENV_PY, WHISPER_DIR, Backend, asr_argv, free_port, require, start
from .common import setup_entry, wyoming_entry
from .speech_support import (
    HUGE_ANNOUNCEMENTS,
    KITCHEN_WAV,
    FaultyServer,
    Relay,
    asr_info,
    assert_heard,
    chunked,
    convert,
    normalize,
    read_wav,
)

KITCHEN = "turn on the kitchen light"


def stt_entity(hass: HomeAssistant, entry: MockConfigEntry) -> LocalVoiceSpeechToText:
    """Return the entry's STT entity object."""
    entity_id = er.async_get(hass).async_get_entity_id(
        "stt", DOMAIN, f"{entry.entry_id}-asr"
    )
    assert entity_id is not None
    entity = hass.data[DATA_COMPONENT].get_entity(entity_id)
    assert isinstance(entity, LocalVoiceSpeechToText)
    return entity


def metadata(
    rate: int = 16000, bits: int = 16, channels: int = 1, **changes: object
) -> stt.SpeechMetadata:
    """Speech metadata as Home Assistant passes it."""
    data: dict[str, object] = {
        "language": "en",
        "format": stt.AudioFormats.WAV,
        "codec": stt.AudioCodecs.PCM,
        "bit_rate": stt.AudioBitRates(bits),
        "sample_rate": stt.AudioSampleRates(rate),
        "channel": stt.AudioChannels(channels),
        **changes,
    }
    return stt.SpeechMetadata(**data)  # type: ignore[arg-type]


async def test_languages_and_formats(hass: HomeAssistant, asr_server: Backend) -> None:
    """Languages come from the server's models; every PCM WAV variant is taken."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_server.port))
    entity = stt_entity(hass, entry)
    assert "en" in entity.supported_languages
    assert entity.supported_languages == sorted(entity.supported_languages)
    assert entity.supported_formats == [stt.AudioFormats.WAV]
    assert entity.supported_codecs == [stt.AudioCodecs.PCM]
    assert stt.AudioSampleRates.SAMPLERATE_48000 in entity.supported_sample_rates
    assert entity.check_metadata(metadata(48000, 32, 2))
    assert not entity.check_metadata(metadata(language="xx"))
    assert not entity.check_metadata(metadata(format=stt.AudioFormats.OGG))
    assert entity.audio_processing.requires_external_vad  # from the server's info
    assert entity.name is None  # named as its device: the server


async def test_transcribes_while_audio_streams(
    hass: HomeAssistant, asr_server: Backend
) -> None:
    """Audio goes to the server as it arrives, not after the utterance ends."""
    relay = await Relay(asr_server.port).start()
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, relay.port))
        entity = stt_entity(hass, entry)
        _, pcm = read_wav(KITCHEN_WAV)
        half = len(pcm) // 2

        async def microphone() -> AsyncIterator[bytes]:
            async for chunk in chunked(pcm[:half]):
                yield chunk
            # The first half must reach the server before the rest is spoken.
            await relay.wait_for(
                lambda: len(relay.seen("audio-chunk")) * 3200 >= half, limit=30
            )
            async for chunk in chunked(pcm[half:]):
                yield chunk

        result = await entity.async_process_audio_stream(metadata(), microphone())
    finally:
        await relay.stop()
    assert result.result == stt.SpeechResultState.SUCCESS
    assert result.text is not None
    assert normalize(result.text) == KITCHEN
    upstream = relay.types(upstream=True)
    assert upstream[:2] == ["transcribe", "audio-start"]
    assert upstream[-1] == "audio-stop"
    assert relay.seen("transcribe")[0].data["language"] == "en"
    timing = entry.runtime_data.timings[-1]
    assert timing["kind"] == "stt"
    assert timing["outcome"] == "done"
    assert timing["audio_seconds"] == pytest.approx(len(pcm) / 32000, abs=0.01)
    assert 0 < timing["stt_seconds"] <= timing["total_seconds"]


@pytest.mark.parametrize(
    ("rate", "bits", "channels"), [(48000, 16, 2), (44100, 32, 1), (22000, 8, 1)]
)
async def test_other_formats_are_converted(
    hass: HomeAssistant, asr_server: Backend, rate: int, bits: int, channels: int
) -> None:
    """Audio that is not 16 kHz/16-bit/mono is converted before it is sent."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_server.port))
    entity = stt_entity(hass, entry)
    source, pcm = read_wav(KITCHEN_WAV)
    audio = convert(pcm, source, AudioFormat(rate, bits // 8, channels))
    # Odd chunk sizes: frames straddle chunks.
    result = await entity.async_process_audio_stream(
        metadata(rate, bits, channels), chunked(audio, 1001)
    )
    assert result.result == stt.SpeechResultState.SUCCESS
    # 8-bit audio is noisy: a word may be misheard, never the whole command.
    assert_heard(result.text, KITCHEN, min_ratio=0.6, landmarks=("kitchen",))
    audio_seconds = len(pcm) / source.bytes_per_second
    assert entry.runtime_data.timings[-1]["audio_seconds"] == pytest.approx(
        audio_seconds, abs=0.02
    )


async def test_wav_header_in_the_stream_is_skipped(
    hass: HomeAssistant, asr_server: Backend
) -> None:
    """A client that sends a whole WAV file gets the same transcript."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_server.port))
    entity = stt_entity(hass, entry)
    data = KITCHEN_WAV.read_bytes()
    result = await entity.async_process_audio_stream(metadata(), chunked(data, 20))
    assert result.text is not None
    assert normalize(result.text) == KITCHEN
    _, pcm = read_wav(KITCHEN_WAV)
    assert entry.runtime_data.timings[-1]["audio_seconds"] == pytest.approx(
        len(pcm) / 32000, abs=0.001
    )


async def test_unsupported_audio_is_refused(
    hass: HomeAssistant, asr_server: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Compressed audio is refused with a clear error, before any connection."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_server.port))
    entity = stt_entity(hass, entry)
    result = await entity.async_process_audio_stream(
        metadata(format=stt.AudioFormats.OGG, codec=stt.AudioCodecs.OPUS),
        chunked(b"OggS" + bytes(100)),
    )
    assert result == stt.SpeechResult(None, stt.SpeechResultState.ERROR)
    assert (
        f"Speech-to-text on tcp://127.0.0.1:{asr_server.port} takes PCM WAV audio,"
        " not ogg/opus" in caplog.text
    )


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"sample_rate": 0}, "a sample rate of 0 Hz (not 4000-192000)"),
        ({"bit_rate": 0}, "0-byte samples (not 1-4)"),
        ({"bit_rate": 12}, "12-bit samples"),
        ({"channel": 0}, "0 channels (not mono or stereo)"),
    ],
)
async def test_impossible_audio_format_is_refused(
    hass: HomeAssistant,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, int],
    problem: str,
) -> None:
    """A zero rate, width or channel count is refused in words, not a raw error."""
    server = await FaultyServer(asr_info(), "close").start()
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, server.port))
        entity = stt_entity(hass, entry)
        result = await entity.async_process_audio_stream(
            metadata(**changes), chunked(bytes(3200))
        )
    finally:
        await server.stop()
    assert result == stt.SpeechResult(None, stt.SpeechResultState.ERROR)
    assert (
        f"Speech-to-text on tcp://127.0.0.1:{server.port} cannot take audio"
        f" with {problem}" in caplog.text
    )
    assert server.requests == 0
    assert entry.runtime_data.timings[-1]["outcome"] == "refused"


async def test_wrong_service(
    hass: HomeAssistant, tts_server: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """An ASR entry pointing at a TTS server says so instead of waiting."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, tts_server.port))
    entity = stt_entity(hass, entry)
    _, pcm = read_wav(KITCHEN_WAV)
    result = await entity.async_process_audio_stream(metadata(), chunked(pcm))
    assert result.result == stt.SpeechResultState.ERROR
    assert f"tcp://127.0.0.1:{tts_server.port} offers no speech-to-text" in caplog.text


async def test_server_down_and_back(
    hass: HomeAssistant, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stopped server gives an error naming it; the entity recovers after."""
    require(VENV_PY, WHISPER_DIR / "ggml-tiny.en.bin")
    port = free_port()
    server = start("asr-recover", asr_argv(), "tcp", tmp_path, port=port)
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, port))
        entity = stt_entity(hass, entry)
        server.stop()
        _, pcm = read_wav(KITCHEN_WAV)
        result = await entity.async_process_audio_stream(metadata(), chunked(pcm))
        assert result.result == stt.SpeechResultState.ERROR
        assert f"tcp://127.0.0.1:{port} is unreachable" in caplog.text
        await hass.async_block_till_done()
        state = hass.states.get(entity.entity_id)
        assert state is not None
        assert state.state == STATE_UNAVAILABLE
        assert entry.runtime_data.timings[-1]["outcome"] == "unreachable"

        server = start("asr-recover", asr_argv(), "tcp", tmp_path, port=port)
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=UPDATE_INTERVAL_SECONDS + 1)
        )
        await hass.async_block_till_done(wait_background_tasks=True)
        state = hass.states.get(entity.entity_id)
        assert state is not None
        assert state.state != STATE_UNAVAILABLE
        result = await entity.async_process_audio_stream(metadata(), chunked(pcm))
        assert result.text is not None
        assert normalize(result.text) == KITCHEN
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("garbage", "sent something that is not a Wyoming event"),
        ("close", "closed the connection"),
        ("silent", "sent no transcript within 1 s after the audio"),
        (
            "huge-payload",
            "announced 1073741824 bytes of payload for one audio-chunk event,"
            " over the limit of 4194304",
        ),
        (
            "huge-data",
            "announced 1073741824 bytes of data for one audio-start event,"
            " over the limit of 1048576",
        ),
        ("long-header", "sent an event header longer than 65536 bytes"),
        (
            "stop-reading",
            "stopped reading: sending one audio-chunk event took over 0.2 s",
        ),
    ],
)
async def test_protocol_faults(
    hass: HomeAssistant,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    message: str,
) -> None:
    """Garbage, early close, silence, oversized events, a server that stops reading.

    Each gives an error result in bounded time, leaking nothing; an oversized
    announcement is refused before any of it is read, and the connection dropped.
    """
    monkeypatch.setattr(lv_stt, "STT_TIMEOUT_SECONDS", 1)
    monkeypatch.setattr(connection, "WYOMING_WRITE_TIMEOUT_SECONDS", 0.2)
    server = await FaultyServer(asr_info(), fault).start()
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, server.port))
        entity = stt_entity(hass, entry)
        _, pcm = read_wav(KITCHEN_WAV)
        if fault == "stop-reading":
            pcm = bytes(8 << 20)  # 4 min of silence: more than the socket buffers
        async with asyncio.timeout(15):
            result = await entity.async_process_audio_stream(metadata(), chunked(pcm))
        assert result == stt.SpeechResult(None, stt.SpeechResultState.ERROR)
        assert f"tcp://127.0.0.1:{server.port} {message}" in caplog.text
        assert entry.runtime_data.timings[-1]["outcome"] == "error"
        if fault in HUGE_ANNOUNCEMENTS or fault == "long-header":
            async with asyncio.timeout(5):
                await server.dropped.wait()
        assert not [
            task
            for task in asyncio.all_tasks()
            if task.get_name().startswith("local_voice") and not task.done()
        ]
    finally:
        await server.stop()


async def test_timings_in_diagnostics(hass: HomeAssistant, asr_server: Backend) -> None:
    """STT time and audio length show in the entry's diagnostics, text-free."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_server.port))
    entity = stt_entity(hass, entry)
    _, pcm = read_wav(KITCHEN_WAV)
    await entity.internal_async_process_audio_stream(metadata(), chunked(pcm))
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    (timing,) = diagnostics["timings"]
    assert timing["kind"] == "stt"
    assert timing["stt_seconds"] > 0
    assert timing["audio_seconds"] > 1
    assert "kitchen" not in str(diagnostics).lower()
