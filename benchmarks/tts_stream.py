"""Time to first audio: local_voice's TTS entity, streaming vs non-streaming.

Starts a real Wyoming TTS server (Piper en_US-joe-medium, or with --kokoro the
kokoro add-on's own server on Kokoro-82M int8, voice jf_alpha) and a Home
Assistant with a local_voice TTS entry on it, then feeds a 4-sentence answer
into the entity the way an LLM produces it (text deltas at --rate tokens/s):

* streaming: the deltas go into async_stream_tts_audio as they come (what
  Home Assistant does with a streaming conversation agent);
* non-streaming: the answer is collected, then async_get_tts_audio (what Home
  Assistant does with a TTS entity that cannot take streamed text).

Each run measures the time from the first text delta to the first audio byte.
Runs alternate; the last line is `tts_first_audio_ratio=<non-streaming ÷ streaming>`
(medians). The server's real-time factor (synthesis time ÷ audio length) comes from
the non-streaming runs: the time from the whole text to the whole WAV. Needs the
backends (scripts/setup).

    .venv/bin/python benchmarks/tts_stream.py [--kokoro] [--runs 5] [--rate 20]
        [--server-no-streaming]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
import contextlib
import logging
from pathlib import Path
import re
import statistics
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Home Assistant first: it must install its voluptuous shim before anything else.
from homeassistant import loader  # noqa: E402, I001
from homeassistant.components.tts.const import DATA_COMPONENT  # noqa: E402
from homeassistant.components.tts.entity import TTSAudioRequest  # noqa: E402
from homeassistant.core import HomeAssistant  # noqa: E402
from homeassistant.helpers import entity_registry as er  # noqa: E402
from homeassistant.setup import async_setup_component  # noqa: E402
from pytest_homeassistant_custom_component.common import (  # noqa: E402
    MockConfigEntry,
    async_test_home_assistant,
)

from custom_components.local_voice.const import DOMAIN, SERVICE_TTS  # noqa: E402
from custom_components.local_voice.tts import LocalVoiceTextToSpeech  # noqa: E402
from tests.backends import (  # noqa: E402
    KOKORO_FILES,
    VENV_PY,
    piper_argv,
    start,
    tts_argv,
)

ANSWER = (
    "The kitchen light is on now. "
    "I also checked the hallway, and that light was already on, so I left it alone. "
    "The living room lamp is still off, just as you asked me this morning. "
    "Is there anything else you would like me to do before you go to bed tonight?"
)
WAV_HEADER = 44


def llm_tokens(text: str) -> list[str]:
    """Split text into LLM-like tokens: word pieces of up to 5 letters, punctuation."""
    return re.findall(r"\s?[A-Za-z']{1,5}|\s?[^\sA-Za-z']", text)


class Clock:
    """When the first text delta was produced."""

    first_delta: float = 0.0


async def llm(tokens: list[str], rate: float, clock: Clock) -> AsyncGenerator[str]:
    """Yield tokens at `rate` tokens per second, noting the first one's time."""
    for index, token in enumerate(tokens):
        if index == 0:
            clock.first_delta = time.perf_counter()
        else:
            await asyncio.sleep(1 / rate)
        yield token


async def streaming_run(
    entity: LocalVoiceTextToSpeech, tokens: list[str], rate: float
) -> tuple[float, float]:
    """Return (first audio, total) seconds since the first delta, streaming."""
    clock = Clock()
    response = await entity.async_stream_tts_audio(
        TTSAudioRequest(entity.default_language, {}, llm(tokens, rate, clock))
    )
    received = 0
    first_audio = None
    async for chunk in response.data_gen:
        received += len(chunk)
        if first_audio is None and received > WAV_HEADER:
            first_audio = time.perf_counter() - clock.first_delta
    assert first_audio is not None, "no audio"
    return first_audio, time.perf_counter() - clock.first_delta


