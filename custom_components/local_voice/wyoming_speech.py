"""Streaming speech on a Wyoming server: transcription and synthesis.

Home Assistant-free protocol code under the STT and TTS entities: audio goes to
the ASR server as it arrives, text goes to the TTS server as it arrives, audio
comes back as it is produced. Every failure is a SpeechError whose message
names the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable
import contextlib
from dataclasses import dataclass, field
import json
import time
from typing import Literal

import audioop
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .const import (
    LOGGER,
    REQUEST_TIMEOUT_SECONDS,
    SPEECH_CHANNELS,
    SPEECH_RATE,
    SPEECH_WIDTH,
    STT_TIMEOUT_SECONDS,
    TTS_AUDIO_TIMEOUT_SECONDS,
    TTS_TEXT_TIMEOUT_SECONDS,
)
from .speech_text import SentenceSplitter, SpeechFilter
from .wyoming_service import WyomingError, WyomingServer


class SpeechError(WyomingError):
    """A speech request failed; the message names the server."""


class ServerUnreachable(SpeechError):
    """The server could not be reached: the entity should go unavailable."""


class ServerErrorEvent(SpeechError):
    """The server answered with a Wyoming error event."""


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """PCM audio format."""

    rate: int
    width: int
    channels: int

    @property
    def bytes_per_second(self) -> int:
        """Bytes in one second of audio."""
        return self.rate * self.width * self.channels


SPEECH_FORMAT = AudioFormat(SPEECH_RATE, SPEECH_WIDTH, SPEECH_CHANNELS)


class Connection:
    """One TCP connection to a Wyoming server (one request).

    Events are built and written with the wyoming package; reading is done here
    because wyoming's async_read_event answers None both for a closed connection
    and for a malformed event, and the user should learn which one happened.
    """

    def __init__(self, server: WyomingServer) -> None:
        """Remember the server; connect with open()."""
        self.server = server
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        """Connect, or raise ServerUnreachable."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                self._reader, self._writer = await asyncio.open_connection(
                    self.server.host, self.server.port
                )
        except (OSError, TimeoutError) as err:
            raise ServerUnreachable(f"{self.server} is unreachable: {err!r}") from err

    async def write(self, event: Event) -> None:
        """Send one event."""
        if self._writer is None or self._writer.is_closing():
            raise SpeechError(f"{self.server} closed the connection")
        try:
            await async_write_event(event, self._writer)
        except OSError as err:
            raise SpeechError(f"{self.server} closed the connection: {err!r}") from err

    async def read(self) -> Event | None:
        """Read one event; None when the server closed the connection."""
        reader = self._reader
        if reader is None:
            return None
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as err:
            raise SpeechError(f"{self.server} sent an oversized event header") from err
        except OSError:
            return None
        try:
            header = json.loads(line)
            event_type = header["type"]
            data = header.get("data") or {}
            if not isinstance(event_type, str) or not isinstance(data, dict):
                raise TypeError("type must be a string and data an object")  # noqa: TRY301
            data_length = int(header.get("data_length") or 0)
            payload_length = int(header.get("payload_length") or 0)
            if data_length > 0:
                extra = json.loads(await reader.readexactly(data_length))
                if not isinstance(extra, dict):
                    raise TypeError("extra data must be an object")  # noqa: TRY301
                data.update(extra)
            payload = (
                await reader.readexactly(payload_length) if payload_length else None
            )
        except asyncio.IncompleteReadError:
            return None
        except (ValueError, KeyError, TypeError) as err:
            raise SpeechError(
                f"{self.server} sent something that is not a Wyoming event"
                f" ({line[:80]!r}): {err}"
            ) from err
        return Event(type=event_type, data=data, payload=payload)

    def abort(self) -> None:
        """Drop the connection now (cancellation); safe to call twice."""
        if self._writer is not None:
            self._writer.transport.abort()

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                await writer.wait_closed()


def _error_message(server: WyomingServer, event: Event) -> str:
    error = Error.from_event(event)
    return f"{server} answered with an error: {error.text} ({error.code or 'no code'})"


