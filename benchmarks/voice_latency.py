"""What the user hears: end of speech to first audio, core's stack vs local_voice's.

Home Assistant's real Assist pipeline (in the test harness), audio in and audio
out, on the home of home.py with the one-turn commands and questions of
home_utterances.py, for two stacks on identical servers:

* core: the `wyoming` STT and TTS integrations and the `llama_cpp` agent;
* local_voice: its STT, TTS and conversation entities.

whisper.cpp (tiny.en) and the kokoro add-on's server are shared; each stack has its
own llama-server, same model and flags. Each command is spoken by Piper (joe, a
voice neither stack answers with), resampled to 16 kHz and sent as a satellite sends
it: 20 ms chunks at real time, then silence until the pipeline's own voice-activity
detection ends the speech. The answer is read as a satellite reads it: its TTS
stream opened at run start (WAV as the engine makes it). The Kokoro voices that
scripts/backends has are Japanese ones: both pipelines ask for TTS in Japanese, and
Kokoro reads the English answers with them in English. Each turn is a new
conversation from one of five sources: four satellites with areas, each an Assist
satellite entity on its device that runs the preferred pipeline (satellites.py),
and the app (a pipeline run with no device). The stacks alternate which goes first.

Per turn: end of speech (the pipeline's VAD end) → transcript → first token (the
agent's first delta) → first text handed to TTS → first audio byte → last audio
byte; tool rounds; prompt tokens the server read for them (not for local_voice's
warm-up while the user speaks); done (the home's state, judged as home_commands
judges it). A turn that fails counts with the time the user waited for its
failure (its spoken error, or the turn timeout).

The floor, for each local_voice turn, measured in the same run: whisper's time for
the same speech through a bare Wyoming client (audio-stop to transcript);
llama-server's time for the exact rounds local_voice sent, replayed at once with
their prompts cached (each round whole, the last one up to the end of its first
clause); Kokoro's time to first audio for the first sentence local_voice spoke.
Floor = their sum.

Prints a table (median, p90 and mean per stack and stage, over all turns and over
the turns both stacks got done), writes the stages' medians as a stacked bar chart
(SVG, `--chart`), and ends with `voice_latency_ratio=<core mean ÷ local_voice
mean> floor_ratio=<local_voice median ÷ floor median>`, both over all turns.

    .venv/bin/python benchmarks/voice_latency.py [--turns 20] [--turn-timeout 120]
        [--chart benchmarks/voice_latency.svg] [--no-core] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
import json
import logging
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Home Assistant first: it must install its voluptuous shim before anything else.
from homeassistant.components import tts  # noqa: E402, I001
from homeassistant.components.assist_pipeline import (  # noqa: E402
    PipelineEvent,
    PipelineEventType,
    PipelineStage,
)
from homeassistant.components.assist_pipeline.models import Pipeline  # noqa: E402
from homeassistant.components.assist_pipeline.pipeline import (  # noqa: E402
    KEY_ASSIST_PIPELINE,
    PipelineInput,
    PipelineRun,
)
from homeassistant.core import Context, HomeAssistant  # noqa: E402
from homeassistant.helpers import chat_session, entity_registry as er  # noqa: E402
from homeassistant.setup import async_setup_component  # noqa: E402
from pytest_homeassistant_custom_component.common import (  # noqa: E402
    MockConfigEntry,
)
from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.tts import Synthesize  # noqa: E402

from aiohttp import ClientSession, ClientTimeout, TCPConnector  # noqa: E402

from custom_components.local_voice.const import (  # noqa: E402
    CONF_TEMPERATURE,
    DOMAIN,
    SERVICE_ASR,
    SERVICE_TTS,
)
from home import Home, async_setup_home  # noqa: E402
from home_commands import MAX_TOKENS, turn_calls  # noqa: E402
from home_utterances import CONVERSATIONS, Outcome, Turn  # noqa: E402
from satellites import Satellite, async_add_home_satellites  # noqa: E402
from prompt_cache import conversation_agent, core_entry, home_assistant  # noqa: E402
from stt import METADATA  # noqa: E402  (16 kHz, 16-bit mono PCM WAV)
from tests.backends import (  # noqa: E402
    QWEN,
    Backend,
    asr_argv,
    llama_argv,
    piper_argv,
    start,
    tts_argv,
)
from tests.common import llama_entry  # noqa: E402
from tests.conversation_support import RecordingProxy  # noqa: E402

CORE = "core"
LOCAL_VOICE = "local_voice"
RATE = 16000
CHUNK_BYTES = 640  # 20 ms of 16 kHz 16-bit mono, as a satellite sends it
SILENCE_SECONDS = 5.0  # after the speech, at most: the pipeline's VAD ends sooner
WAV_HEADER = 44
# Five sources: four satellites (by area key) and the app (None).
SOURCES = (None, "kitchen", "bedroom", "living_room", "hallway")
# Categories whose judge does not depend on where the command is said from.
ANYWHERE = ("name", "short name", "no area", "question", "all of a kind")
CLAUSE_ENDS = ",.;:!?"
TTS_LANGUAGE = "ja"  # the language of the Kokoro voices in scripts/backends


@dataclass
class Spoken:
    """One command to say: the turn, its source, its speech (16 kHz PCM)."""

    turn: Turn
    source: str | None
    pcm: bytes


@dataclass
class Timeline:
    """When each step of one voice turn happened (monotonic seconds)."""

    started: float = field(default_factory=time.monotonic)
    speech_end: float = 0.0
    vad_end: float | None = None
    transcript: float | None = None
    text: str = ""
    first_token: float | None = None
    to_tts: float | None = None
    first_audio: float | None = None
    last_audio: float | None = None
    answer: str = ""
    failed: bool = False
    error: str | None = None
    ended: float = 0.0
    conversation_id: str | None = None


@dataclass
class Result:
    """One stack's turn: its timeline, what it did, and the floor (local_voice)."""

    stack: str
    spoken: Spoken
    timeline: Timeline
    done: bool
    why: str | None
    rounds: int
    prompt_read: int
    floor: dict[str, float] = field(default_factory=dict)

    @property
    def waited(self) -> float:
        """End of speech to the first audio (or to the turn's end, without any)."""
        t = self.timeline
        start = t.vad_end or t.speech_end or t.started
        end = t.first_audio or t.ended
        return end - start


