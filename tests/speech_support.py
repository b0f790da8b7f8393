"""Helpers for the speech tests: test audio, a recording relay, a faulty server.

The relay sits on loopback between local_voice and a REAL Wyoming server and
passes every byte through unchanged; it only notes which events went which way
and when, and which connections are still open. The faulty server exists only
for protocol faults no real server produces (garbage, early close, silence).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
from dataclasses import dataclass, field
import difflib
import json
from pathlib import Path
import re
import socket
import time
from typing import Self
import wave

from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    Describe,
    Info,
    TtsProgram,
    TtsVoice,
)

from custom_components.local_voice.wyoming_client.audio import AudioFormat, PcmConverter
from homeassistant.components import stt

AUDIO_DIR = Path(__file__).parent / "fixtures" / "audio"
KITCHEN_WAV = AUDIO_DIR / "turn_on_kitchen_light.wav"


def read_wav(path: Path) -> tuple[AudioFormat, bytes]:
    """Return a WAV file's format and PCM."""
    with wave.open(str(path), "rb") as wav:
        audio_format = AudioFormat(
            wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        )
        return audio_format, wav.readframes(wav.getnframes())


def parse_wav(data: bytes) -> tuple[AudioFormat, bytes]:
    """Return the format and PCM of WAV bytes (a streamed header says 0 frames)."""
    assert data[:4] == b"RIFF", data[:16]
    assert data[8:12] == b"WAVE"
    position = 12
    audio_format: AudioFormat | None = None
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        body = data[position + 8 :]
        if chunk_id == b"fmt ":
            channels = int.from_bytes(body[2:4], "little")
            rate = int.from_bytes(body[4:8], "little")
            width = int.from_bytes(body[14:16], "little") // 8
            audio_format = AudioFormat(rate, width, channels)
        elif chunk_id == b"data":
            assert audio_format is not None
            return audio_format, body  # the rest, whatever the header says
        position += 8 + size + (size & 1)
    raise AssertionError("no data chunk")


def convert(pcm: bytes, source: AudioFormat, target: AudioFormat) -> bytes:
    """Convert PCM between formats."""
    return PcmConverter(source, target).convert(pcm)


def speech_metadata(language: str = "en") -> stt.SpeechMetadata:
    """Metadata of 16 kHz 16-bit mono PCM WAV speech, as a satellite sends it."""
    return stt.SpeechMetadata(
        language=language,
        format=stt.AudioFormats.WAV,
        codec=stt.AudioCodecs.PCM,
        bit_rate=stt.AudioBitRates.BITRATE_16,
        sample_rate=stt.AudioSampleRates.SAMPLERATE_16000,
        channel=stt.AudioChannels.CHANNEL_MONO,
    )


def normalize(text: str) -> str:
    """Lower-case words only (in any alphabet), for comparing transcripts."""
    return " ".join(re.findall(r"[^\W_]+(?:'[^\W_]+)*", text.lower()))


def assert_heard(
    text: str | None, expected: str, *, min_ratio: float, landmarks: tuple[str, ...]
) -> None:
    """Check a transcript of degraded or synthetic audio.

    Whisper tiny.en hears such audio slightly differently from one CPU to the
    next (its thread count follows the cores), so a word or two may differ.
    Most words must match in order, and every landmark must be there in order:
    audio that was cut, reordered or garbled fails both.
    """
    assert text is not None
    heard = normalize(text)
    ratio = difflib.SequenceMatcher(None, normalize(expected).split(), heard.split())
    assert ratio.ratio() >= min_ratio, heard
    positions = [heard.find(words) for words in landmarks]
    assert -1 not in positions, heard
    assert positions == sorted(positions), heard