def _parse[T](server: WyomingServer, parse: type[T], event: Event) -> T:
    """Parse a known event; a malformed one is a SpeechError."""
    try:
        return parse.from_event(event)  # type: ignore[attr-defined,no-any-return]
    except (KeyError, TypeError, ValueError) as err:
        raise SpeechError(f"{server} sent a malformed {event.type} event") from err


# --------------------------------------------------------------------------- STT


class PcmConverter:
    """Convert a raw PCM byte stream (any chunking) to another format.

    8-bit PCM is unsigned (as in WAV files); wider samples are signed.
    """

    def __init__(self, source: AudioFormat, target: AudioFormat) -> None:
        """Convert from source to target; frames may straddle chunks."""
        if source.channels not in (1, 2) or target.channels not in (1, 2):
            raise ValueError("only mono and stereo audio can be converted")
        self.source = source
        self.target = target
        self._frame = source.width * source.channels
        self._rest = b""
        self._ratecv_state: tuple[int, tuple[tuple[int, int], ...]] | None = None

    def convert(self, data: bytes) -> bytes:
        """Convert whole frames; keep a partial frame for the next call."""
        data = self._rest + data
        whole = len(data) - len(data) % self._frame
        data, self._rest = data[:whole], data[whole:]
        source, target = self.source, self.target
        if not data or source == target:
            return data
        width = source.width
        if width == 1:
            data = audioop.bias(data, 1, -128)  # unsigned to signed
        if source.channels == 2 and target.channels == 1:
            data = audioop.tomono(data, width, 0.5, 0.5)
        elif source.channels == 1 and target.channels == 2:
            data = audioop.tostereo(data, width, 1, 1)
        if source.rate != target.rate:
            data, self._ratecv_state = audioop.ratecv(
                data,
                width,
                target.channels,
                source.rate,
                target.rate,
                self._ratecv_state,
            )
        if target.width != width:
            data = audioop.lin2lin(data, width, target.width)
        if target.width == 1:
            data = audioop.bias(data, 1, 128)  # signed to unsigned
        return data


def _strip_wav_header(data: bytes) -> tuple[bytes, bool]:
    """Drop a RIFF/WAVE header in front of PCM; (data, complete header seen)."""
    if not data.startswith(b"RIFF") or data[8:12] != b"WAVE":
        return data, True
    position = 12
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        if chunk_id == b"data":
            return data[position + 8 :], True
        position += 8 + size + (size & 1)
    return data, False


@dataclass(slots=True)
class Transcription:
    """A transcript and how long it took."""

    text: str
    language: str | None
    audio_seconds: float
    stt_seconds: float
    """From the end of audio (audio-stop sent) to the transcript."""


async def async_transcribe(
    server: WyomingServer,
    stream: AsyncIterable[bytes],
    audio_format: AudioFormat,
    language: str | None,
    *,
    transcript_timeout: float = STT_TIMEOUT_SECONDS,
) -> Transcription:
    """Stream audio to the ASR server as it arrives; return its transcript."""
    connection = Connection(server)
    await connection.open()
    converter = PcmConverter(audio_format, SPEECH_FORMAT)
    audio_bytes = 0
    audio_stopped: float | None = None

    async def upload() -> None:
        nonlocal audio_bytes, audio_stopped
        iterator = aiter(stream)
        header_pending = b""
        header_done = False
        try:
            async for received in iterator:
                data = received
                if not header_done:
                    data, header_done = _strip_wav_header(header_pending + data)
                    if not header_done:
                        header_pending = data
                        if len(header_pending) < 4096:
                            continue
                        header_done = True  # not a header we understand: audio
                pcm = converter.convert(data)
                if not pcm:
                    continue
                audio_bytes += len(pcm)
                await connection.write(
                    AudioChunk(
                        rate=SPEECH_RATE,
                        width=SPEECH_WIDTH,
                        channels=SPEECH_CHANNELS,
                        audio=pcm,
                    ).event()
                )
            await connection.write(AudioStop().event())
            audio_stopped = time.monotonic()
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def receive() -> Transcript:
        while True:
            event = await connection.read()
            if event is None:
                raise SpeechError(
                    f"{server} closed the connection before the transcript"
                )
            if Error.is_type(event.type):
                raise ServerErrorEvent(_error_message(server, event))
            if Transcript.is_type(event.type):
                return _parse(server, Transcript, event)

    try:
        await connection.write(Transcribe(language=language).event())
        await connection.write(
            AudioStart(
                rate=SPEECH_RATE, width=SPEECH_WIDTH, channels=SPEECH_CHANNELS
            ).event()
        )
        upload_task = asyncio.create_task(upload(), name="local_voice stt upload")
        receive_task = asyncio.create_task(receive(), name="local_voice stt receive")
        try:
            await asyncio.wait(
                (upload_task, receive_task), return_when=asyncio.FIRST_COMPLETED
            )
            if not receive_task.done() and upload_task.exception() is not None:
                # The server's own answer (an error event) explains more.
                await asyncio.wait((receive_task,), timeout=1)
                if not receive_task.done():
                    upload_task.result()
            try:
                async with asyncio.timeout(transcript_timeout):
                    transcript = await receive_task
            except TimeoutError as err:
                raise SpeechError(
                    f"{server} sent no transcript within {transcript_timeout} s"
                    " after the audio"
                ) from err
        finally:
            for task in (upload_task, receive_task):
                task.cancel()
            await asyncio.gather(upload_task, receive_task, return_exceptions=True)
    finally:
        await connection.close()
    end = time.monotonic()
    return Transcription(
        text=transcript.text,
        language=transcript.language,
        audio_seconds=audio_bytes / SPEECH_FORMAT.bytes_per_second,
        stt_seconds=end - audio_stopped if audio_stopped is not None else 0.0,
    )