@dataclass
class Stack:
    """One stack's pipeline, and the proxy in front of its llama-server."""

    label: str
    pipeline: Pipeline
    proxy: RecordingProxy


# --- speech in ----------------------------------------------------------------------


async def synthesize(port: int, text: str) -> tuple[bytes, int]:
    """Return the PCM and sample rate of `text` from a Wyoming TTS server."""
    audio = b""
    rate = RATE
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text).event())
        while (event := await client.read_event()) is not None:
            if AudioStart.is_type(event.type):
                rate = AudioStart.from_event(event).rate
            elif AudioChunk.is_type(event.type):
                audio += AudioChunk.from_event(event).audio
            elif AudioStop.is_type(event.type):
                break
    return audio, rate


def to_16k(pcm: bytes, rate: int) -> bytes:
    """Resample 16-bit mono PCM to 16 kHz (linear: enough for speech recognition)."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    count = round(len(samples) * RATE / rate)
    positions = np.linspace(0, len(samples) - 1, count)
    resampled = np.interp(positions, np.arange(len(samples)), samples)
    return np.clip(resampled, -32768, 32767).astype(np.int16).tobytes()


def pick_turns(count: int) -> list[tuple[Turn, str | None]]:
    """One-turn commands and questions, each with a source; five sources in all."""
    picked: list[tuple[Turn, str | None]] = []
    spread = 0
    for chat in CONVERSATIONS:
        turn = chat.turns[0]
        if len(chat.turns) > 1 or turn.category in ("timer", "open question"):
            continue
        source = chat.source
        if source is None and turn.category in ANYWHERE:
            source = SOURCES[spread % len(SOURCES)]
            spread += 1
        picked.append((turn, source))
    step = max(1, len(picked) // count)
    return picked[::step][:count]


async def speak_all(port: int, turns: list[tuple[Turn, str | None]]) -> list[Spoken]:
    """Each command spoken by Piper, at 16 kHz."""
    spoken = []
    for turn, source in turns:
        pcm, rate = await synthesize(port, turn.text)
        spoken.append(Spoken(turn, source, to_16k(pcm, rate)))
    return spoken


async def microphone(pcm: bytes, timeline: Timeline) -> AsyncIterator[bytes]:
    """Yield the speech in 20 ms chunks at real time, then silence."""
    began = time.monotonic()
    silence = bytes(CHUNK_BYTES)
    chunks = [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]
    chunks += [silence] * int(SILENCE_SECONDS * RATE * 2 / CHUNK_BYTES)
    speech = len(pcm) / (RATE * 2)
    for index, chunk in enumerate(chunks):
        due = began + index * CHUNK_BYTES / (RATE * 2)
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if not timeline.speech_end and index * CHUNK_BYTES >= len(pcm):
            timeline.speech_end = began + speech
        yield chunk


# --- Home Assistant ------------------------------------------------------------------


async def setup_stacks(
    hass: HomeAssistant,
    urls: dict[str, str],
    asr_port: int,
    tts_port: int,
) -> list[Stack]:
    """Both stacks' entries (each llama-server behind a recording proxy), pipelines."""
    proxies = {label: await RecordingProxy(url).start() for label, url in urls.items()}
    entries: list[MockConfigEntry] = []
    if CORE in proxies:
        entries.append(
            core_entry(
                proxies[CORE].url, max_tokens=MAX_TOKENS, temperature=0.0, top_p=1.0
            )
        )
        for port in (asr_port, tts_port):
            wyoming = {"host": "127.0.0.1", "port": port}
            entries.append(MockConfigEntry(domain="wyoming", data=wyoming))
    entries.append(llama_entry(proxies[LOCAL_VOICE].url, {CONF_TEMPERATURE: 0.0}))
    for service, port in ((SERVICE_ASR, asr_port), (SERVICE_TTS, tts_port)):
        data = {"service": service, "host": "127.0.0.1", "port": port}
        entries.append(MockConfigEntry(domain=DOMAIN, data=data))
    for entry in entries:
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id), entry.domain
    # local_voice warms its slot in the background: as long before anyone speaks.
    await hass.async_block_till_done(wait_background_tasks=True)
    stacks = []
    for label, platform, agent in (
        (CORE, "wyoming", "llama_cpp"),
        (LOCAL_VOICE, DOMAIN, DOMAIN),
    ):
        if label in proxies:
            pipeline = await make_pipeline(
                hass, label, platform, conversation_agent(hass, agent)
            )
            stacks.append(Stack(label, pipeline, proxies[label]))
    return stacks


