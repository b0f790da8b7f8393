"""Synthesis on a Wyoming TTS server: text in as it comes, audio out as produced.

How the text reaches the server is a `SynthesisMode`: `StreamingText` (one
synthesize-start / synthesize-chunk… / synthesize-stop stream), `PerSentence` (one
synthesize request per sentence, for servers that cannot stream text) or
`WholeText` (one request for the whole message).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
import contextlib
from functools import partial
import logging
import time
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .audio import AudioFormat, PcmConverter, format_problem
from .connection import Connection, parse, raise_for_error
from .errors import ServerErrorEvent, WyomingError
from .server import WyomingServer
from .speech_filter import SpeechFilter
from .synthesis_modes import SynthesisMode
from .synthesis_stats import SynthesisStats

_LOGGER = logging.getLogger(__name__)

# No text from the conversation agent this long: the pipeline is gone; speak what came.
TTS_TEXT_TIMEOUT_SECONDS = 60
# No audio this long after all the text was sent: the TTS server is stuck.
TTS_AUDIO_TIMEOUT_SECONDS = 30


class _Stopped(Exception):
    """The synthesis was cancelled: end the audio quietly."""


class Synthesis:
    """One synthesis: text in as it comes, audio out as it is produced.

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
        self.stats = SynthesisStats(mode.name)
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
            source = self._stream() if self.mode.streams_text else self._requests()
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
        """Filter the incoming text and queue it in the mode's pieces."""
        speech_filter = SpeechFilter()
        pieces = self.mode.pieces()

        def put(text: str) -> None:
            if text:
                self.stats.characters += len(text)
                for piece in pieces.feed(text):
                    self._pieces.put_nowait(piece)

        iterator = aiter(self._text)
        try:
            while True:
                try:
                    async with asyncio.timeout(self._text_timeout):
                        delta = await anext(iterator)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    _LOGGER.warning(
                        "No text for %s s while speaking on %s: saying what came",
                        self._text_timeout,
                        self.server,
                    )
                    break
                put(speech_filter.feed(delta))
            put(speech_filter.finish())
            for piece in pieces.finish():
                self._pieces.put_nowait(piece)
        finally:
            self.stats.text_done = time.monotonic()
            self._pieces.put_nowait(None)

    # Server side: streaming ------------------------------------------------------

    async def _stream(self) -> AsyncGenerator[AudioChunk]:
        sent: list[str] = []
        async for chunk in self._with_voice_fallback(partial(self._stream_once, sent)):
            yield chunk

    async def _stream_once(
        self, sent: list[str], voice: SynthesizeVoice | None
    ) -> AsyncGenerator[AudioChunk]:
        connection = await self._connect()
        writer = self._spawn(self._write_stream(connection, voice, sent), "tts write")
        try:
            async with contextlib.aclosing(
                self._read_audio(connection, writer, stream=True)
            ) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            writer.cancel()
            await self._drop(connection)

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

    # Server side: one request per piece ------------------------------------------

    async def _requests(self) -> AsyncGenerator[AudioChunk]:
        while (sentence := await self._wait(self._pieces.get())) is not None:
            async for chunk in self._with_voice_fallback(
                partial(self._request_once, sentence)
            ):
                yield chunk

    async def _request_once(
        self, sentence: str, voice: SynthesizeVoice | None
    ) -> AsyncGenerator[AudioChunk]:
        connection = await self._connect()
        try:
            await connection.write(Synthesize(text=sentence, voice=voice).event())
            async with contextlib.aclosing(
                self._read_audio(connection, None, stream=False)
            ) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            await self._drop(connection)

    async def _with_voice_fallback(
        self,
        attempt: Callable[[SynthesizeVoice | None], AsyncGenerator[AudioChunk]],
    ) -> AsyncGenerator[AudioChunk]:
        """Yield an attempt's audio; retry once with the server's default voice.

        Only an error before any audio, with a voice named, is retried: a voice the
        server lists but cannot load, as Piper does for voices it would download.
        From then on this synthesis asks only for the language, if one was given.
        """
        while True:
            got_audio = False
            try:
                async with contextlib.aclosing(attempt(self.voice)) as chunks:
                    async for chunk in chunks:
                        got_audio = True
                        yield chunk
            except ServerErrorEvent as err:
                if got_audio or self.voice is None or self.voice.name is None:
                    raise
                _LOGGER.warning(
                    "%s; speaking with the server's default voice instead of %s",
                    err,
                    self.voice.name,
                )
                self.stats.voice_fallback = True
                self.voice = SynthesizeVoice(language=self.voice.language)
            else:
                return

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
                chunk = parse(self.server, AudioChunk, event)
                self._check_format(event.type, chunk.rate, chunk.width, chunk.channels)
                if chunk.audio:
                    yield chunk
            elif AudioStart.is_type(event.type):
                start = parse(self.server, AudioStart, event)
                self._check_format(event.type, start.rate, start.width, start.channels)
            elif end_type.is_type(event.type):
                return

    def _check_format(
        self, event_type: str, rate: object, width: object, channels: object
    ) -> None:
        """Refuse audio in a format that cannot be played (a zero rate, say)."""
        if problem := format_problem(rate, width, channels):
            raise WyomingError(
                f"{self.server} sent audio that cannot be played: {event_type}"
                f" announces {problem}"
            )

    async def _next_event(
        self, connection: Connection, writer: asyncio.Task[None] | None
    ) -> Event:
        """Read the next event; the audio timeout runs once all text was sent.

        A writer that failed (the server stopped reading) ends the wait at once.
        """
        read = asyncio.ensure_future(connection.read())
        try:
            while True:
                waiting: set[asyncio.Future[Any]] = {read}
                if writer is not None and not writer.done():
                    waiting.add(writer)
                done, _ = await self._wait(
                    asyncio.wait(
                        waiting,
                        timeout=self._audio_timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                )
                if read in done:
                    break
                if (
                    writer is not None
                    and writer.done()
                    and not writer.cancelled()
                    and (error := writer.exception()) is not None
                ):
                    raise error
                if not done and (writer is None or writer.done()):
                    raise WyomingError(
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
            raise WyomingError(f"{self.server} closed the connection before the end")
        raise_for_error(self.server, event)
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
            if isinstance(result, Exception) and not isinstance(result, WyomingError):
                _LOGGER.debug("Speech task on %s ended with %r", self.server, result)
