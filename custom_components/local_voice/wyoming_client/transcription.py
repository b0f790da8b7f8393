"""Transcription on a Wyoming ASR server: audio goes out as it arrives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass
import time

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
                    data, header_done = strip_wav_header(header_pending + data)
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
                raise WyomingError(
                    f"{server} closed the connection before the transcript"
                )
            raise_for_error(server, event)
            if Transcript.is_type(event.type):
                return parse(server, Transcript, event)

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
                raise WyomingError(
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