def _entity(hass: HomeAssistant, domain: str, platform: str) -> str:
    return next(
        e.entity_id
        for e in er.async_get(hass).entities.values()
        if e.platform == platform and e.domain == domain
    )


async def make_pipeline(
    hass: HomeAssistant, name: str, platform: str, agent_id: str
) -> Pipeline:
    """A voice pipeline: the platform's STT and TTS, the agent; prefer-local off."""
    store = hass.data[KEY_ASSIST_PIPELINE].pipeline_store
    return await store.async_create_item(
        {
            "conversation_engine": agent_id,
            "conversation_language": "en",
            "language": "en",
            "name": name,
            "stt_engine": _entity(hass, "stt", platform),
            "stt_language": "en",
            "tts_engine": _entity(hass, "tts", platform),
            # The Kokoro voices at hand are Japanese ones; the server reads English
            # text with them in English, for both stacks alike.
            "tts_language": TTS_LANGUAGE,
            "tts_voice": None,
            "wake_word_entity": None,
            "wake_word_id": None,
            "prefer_local_intents": False,
        }
    )


async def read_audio(hass: HomeAssistant, token: str, timeline: Timeline) -> None:
    """Read the answer's audio as a satellite does: from run start, as it comes."""
    stream = tts.async_get_stream(hass, token)
    assert stream is not None, token
    seen = 0
    async for chunk in stream.async_stream_result():
        seen += len(chunk)
        if seen > WAV_HEADER and timeline.first_audio is None:
            timeline.first_audio = time.monotonic()
    timeline.last_audio = time.monotonic()


