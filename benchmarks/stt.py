"""STT time after the end of audio: local_voice's STT entity vs a direct Wyoming client.

Starts the real Wyoming ASR server (whisper.cpp, tiny.en) and a Home Assistant
with a local_voice STT entry on it, then transcribes the test speech
("Turn on the kitchen light.", 1.8 s, tests/fixtures/audio) alternately

* through the entity (async_process_audio_stream, audio streamed in 100 ms
  chunks as a satellite sends it): from the last audio chunk handed over to
  the transcript;
* with a bare wyoming client doing the same: from audio-stop to the transcript.

Runs alternate. Other work on the machine only ever adds time, and a lot of it
on a shared 2-core box (single runs of 2-10x), so the ratio on the last line,
`stt_overhead_ratio=<local_voice ÷ direct>`, compares the fastest runs (the
intrinsic cost, as timeit does); medians are printed too. Needs the backends
(scripts/setup).

    .venv/bin/python benchmarks/stt.py [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
import contextlib
import logging
from pathlib import Path
import statistics
import sys
import tempfile
import time
import wave

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Home Assistant first: it must install its voluptuous shim before anything else.
from homeassistant import loader  # noqa: E402, I001
from homeassistant.components import stt  # noqa: E402
from homeassistant.components.stt.const import DATA_COMPONENT  # noqa: E402
from homeassistant.helpers import entity_registry as er  # noqa: E402
from homeassistant.setup import async_setup_component  # noqa: E402
from pytest_homeassistant_custom_component.common import (  # noqa: E402
    MockConfigEntry,
    async_test_home_assistant,
)
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402

from custom_components.local_voice.const import DOMAIN, SERVICE_ASR  # noqa: E402
from custom_components.local_voice.stt import LocalVoiceSpeechToText  # noqa: E402
from tests.backends import VENV_PY, WHISPER_DIR, asr_argv, start  # noqa: E402

SPEECH = ROOT / "tests" / "fixtures" / "audio" / "turn_on_kitchen_light.wav"
CHUNK = 3200  # 100 ms of 16 kHz 16-bit mono
METADATA = stt.SpeechMetadata(
    language="en",
    format=stt.AudioFormats.WAV,
    codec=stt.AudioCodecs.PCM,
    bit_rate=stt.AudioBitRates.BITRATE_16,
    sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
    channel=stt.AudioChannels.CHANNEL_MONO,
)


def read_speech() -> bytes:
    with wave.open(str(SPEECH), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (
            16000,
            2,
            1,
        )
        return wav.readframes(wav.getnframes())


async def local_voice_run(
    entity: LocalVoiceSpeechToText, pcm: bytes
) -> tuple[float, str]:
    """Seconds from the end of audio to the transcript, through the entity."""
    end_of_audio = 0.0

    async def microphone() -> AsyncIterator[bytes]:
        nonlocal end_of_audio
        for start_byte in range(0, len(pcm), CHUNK):
            yield pcm[start_byte : start_byte + CHUNK]
        end_of_audio = time.perf_counter()

    result = await entity.async_process_audio_stream(METADATA, microphone())
    elapsed = time.perf_counter() - end_of_audio
    assert result.result == stt.SpeechResultState.SUCCESS, result
    return elapsed, result.text or ""


async def direct_run(port: int, pcm: bytes) -> tuple[float, str]:
    """Seconds from audio-stop to the transcript, with a bare wyoming client."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        for start_byte in range(0, len(pcm), CHUNK):
            chunk = AudioChunk(
                rate=16000,
                width=2,
                channels=1,
                audio=pcm[start_byte : start_byte + CHUNK],
            )
            await client.write_event(chunk.event())
        end_of_audio = time.perf_counter()
        await client.write_event(AudioStop().event())
        while True:
            event = await client.read_event()
            assert event is not None, "server closed the connection"
            if Transcript.is_type(event.type):
                elapsed = time.perf_counter() - end_of_audio
                return elapsed, Transcript.from_event(event).text


@contextlib.asynccontextmanager
async def home_assistant(port: int) -> AsyncIterator[LocalVoiceSpeechToText]:
    """A Home Assistant with a local_voice STT entry on the server at `port`."""
    with tempfile.TemporaryDirectory() as config_dir:
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)  # allow custom_components
            assert await async_setup_component(hass, "homeassistant", {})
            entry = MockConfigEntry(
                domain=DOMAIN,
                title="Wyoming asr",
                data={"service": SERVICE_ASR, "host": "127.0.0.1", "port": port},
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
            entity_id = er.async_get(hass).async_get_entity_id(
                "stt", DOMAIN, f"{entry.entry_id}-asr"
            )
            entity = hass.data[DATA_COMPONENT].get_entity(entity_id or "")
            assert isinstance(entity, LocalVoiceSpeechToText)
            yield entity
            await hass.config_entries.async_unload(entry.entry_id)


async def bench(port: int, runs: int) -> float:
    pcm = read_speech()
    print(f"speech: {SPEECH.name}, {len(pcm) / 32000:.2f} s, 16 kHz 16-bit mono")
    async with home_assistant(port) as entity:
        await direct_run(port, pcm)  # warm up the model
        ours: list[float] = []
        direct: list[float] = []
        for run in range(1, runs + 1):
            # Alternate which goes first, so neither always runs on a warmer server.
            order = (True, False) if run % 2 else (False, True)
            for through_entity in order:
                if through_entity:
                    elapsed, text = await local_voice_run(entity, pcm)
                    ours.append(elapsed)
                    name = "local_voice"
                else:
                    elapsed, text = await direct_run(port, pcm)
                    direct.append(elapsed)
                    name = "direct     "
                print(f"run {run:2} {name}: {elapsed:.3f} s after audio end  {text!r}")
    for name, pick in (("median", statistics.median), ("fastest", min)):
        print(
            f"{name} STT time after end of audio: local_voice {pick(ours):.3f} s,"
            f" direct wyoming client {pick(direct):.3f} s,"
            f" ratio {pick(ours) / pick(direct):.3f}"
        )
    return min(ours) / min(direct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if not (VENV_PY.exists() and (WHISPER_DIR / "ggml-tiny.en.bin").exists()):
        sys.exit("backends missing: run scripts/setup")
    with tempfile.TemporaryDirectory() as logs:
        server = start("asr", asr_argv(), "tcp", Path(logs))
        try:
            ratio = asyncio.run(bench(server.port, args.runs))
        finally:
            server.stop()
    print(f"stt_overhead_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