async def chunked(data: bytes, size: int = 3200) -> AsyncIterator[bytes]:
    """Yield audio in chunks, as a satellite would."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


def token_deltas(text: str) -> list[str]:
    """Split text into LLM-like deltas: words with their leading space."""
    return re.findall(r"\s*\S+", text)


@dataclass
class Seen:
    """One event that went through the relay."""

    at: float
    connection: int
    upstream: bool
    type: str
    data: dict[str, object]


@dataclass(kw_only=True)
class LoopbackServer:
    """A server on a free loopback port whose connections stop with it."""

    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Self:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and drop every connection still open."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raise NotImplementedError


@dataclass
class Relay(LoopbackServer):
    """A transparent loopback relay in front of a real Wyoming server."""

    target_port: int
    events: list[Seen] = field(default_factory=list)
    open_connections: int = 0
    connections: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def types(self, upstream: bool, connection: int | None = None) -> list[str]:
        """Event types seen one way (on one connection)."""
        return [
            seen.type
            for seen in self.events
            if seen.upstream == upstream
            and (connection is None or seen.connection == connection)
            and seen.type != "describe"
            and seen.type != "info"
        ]

    def request_connections(self) -> list[int]:
        """Connections that carried a request (not a describe), in order."""
        first: dict[int, str] = {}
        for seen in self.events:
            if seen.upstream:
                first.setdefault(seen.connection, seen.type)
        return [number for number, kind in first.items() if kind != "describe"]

    def seen(self, event_type: str) -> list[Seen]:
        """Every event of a type."""
        return [seen for seen in self.events if seen.type == event_type]

    async def wait_for(self, check: Callable[[], bool], limit: float = 30) -> None:
        """Wait until check() holds; fail after `limit` seconds."""
        async with asyncio.timeout(limit):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        number = self.connections
        self.open_connections += 1
        self._notify()
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
            pipes = (
                asyncio.create_task(
                    self._pipe(client_reader, server_writer, number, upstream=True)
                ),
                asyncio.create_task(
                    self._pipe(server_reader, client_writer, number, upstream=False)
                ),
            )
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                server_writer.close()
        except OSError:
            pass
        finally:
            client_writer.close()
            self.open_connections -= 1
            self._notify()
            self._tasks.discard(task)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                header = json.loads(line)
                rest = await reader.readexactly(
                    int(header.get("data_length") or 0)
                    + int(header.get("payload_length") or 0)
                )
                data = dict(header.get("data") or {})
                if header.get("data_length"):
                    data.update(json.loads(rest[: int(header["data_length"])].decode()))
                self.events.append(
                    Seen(time.monotonic(), number, upstream, header["type"], data)
                )
                self._notify()
                writer.write(line + rest)
                await writer.drain()

    def _notify(self) -> None:
        self.changed.set()


def tts_info(streaming: bool = True) -> Info:
    """Info of a fake TTS server with one voice."""
    attribution = Attribution(name="test", url="")
    return Info(
        tts=[
            TtsProgram(
                name="faulty",
                attribution=attribution,
                installed=True,
                description="faulty",
                version="1",
                voices=[
                    TtsVoice(
                        name="en_US-fake",
                        attribution=attribution,
                        installed=True,
                        description="fake",
                        version="1",
                        languages=["en_US"],
                    )
                ],
                supports_synthesize_streaming=streaming,
            )
        ]
    )


def asr_info() -> Info:
    """Info of a fake ASR server with one English model."""
    attribution = Attribution(name="test", url="")
    return Info(
        asr=[
            AsrProgram(
                name="faulty",
                attribution=attribution,
                installed=True,
                description="faulty",
                version="1",
                models=[
                    AsrModel(
                        name="fake",
                        attribution=attribution,
                        installed=True,
                        description="fake",
                        version="1",
                        languages=["en"],
                    )
                ],
            )
        ]
    )


#: Event headers that announce more than the client reads (1 GiB), then nothing.
HUGE_ANNOUNCEMENTS = {
    "huge-payload": {
        "type": "audio-chunk",
        "data": {"rate": 16000, "width": 2, "channels": 1},
        "payload_length": 1 << 30,
    },
    "huge-data": {"type": "audio-start", "data_length": 1 << 30},
}
#: Audio formats (rate, width, channels) no player can take.
BAD_FORMATS = {
    "zero-rate": (0, 2, 1),
    "zero-width": (22050, 0, 1),
    "zero-channels": (22050, 2, 0),
}


@dataclass
class FaultyServer(LoopbackServer):
    """A loopback Wyoming server that describes itself, then misbehaves.

    fault: "garbage" (answers with a line that is not an event), "close"
    (closes the connection without an answer), "silent" (reads, never answers),
    "bad-event" (an audio chunk without width and channels), "stop-reading"
    (never reads again; its receive buffer is tiny, so the client's writes back
    up), "long-header" (a header line that never ends), one of
    HUGE_ANNOUNCEMENTS (then waits, reading nothing more) or of BAD_FORMATS
    (audio-start and a chunk in that format). `dropped` is set when the client
    closes the connection after a fault.
    """

    info: Info
    fault: str
    requests: int = 0
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Self:
        """Listen with a small receive buffer (no autotuning) on loopback."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._handle, sock=sock)
        self.port = sock.getsockname()[1]
        return self

    async def _misbehave(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer a request with the hostile faults; wait for the client to go."""
        if self.fault == "stop-reading":
            await asyncio.Event().wait()  # until the server stops
        if self.fault in BAD_FORMATS:
            rate, width, channels = BAD_FORMATS[self.fault]
            await async_write_event(
                Event(
                    "audio-start", {"rate": rate, "width": width, "channels": channels}
                ),
                writer,
            )
            await async_write_event(
                Event(
                    "audio-chunk",
                    {"rate": rate, "width": width, "channels": channels},
                    bytes(4096),
                ),
                writer,
            )
            return
        if self.fault == "long-header":
            writer.write(b'{"type": "' + b"x" * (128 * 1024))
        else:
            writer.write(json.dumps(HUGE_ANNOUNCEMENTS[self.fault]).encode() + b"\n")
        await writer.drain()
        with contextlib.suppress(ConnectionResetError):
            while await reader.read(65536):
                pass
        self.dropped.set()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        answered = False
        try:
            while (event := await async_read_event(reader)) is not None:
                if Describe.is_type(event.type):
                    await async_write_event(self.info.event(), writer)
                    continue
                if answered or event.type not in (
                    "transcribe",
                    "synthesize",
                    "synthesize-start",
                ):
                    continue
                answered = True
                self.requests += 1
                if self.fault == "garbage":
                    writer.write(b"this is not a wyoming event\n")
                    await writer.drain()
                elif self.fault == "bad-event":
                    await async_write_event(Event("audio-chunk", {"rate": 1}), writer)
                elif self.fault == "close":
                    break
                elif self.fault != "silent":
                    await self._misbehave(reader, writer)
        except OSError, asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
            self._tasks.discard(task)