def on_event(
    hass: HomeAssistant, timeline: Timeline, audio: list[asyncio.Task[None]]
) -> Any:
    """Return the pipeline's event callback, which fills the timeline."""

    def callback(event: PipelineEvent) -> None:
        now, data = time.monotonic(), event.data or {}
        match event.type:
            case PipelineEventType.RUN_START if output := data.get("tts_output"):
                audio.append(
                    hass.async_create_task(read_audio(hass, output["token"], timeline))
                )
            case PipelineEventType.STT_VAD_END:
                timeline.vad_end = now
            case PipelineEventType.STT_END:
                timeline.transcript = now
                timeline.text = data["stt_output"]["text"]
            case PipelineEventType.INTENT_PROGRESS:
                delta = data.get("chat_log_delta") or {}
                if timeline.first_token is None and (
                    delta.get("content") or delta.get("tool_calls")
                ):
                    timeline.first_token = now
                if data.get("tts_start_streaming") and timeline.to_tts is None:
                    timeline.to_tts = now
            case PipelineEventType.INTENT_END:
                timeline.conversation_id = data["intent_output"]["conversation_id"]
                response = data["intent_output"]["response"]
                timeline.answer = response["speech"]["plain"]["speech"]
                timeline.failed = response["response_type"] == "error"
            case PipelineEventType.TTS_START if timeline.to_tts is None:
                timeline.to_tts = now
            case PipelineEventType.ERROR:
                timeline.error = f"{data.get('code')}: {data.get('message')}"

    return callback


async def voice_turn(
    hass: HomeAssistant,
    pipeline: Pipeline,
    pcm: bytes,
    satellite: Satellite | None,
    seconds: float,
) -> Timeline:
    """One voice turn, audio in to audio out, from a satellite or from the app."""
    timeline = Timeline()
    audio: list[asyncio.Task[None]] = []
    callback = on_event(hass, timeline, audio)
    try:
        async with asyncio.timeout(seconds):
            if satellite is not None:
                # The satellite runs its device's pipeline: here the preferred one.
                store = hass.data[KEY_ASSIST_PIPELINE].pipeline_store
                store.async_set_preferred_item(pipeline.id)
                await satellite.async_say(microphone(pcm, timeline), callback)
            else:
                await app_turn(hass, pipeline, microphone(pcm, timeline), callback)
            await asyncio.gather(*audio)
    except TimeoutError:
        timeline.error = f"no answer in {seconds:g} s"
        for task in audio:
            task.cancel()
    timeline.ended = time.monotonic()
    return timeline


async def app_turn(
    hass: HomeAssistant,
    pipeline: Pipeline,
    stream: AsyncIterator[bytes],
    callback: Callable[[PipelineEvent], None],
) -> None:
    """A command spoken into the app: no satellite, no device, a new conversation."""
    with chat_session.async_get_chat_session(hass, None) as session:
        run = PipelineRun(
            hass,
            context=Context(),
            pipeline=pipeline,
            start_stage=PipelineStage.STT,
            end_stage=PipelineStage.TTS,
            event_callback=callback,
            tts_audio_output={tts.ATTR_PREFERRED_FORMAT: "wav"},
        )
        await PipelineInput(
            run=run, session=session, stt_metadata=METADATA, stt_stream=stream
        ).execute(validate=True)


def chat_rounds(proxy: RecordingProxy, since: int) -> list[tuple[bytes, bytes]]:
    """The newest requests and answers, less local_voice's warm-ups (one token
    asked: read while the user speaks, so on no one's wait)."""
    return [
        (body, answer)
        for body, answer in proxy.exchanges[since:]
        if json.loads(body).get("max_tokens") != 1
    ]


def prompt_read(proxy: RecordingProxy, since: int) -> int:
    """Prompt tokens the server read (not from its cache) for the newest rounds."""
    read = 0
    for _, answer in chat_rounds(proxy, since):
        for line in answer.splitlines():
            if line.startswith(b"data: {") and b'"timings"' in line:
                read += json.loads(line[6:]).get("timings", {}).get("prompt_n", 0)
    return read