# --------------------------------------------------------------------------- TTS

type SynthesisMode = Literal["stream", "sentences", "single"]


class _Stopped(Exception):
    """The synthesis was cancelled: end the audio quietly."""


@dataclass(slots=True)
class SynthesisStats:
    """What one synthesis took; the entity keeps these for diagnostics."""

    mode: SynthesisMode
    started: float = field(default_factory=time.monotonic)
    first_audio: float | None = None
    text_done: float | None = None
    finished: float | None = None
    audio_bytes: int = 0
    audio_format: AudioFormat | None = None
    characters: int = 0
    requests: int = 0
    voice_fallback: bool = False
    outcome: str = "running"

    def as_dict(self) -> dict[str, object]:
        """Figures in seconds, rounded, for diagnostics."""

        def since_start(moment: float | None) -> float | None:
            return None if moment is None else round(moment - self.started, 3)

        audio_seconds = 0.0
        if self.audio_format is not None:
            audio_seconds = self.audio_bytes / self.audio_format.bytes_per_second
        return {
            "mode": self.mode,
            "first_audio_seconds": since_start(self.first_audio),
            "text_seconds": since_start(self.text_done),
            "total_seconds": since_start(self.finished),
            "audio_seconds": round(audio_seconds, 3),
            "characters": self.characters,
            "server_requests": self.requests,
            "voice_fallback": self.voice_fallback,
            "outcome": self.outcome,
        }


