"""Transcription on a Wyoming ASR server: audio goes out as it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Coroutine
from dataclasses import dataclass
import time
from typing import Any

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop

from .audio import (
    SPEECH_CHANNELS,
    SPEECH_FORMAT,
    SPEECH_RATE,
    SPEECH_WIDTH,
    AudioFormat,
    PcmConverter,
    strip_wav_header,
)
from .connection import Connection, parse, raise_for_error
from .errors import WyomingError
from .server import WyomingServer

# No transcript this long after the end of audio: the ASR server is stuck.
STT_TIMEOUT_SECONDS = 30


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
    upload = _Upload(PcmConverter(audio_format, SPEECH_FORMAT))
    async with Connection(server) as connection:
        await connection.write(Transcribe(language=language).event())
        await connection.write(
            AudioStart(
                rate=SPEECH_RATE, width=SPEECH_WIDTH, channels=SPEECH_CHANNELS
            ).event()
        )
        transcript = await _upload_and_receive(
            connection, upload.send(connection, stream), transcript_timeout
        )
    end = time.monotonic()
    return Transcription(
        text=transcript.text,
        language=transcript.language,
        audio_seconds=upload.audio_bytes / SPEECH_FORMAT.bytes_per_second,
        stt_seconds=end - upload.stopped if upload.stopped is not None else 0.0,
    )


async def _upload_and_receive(
    connection: Connection, upload: Coroutine[Any, Any, None], transcript_timeout: float
) -> Transcript:
    """Upload while reading; the transcript comes in time after the audio's end.

    A failed upload raises, unless the server's answer (an error event, which
    explains more) comes within a second.
    """
    server = connection.server
    upload_task = asyncio.create_task(upload, name="local_voice stt upload")
    receive_task = asyncio.create_task(
        _receive(connection), name="local_voice stt receive"
    )
    try:
        await asyncio.wait(
            (upload_task, receive_task), return_when=asyncio.FIRST_COMPLETED
        )
        if not receive_task.done() and upload_task.exception() is not None:
            await asyncio.wait((receive_task,), timeout=1)
            if not receive_task.done():
                upload_task.result()
        try:
            async with asyncio.timeout(transcript_timeout):
                return await receive_task
        except TimeoutError as err:
            raise WyomingError(
                f"{server} sent no transcript within {transcript_timeout} s"
                " after the audio"
            ) from err
    finally:
        for task in (upload_task, receive_task):
            task.cancel()
        await asyncio.gather(upload_task, receive_task, return_exceptions=True)


async def _receive(connection: Connection) -> Transcript:
    """Read events until the transcript; an error event or a close raises."""
    server = connection.server
    while True:
        event = await connection.read()
        if event is None:
            raise WyomingError(f"{server} closed the connection before the transcript")
        raise_for_error(server, event)
        if Transcript.is_type(event.type):
            return parse(server, Transcript, event)


@dataclass(slots=True)
class _Upload:
    """The audio side: a WAV header dropped, the rest converted, counted and sent."""

    converter: PcmConverter
    audio_bytes: int = 0
    #: When audio-stop was sent.
    stopped: float | None = None
    _header_pending: bytes = b""
    _header_done: bool = False

    async def send(self, connection: Connection, stream: AsyncIterable[bytes]) -> None:
        """Send the audio as it arrives, then audio-stop."""
        iterator = aiter(stream)
        try:
            async for received in iterator:
                pcm = self.converter.convert(self._without_header(received))
                if not pcm:
                    continue
                self.audio_bytes += len(pcm)
                await connection.write(
                    AudioChunk(
                        rate=SPEECH_RATE,
                        width=SPEECH_WIDTH,
                        channels=SPEECH_CHANNELS,
                        audio=pcm,
                    ).event()
                )
            await connection.write(AudioStop().event())
            self.stopped = time.monotonic()
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    def _without_header(self, data: bytes) -> bytes:
        """Return the audio in `data`; hold what may still be a WAV header."""
        if self._header_done:
            return data
        data, self._header_done = strip_wav_header(self._header_pending + data)
        if not self._header_done:
            self._header_pending = data
            if len(data) < 4096:
                return b""
            self._header_done = True  # not a header we understand: audio
        return data