async def run_turn(
    home: Home,
    satellites: dict[str, Satellite],
    stack: Stack,
    spoken: Spoken,
    seconds: float,
) -> Result:
    """Reset the home, say the command to the stack, judge what it did."""
    await home.reset()
    before = await home.snapshot()
    since = len(stack.proxy.exchanges)
    satellite = satellites.get(spoken.source or "")
    timeline = await voice_turn(
        home.hass, stack.pipeline, spoken.pcm, satellite, seconds
    )
    await home.hass.async_block_till_done()
    outcome = Outcome(
        before=before,
        after=await home.snapshot(),
        answer=timeline.answer,
        rounds=len(turn_calls(home.hass, timeline.conversation_id or "")),
        failed=timeline.failed,
        error=timeline.error,
    )
    why = outcome.error or spoken.turn.judge(outcome)
    return Result(
        stack.label,
        spoken,
        timeline,
        why is None,
        why,
        outcome.rounds,
        prompt_read(stack.proxy, since),
    )


# --- the floor -----------------------------------------------------------------------


async def whisper_alone(port: int, pcm: bytes) -> float:
    """Seconds from audio-stop to the transcript, with a bare Wyoming client."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        for i in range(0, len(pcm), 3200):
            chunk = AudioChunk(rate=RATE, width=2, channels=1, audio=pcm[i : i + 3200])
            await client.write_event(chunk.event())
        stopped = time.monotonic()
        await client.write_event(AudioStop().event())
        while (event := await client.read_event()) is not None:
            if Transcript.is_type(event.type):
                return time.monotonic() - stopped
    raise RuntimeError("the ASR server closed the connection")


async def kokoro_alone(port: int, text: str) -> float:
    """Seconds from the text to Kokoro's first audio, with a bare Wyoming client."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        sent = time.monotonic()
        await client.write_event(Synthesize(text=text).event())
        while (event := await client.read_event()) is not None:
            if AudioChunk.is_type(event.type):
                return time.monotonic() - sent
    raise RuntimeError("the TTS server closed the connection")