async def non_streaming_run(
    entity: LocalVoiceTextToSpeech, tokens: list[str], rate: float
) -> tuple[float, float]:
    """Return (first audio, real-time factor), whole message.

    First audio is counted from the first delta; the real-time factor is the time
    from the whole text to the whole WAV, divided by the audio's length.
    """
    clock = Clock()
    text = "".join([token async for token in llm(tokens, rate, clock)])
    asked = time.perf_counter()
    _, data = await entity.async_get_tts_audio(text, entity.default_language, {})
    done = time.perf_counter()
    assert data is not None
    assert len(data) > WAV_HEADER, "no audio"
    rate_hz = int.from_bytes(data[24:28], "little")
    block_align = int.from_bytes(data[32:34], "little")
    audio_seconds = (len(data) - WAV_HEADER) / (rate_hz * block_align)
    return done - clock.first_delta, (done - asked) / audio_seconds


@contextlib.asynccontextmanager
async def home_assistant(port: int) -> AsyncIterator[LocalVoiceTextToSpeech]:
    """A Home Assistant with a local_voice TTS entry on the server at `port`."""
    with tempfile.TemporaryDirectory() as config_dir:
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)  # allow custom_components
            assert await async_setup_component(hass, "homeassistant", {})
            entry = MockConfigEntry(
                domain=DOMAIN,
                title="Wyoming tts",
                data={"service": SERVICE_TTS, "host": "127.0.0.1", "port": port},
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id)
            await hass.async_block_till_done()
            yield _entity(hass, entry)
            await hass.config_entries.async_unload(entry.entry_id)


def _entity(hass: HomeAssistant, entry: MockConfigEntry) -> LocalVoiceTextToSpeech:
    entity_id = er.async_get(hass).async_get_entity_id(
        "tts", DOMAIN, f"{entry.entry_id}-tts"
    )
    entity = hass.data[DATA_COMPONENT].get_entity(entity_id or "")
    assert isinstance(entity, LocalVoiceTextToSpeech)
    return entity


async def bench(name: str, port: int, runs: int, rate: float) -> float:
    tokens = llm_tokens(ANSWER)
    print(
        f"answer: 4 sentences, {len(ANSWER)} characters, {len(tokens)} tokens"
        f" at {rate:g} tokens/s ({len(tokens) / rate:.1f} s of LLM output)"
    )
    async with home_assistant(port) as entity:
        mode = "stream" if entity.server_streams_text else "sentences"
        print(f"server streams text: {entity.server_streams_text} (mode: {mode})")
        await non_streaming_run(entity, llm_tokens("Warm up."), 1000)  # load the voice
        streaming: list[float] = []
        whole: list[float] = []
        factors: list[float] = []
        for run in range(1, runs + 1):
            first, total = await streaming_run(entity, tokens, rate)
            streaming.append(first)
            print(
                f"run {run} streaming:     first audio {first:.3f} s, all {total:.3f} s"
            )
            first, factor = await non_streaming_run(entity, tokens, rate)
            whole.append(first)
            factors.append(factor)
            print(
                f"run {run} non-streaming: first audio {first:.3f} s,"
                f" real-time factor {factor:.2f}"
            )
    median_streaming = statistics.median(streaming)
    median_whole = statistics.median(whole)
    print(
        f"median first audio: streaming {median_streaming:.3f} s,"
        f" non-streaming {median_whole:.3f} s"
    )
    print(
        f"{name}: first audio {median_streaming:.3f} s (streaming),"
        f" real-time factor {statistics.median(factors):.2f}"
        " (synthesis time / audio length, median)"
    )
    return median_whole / median_streaming


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="LLM tokens/s")
    parser.add_argument(
        "--kokoro",
        action="store_true",
        help="the kokoro add-on's server on Kokoro-82M instead of Piper",
    )
    parser.add_argument(
        "--server-no-streaming",
        action="store_true",
        help="start the server with --no-streaming: local_voice goes sentence by"
        " sentence",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("haffmpeg").setLevel(logging.CRITICAL)  # no ffmpeg: not used
    needed = KOKORO_FILES if args.kokoro else (VENV_PY,)
    if missing := [str(path) for path in needed if not path.exists()]:
        sys.exit(f"backends missing ({', '.join(missing)}): run scripts/setup")
    name = "kokoro" if args.kokoro else "piper"
    with tempfile.TemporaryDirectory() as logs:
        argv = tts_argv() if args.kokoro else piper_argv(Path(logs))
        if args.server_no_streaming:
            argv.append("--no-streaming")
        server = start(name, argv, "tcp", Path(logs))
        try:
            ratio = asyncio.run(bench(name, server.port, args.runs, args.rate))
        finally:
            server.stop()
    print(f"tts_first_audio_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