class Synthesis:
    """One synthesis: text in as it comes, audio out as it is produced.

    mode "stream": one connection, synthesize-start, a synthesize-chunk per
    piece of filtered text, synthesize-stop (the server streams text).
    mode "sentences": one synthesize request per sentence, in order, as soon
    as each sentence is complete (the server cannot stream text).
    mode "single": one synthesize request for the whole text.

    A voice the server refuses before any audio is replaced by the server's
    default voice. cancel() stops at once: the connection is dropped and the
    rest of the audio is never produced.
    """

    def __init__(
        self,
        server: WyomingServer,
        text: AsyncIterable[str],
        mode: SynthesisMode,
        *,
        voice: SynthesizeVoice | None = None,
        text_timeout: float = TTS_TEXT_TIMEOUT_SECONDS,
        audio_timeout: float = TTS_AUDIO_TIMEOUT_SECONDS,
    ) -> None:
        """Prepare; nothing starts until audio() is iterated."""
        self.server = server
        self.mode = mode
        self.voice = voice
        self.stats = SynthesisStats(mode)
        self._text = text
        self._text_timeout = text_timeout
        self._audio_timeout = audio_timeout
        self._pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection: Connection | None = None
        self._converter: PcmConverter | None = None
        self._started = False

    @property
    def started(self) -> bool:
        """True once audio() was iterated."""
        return self._started

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._stop.is_set()

    def cancel(self) -> None:
        """Stop now: drop the connection; audio() ends without the rest."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._connection is not None:
            self._connection.abort()

    async def audio(self) -> AsyncGenerator[AudioChunk]:
        """Yield the audio in one format (the first one the server sends)."""
        self._started = True
        self._spawn(self._read_text(), "tts text")
        try:
            source = self._stream() if self.mode == "stream" else self._sentences()
            async with contextlib.aclosing(source) as chunks:
                async for chunk in chunks:
                    yield self._account(chunk)
            self.stats.outcome = "cancelled" if self.cancelled else "done"
        except _Stopped:
            self.stats.outcome = "cancelled"
        except GeneratorExit, asyncio.CancelledError:
            self.stats.outcome = "cancelled"
            raise
        except BaseException:
            self.stats.outcome = "error"
            raise
        finally:
            self.stats.finished = time.monotonic()
            await self._cleanup()

    def _account(self, chunk: AudioChunk) -> AudioChunk:
        """Count the audio, in the format of the first chunk."""
        chunk_format = AudioFormat(chunk.rate, chunk.width, chunk.channels)
        if self.stats.audio_format is None:
            self.stats.audio_format = chunk_format
            self.stats.first_audio = time.monotonic()
        elif chunk_format != self.stats.audio_format:
            if self._converter is None or self._converter.source != chunk_format:
                self._converter = PcmConverter(chunk_format, self.stats.audio_format)
            target = self.stats.audio_format
            chunk = AudioChunk(
                target.rate,
                target.width,
                target.channels,
                self._converter.convert(chunk.audio),
            )
        self.stats.audio_bytes += len(chunk.audio)
        return chunk

    # Text side ---------------------------------------------------------------

    async def _read_text(self) -> None:
        """Filter the incoming text into pieces (stream) or sentences (others)."""
        speech_filter = SpeechFilter()
        splitter = SentenceSplitter() if self.mode == "sentences" else None
        whole: list[str] = []

        def put(text: str) -> None:
            if not text:
                return
            self.stats.characters += len(text)
            if self.mode == "single":
                whole.append(text)
            elif splitter is None:
                self._pieces.put_nowait(text)
            else:
                for sentence in splitter.feed(text):
                    self._pieces.put_nowait(sentence)

        iterator = aiter(self._text)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._text_timeout):
                        delta = await anext(iterator)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    LOGGER.warning(
                        "No text for %s s while speaking on %s: saying what came",
                        self._text_timeout,
                        self.server,
                    )
                    break
                put(speech_filter.feed(delta))
            put(speech_filter.finish())
            if splitter is not None:
                for sentence in splitter.finish():
                    self._pieces.put_nowait(sentence)
            if whole:
                self._pieces.put_nowait("".join(whole).strip())
        finally:
            self.stats.text_done = time.monotonic()
            self._pieces.put_nowait(None)

    # Server side: streaming ------------------------------------------------------

    async def _stream(self) -> AsyncGenerator[AudioChunk]:
        sent: list[str] = []
        voice = self.voice
        while True:
            connection = await self._connect()
            writer = self._spawn(
                self._write_stream(connection, voice, sent), "tts write"
            )
            got_audio = False
            try:
                async with contextlib.aclosing(
                    self._read_audio(connection, writer, stream=True)
                ) as chunks:
                    async for chunk in chunks:
                        got_audio = True
                        yield chunk
            except ServerErrorEvent as err:
                self._fall_back_to_default_voice(err, voice, got_audio)
                voice = None
            else:
                return
            finally:
                writer.cancel()
                await self._drop(connection)

    def _fall_back_to_default_voice(
        self, err: ServerErrorEvent, voice: SynthesizeVoice | None, got_audio: bool
    ) -> None:
        """Re-raise the error, unless it refused the chosen voice before any audio.

        Then the caller retries with the server's default voice (a voice the server
        lists but cannot load, as Piper does for voices it would download).
        """
        if got_audio or voice is None:
            raise err
        LOGGER.warning(
            "%s; speaking with the server's default voice instead of %s",
            err,
            voice.name,
        )
        self.stats.voice_fallback = True

    async def _write_stream(
        self, connection: Connection, voice: SynthesizeVoice | None, sent: list[str]
    ) -> None:
        """Send the text as it comes (sent pieces are replayed after a retry)."""
        await connection.write(SynthesizeStart(voice=voice).event())
        for earlier in list(sent):
            await connection.write(SynthesizeChunk(text=earlier).event())
        while (piece := await self._pieces.get()) is not None:
            sent.append(piece)
            await connection.write(SynthesizeChunk(text=piece).event())
        self._pieces.put_nowait(None)  # a retry reads the end again
        # The whole text again, for servers that only understand synthesize;
        # streaming servers ignore it inside a stream.
        await connection.write(Synthesize(text="".join(sent), voice=voice).event())
        await connection.write(SynthesizeStop().event())

    # Server side: one request per sentence (or for the whole text) ------------

    async def _sentences(self) -> AsyncGenerator[AudioChunk]:
        voice = self.voice
        while (sentence := await self._wait(self._pieces.get())) is not None:
            while True:
                connection = await self._connect()
                got_audio = False
                try:
                    await connection.write(
                        Synthesize(text=sentence, voice=voice).event()
                    )
                    async with contextlib.aclosing(
                        self._read_audio(connection, None, stream=False)
                    ) as chunks:
                        async for chunk in chunks:
                            got_audio = True
                            yield chunk
                    break
                except ServerErrorEvent as err:
                    self._fall_back_to_default_voice(err, voice, got_audio)
                    voice = None
                finally:
                    await self._drop(connection)

    # Shared plumbing ----------------------------------------------------------

    async def _connect(self) -> Connection:
        if self.cancelled:
            raise _Stopped
        connection = Connection(self.server)
        self._connection = connection
        await self._wait(connection.open())
        self.stats.requests += 1
        return connection

    async def _drop(self, connection: Connection) -> None:
        if self._connection is connection:
            self._connection = None
        await connection.close()

    async def _read_audio(
        self, connection: Connection, writer: asyncio.Task[None] | None, stream: bool
    ) -> AsyncGenerator[AudioChunk]:
        """Yield audio chunks until synthesize-stopped (stream) or audio-stop."""
        end_type = SynthesizeStopped if stream else AudioStop
        while True:
            event = await self._next_event(connection, writer)
            if AudioChunk.is_type(event.type):
                chunk = _parse(self.server, AudioChunk, event)
                if chunk.audio:
                    yield chunk
            elif end_type.is_type(event.type):
                return

    async def _next_event(
        self, connection: Connection, writer: asyncio.Task[None] | None
    ) -> Event:
        """Read the next event; the audio timeout runs once all text was sent."""
        read = asyncio.ensure_future(connection.read())
        try:
            while not (
                await self._wait(asyncio.wait((read,), timeout=self._audio_timeout))
            )[0]:
                if writer is None or writer.done():
                    raise SpeechError(
                        f"{self.server} sent no audio for {self._audio_timeout} s"
                    )
        finally:
            read.cancel()
        event = read.result()
        if event is None:
            if writer is not None and writer.done() and not writer.cancelled():
                # The writer saw the connection go first: its error says why.
                error = writer.exception()
                if error is not None:
                    raise error
            raise SpeechError(f"{self.server} closed the connection before the end")
        if Error.is_type(event.type):
            raise ServerErrorEvent(_error_message(self.server, event))
        return event

    async def _wait[T](self, awaitable: Awaitable[T]) -> T:
        """Await something unless the synthesis is cancelled first (or meanwhile)."""
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if self._stop.is_set():
            # Cancelled: whatever the task saw (a dropped connection) is moot.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise _Stopped
        return task.result()

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"local_voice {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cleanup(self) -> None:
        """Cancel what still runs and close the connection."""
        self._stop.set()
        if self._connection is not None:
            self._connection.abort()
            await self._drop(self._connection)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, SpeechError):
                LOGGER.debug("Speech task on %s ended with %r", self.server, result)