async def llama_alone(url: str, bodies: list[bytes]) -> float:
    """Seconds llama-server needs for these requests, replayed with their prompts
    cached: every round whole, the last up to the end of its first clause."""
    total = 0.0
    # llama-server closes the connection after a streamed answer: none is reused.
    connector = TCPConnector(force_close=True)
    async with ClientSession(
        timeout=ClientTimeout(total=600), connector=connector
    ) as session:
        for index, body in enumerate(bodies):
            last = index == len(bodies) - 1
            sent = time.monotonic()
            async with session.post(
                f"{url}/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                text = ""
                async for line in response.content:
                    if not line.startswith(b"data: {"):
                        continue
                    choices = json.loads(line[6:]).get("choices") or [{}]
                    text += (choices[0].get("delta") or {}).get("content") or ""
                    if last and any(mark in text for mark in CLAUSE_ENDS):
                        break
            total += time.monotonic() - sent
    return total


def first_sentence(text: str) -> str:
    """The answer's first sentence: what Kokoro speaks first."""
    for index, char in enumerate(text):
        if char in ".!?" and index > 0:
            return text[: index + 1]
    return text


async def measure_floor(
    result: Result, proxy: RecordingProxy, since: int, ports: dict[str, int], url: str
) -> None:
    """The servers' own time for what this local_voice turn asked of them."""
    bodies = [body for body, _ in chat_rounds(proxy, since)]
    result.floor = {
        "stt": await whisper_alone(ports["asr"], result.spoken.pcm),
        "llm": await llama_alone(url, bodies) if bodies else 0.0,
        "tts": await kokoro_alone(
            ports["tts"], first_sentence(result.timeline.answer) or "OK."
        ),
    }


# --- the report ----------------------------------------------------------------------


def p90(values: list[float]) -> float:
    """The 90th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def stages(result: Result) -> dict[str, float | None]:
    """The stage durations of one turn (None: the turn never got there)."""
    t = result.timeline
    start = t.vad_end or t.speech_end or t.started

    def span(a: float | None, b: float | None) -> float | None:
        return b - a if a is not None and b is not None else None

    return {
        "vad": span(t.speech_end, t.vad_end),
        "stt": span(start, t.transcript),
        "llm": span(t.transcript, t.to_tts),
        "tts": span(t.to_tts, t.first_audio),
        "first token": span(t.transcript, t.first_token),
        "last audio": span(start, t.last_audio),
        "waited": result.waited,
    }


def row(name: str, values: list[float]) -> str:
    """A table row: median, p90, mean."""
    if not values:
        return f"  {name:<24} {'-':>8} {'-':>8} {'-':>8}"
    median, mean = statistics.median(values), statistics.fmean(values)
    return f"  {name:<24} {median:8.2f} {p90(values):8.2f} {mean:8.2f}"


def table(results: list[Result], title: str) -> None:
    """Per stack: each stage's median, p90 and mean, in seconds."""
    print(f"\n{title}")
    for stack in (CORE, LOCAL_VOICE):
        mine = [r for r in results if r.stack == stack]
        if not mine:
            continue
        done = sum(r.done for r in mine)
        rounds = statistics.median(r.rounds for r in mine)
        read = statistics.median(r.prompt_read for r in mine)
        print(
            f"{stack}: done {done}/{len(mine)}, tool rounds median {rounds:g},"
            f" prompt tokens read median {read:g}"
        )
        print(f"  {'stage (s)':<24} {'median':>8} {'p90':>8} {'mean':>8}")
        for stage in (
            "vad",
            "stt",
            "first token",
            "llm",
            "tts",
            "waited",
            "last audio",
        ):
            values = [v for r in mine if (v := stages(r)[stage]) is not None]
            print(row(_STAGE_NAMES[stage], values))
    floors = [r.floor for r in results if r.floor]
    if floors:
        print("floor (the servers alone, local_voice's requests):")
        for part in ("stt", "llm", "tts"):
            print(row(f"{part} alone", [f[part] for f in floors]))
        print(row("floor", [sum(f.values()) for f in floors]))


_STAGE_NAMES = {
    "vad": "speech end → VAD end",
    "stt": "VAD end → transcript",
    "first token": "transcript → 1st token",
    "llm": "transcript → text to TTS",
    "tts": "text to TTS → 1st audio",
    "waited": "VAD end → 1st audio",
    "last audio": "VAD end → last audio",
}


def chart(results: list[Result], path: Path) -> None:
    """Write the stages' medians, stacked, per stack and for the floor (SVG)."""
    bars: list[tuple[str, list[float]]] = []
    for stack in (CORE, LOCAL_VOICE):
        mine = [stages(r) for r in results if r.stack == stack]
        if mine:
            bars.append(
                (stack, [_median([s[k] for s in mine]) for k in ("stt", "llm", "tts")])
            )
    if floors := [r.floor for r in results if r.floor]:
        bars.append(
            ("floor", [_median([f[k] for f in floors]) for k in ("stt", "llm", "tts")])
        )
    longest = max((sum(parts) for _, parts in bars), default=1.0) or 1.0
    scale, left, height = 560 / longest, 110, 28
    colors = ("#4e79a7", "#f28e2b", "#59a14f")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="720" '
        f'height="{60 + height * 2 * len(bars)}" font-family="sans-serif" '
        'font-size="13">',
        '<text x="10" y="20">End of speech to first audio, medians (s): '
        "speech-to-text, model to first text for TTS, TTS to first audio</text>",
    ]
    for index, (label, parts) in enumerate(bars):
        y = 40 + index * height * 2
        out.append(f'<text x="10" y="{y + 19}">{label}</text>')
        x = float(left)
        for part, color in zip(parts, colors, strict=True):
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{part * scale:.1f}" '
                f'height="{height}" fill="{color}"/>'
            )
            x += part * scale
        out.append(f'<text x="{x + 6:.1f}" y="{y + 19}">{sum(parts):.2f} s</text>')
    out.append("</svg>\n")
    path.write_text("\n".join(out), encoding="utf-8")


def _median(values: list[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else 0.0


def last_line(results: list[Result]) -> str:
    """`voice_latency_ratio=… floor_ratio=…`, both over all turns."""
    ours = [r.waited for r in results if r.stack == LOCAL_VOICE]
    core = [r.waited for r in results if r.stack == CORE]
    floors = [sum(r.floor.values()) for r in results if r.floor]
    ratio = statistics.fmean(core) / statistics.fmean(ours) if core else float("nan")
    floor = statistics.median(ours) / statistics.median(floors) if floors else 0.0
    return f"voice_latency_ratio={ratio:.2f} floor_ratio={floor:.2f}"


# --- the run -------------------------------------------------------------------------


async def run_all(
    servers: dict[str, Backend], spoken_port: int, args: argparse.Namespace
) -> list[Result]:
    """Set up Home Assistant, the home and the stacks; say every command to each."""
    ports = {"asr": servers["asr"].port, "tts": servers["tts"].port}
    turns = pick_turns(args.turns)
    spoken = await speak_all(spoken_port, turns)
    seconds = sum(len(s.pcm) for s in spoken) / (RATE * 2)
    print(f"{len(spoken)} commands spoken by Piper: {seconds:.0f} s of speech")
    results: list[Result] = []
    async with home_assistant() as hass:
        home = await async_setup_home(hass)
        assert await async_setup_component(hass, "assist_pipeline", {})
        urls = {
            label: servers[label].url
            for label in (CORE, LOCAL_VOICE)
            if label in servers
        }
        stacks = await setup_stacks(hass, urls, ports["asr"], ports["tts"])
        satellites = await async_add_home_satellites(hass, home)
        for stack in stacks:  # a first turn each, not counted: the servers' first run
            warm_up = await run_turn(
                home, satellites, stack, spoken[0], args.turn_timeout
            )
            print(f"(warm-up) {progress_line(warm_up)}", flush=True)
        for index, command in enumerate(spoken):
            for stack in stacks if index % 2 else reversed(stacks):
                since = len(stack.proxy.exchanges)
                result = await run_turn(
                    home, satellites, stack, command, args.turn_timeout
                )
                if stack.label == LOCAL_VOICE:
                    await measure_floor(
                        result, stack.proxy, since, ports, servers[LOCAL_VOICE].url
                    )
                results.append(result)
                print(progress_line(result), flush=True)
        for entry in hass.config_entries.async_entries():
            await hass.config_entries.async_unload(entry.entry_id)
        for stack in stacks:
            await stack.proxy.stop()
    return results


def progress_line(result: Result) -> str:
    """One turn, as it finishes."""
    t = result.timeline
    verdict = "done" if result.done else f"not done ({result.why})"
    floor = f", floor {sum(result.floor.values()):.2f} s" if result.floor else ""
    return (
        f"- {result.stack}: {result.spoken.turn.text!r}"
        f" ({result.spoken.source or 'app'})"
        f" heard {t.text!r}: waited {result.waited:.2f} s{floor}, {verdict},"
        f" {result.rounds} rounds: {t.answer[:60]!r}"
    )


def main() -> None:
    """Start the servers, run the turns, print the table and the last line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--turn-timeout", type=float, default=120.0)
    parser.add_argument(
        "--chart", type=Path, default=ROOT / "benchmarks/voice_latency.svg"
    )
    parser.add_argument("--no-core", action="store_true", help="local_voice alone")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as temporary:
        logs = args.logs or Path(temporary)
        logs.mkdir(parents=True, exist_ok=True)
        servers: dict[str, Backend] = {}
        try:
            servers["asr"] = start("whisper", asr_argv(), "tcp", logs)
            servers["tts"] = start("kokoro", tts_argv(), "tcp", logs, timeout=300)
            servers["piper"] = start("piper", piper_argv(logs), "tcp", logs)
            argv = llama_argv(QWEN, ctx=8192, slots=1)
            for label in (LOCAL_VOICE,) if args.no_core else (CORE, LOCAL_VOICE):
                servers[label] = start(f"llama-{label}", argv, "http", logs)
            results = asyncio.run(run_all(servers, servers["piper"].port, args))
        finally:
            for server in servers.values():
                server.stop()
    print(f"\n{len(results)} turns in {time.monotonic() - began:.0f} s")
    table(results, "All turns")
    both = {r.spoken.turn.text for r in results if r.done}
    both = {
        text
        for text in both
        if all(r.done for r in results if r.spoken.turn.text == text)
    }
    table(
        [r for r in results if r.spoken.turn.text in both], "Turns both stacks got done"
    )
    chart(results, args.chart)
    print(f"chart: {args.chart}")
    print(last_line(results))


if __name__ == "__main__":
    main()
