"""Wyoming TTS server for Kokoro, with synthesize streaming.

Event flow (Wyoming streaming, as Home Assistant 2025.7 and later use it):

- `synthesize-start`, then `synthesize-chunk`s: each sentence is spoken as soon as it is
  complete, as its own `audio-start` / `audio-chunk`... / `audio-stop`;
- `synthesize-stop`: the rest is spoken the same way, then `synthesize-stopped` follows;
- a plain `synthesize` inside a stream is the copy sent for older servers: ignored;
- a plain `synthesize` on its own: one `audio-start`, the chunks of every sentence in
  order, one `audio-stop`.

One synthesizer (the model) serves every connection; a lock runs one synthesis at a
time, in a worker thread, so that the event loop keeps answering other clients.
"""

from __future__ import annotations

import asyncio
from functools import partial
import logging
from typing import TYPE_CHECKING

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .sentences import SentenceSplitter
from .synthesizer import find_language, voice_language

if TYPE_CHECKING:
    from wyoming.event import Event

    from .synthesizer import Language, Synthesizer

_LOGGER = logging.getLogger(__name__)

VERSION = "0.1.0"
WIDTH = 2  # bytes per sample: 16-bit PCM
CHANNELS = 1
_KOKORO = Attribution(name="hexgrad", url="https://huggingface.co/hexgrad/Kokoro-82M")


def build_info(voices: list[str], streaming: bool = True) -> Info:
    """Describe the server: one TTS program, its voices in their own languages."""
    return Info(
        tts=[
            TtsProgram(
                name="kokoro",
                description="Kokoro-82M text to speech (ONNX Runtime)",
                attribution=_KOKORO,
                installed=True,
                version=VERSION,
                voices=[
                    TtsVoice(
                        name=voice,
                        description=voice,
                        attribution=_KOKORO,
                        installed=True,
                        version=None,
                        languages=[voice_language(voice).code],
                    )
                    for voice in voices
                ],
                supports_synthesize_streaming=streaming,
            )
        ]
    )


class KokoroEventHandler(AsyncEventHandler):
    """One client connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        synthesizer: Synthesizer,
        lock: asyncio.Lock,
        info: Info,
        default_voice: str,
        speed: float,
        samples_per_chunk: int = 1024,
    ) -> None:
        super().__init__(reader, writer)
        self.synthesizer = synthesizer
        self._lock = lock
        self._info_event = info.event()
        self._default_voice = default_voice
        self._speed = speed
        self._chunk_bytes = samples_per_chunk * WIDTH * CHANNELS
        self._stream: SentenceSplitter | None = None
        self._stream_voice = (default_voice, voice_language(default_voice))

    async def handle_event(self, event: Event) -> bool:
        """Answer one event; never drop the connection on a synthesis error."""
        if Describe.is_type(event.type):
            await self.write_event(self._info_event)
            return True
        try:
            await self._handle_tts(event)
        except Exception as err:
            _LOGGER.exception("Synthesis failed")
            await self.write_event(
                Error(text=str(err), code=type(err).__name__).event()
            )
        return True

    async def _handle_tts(self, event: Event) -> None:
        if SynthesizeStart.is_type(event.type):
            start = SynthesizeStart.from_event(event)
            self._stream = SentenceSplitter()
            self._stream_voice = self.pick_voice(start.voice)
        elif SynthesizeChunk.is_type(event.type):
            if self._stream is None:
                return  # a chunk outside a stream has nothing to belong to
            text = SynthesizeChunk.from_event(event).text
            # A delta may end inside a word ("3." of "3.5").
            for sentence in self._stream.feed(text, at_word_end=False):
                await self._speak([sentence], *self._stream_voice)
        elif SynthesizeStop.is_type(event.type):
            for sentence in self._stream.finish() if self._stream else []:
                await self._speak([sentence], *self._stream_voice)
            self._stream = None
            await self.write_event(SynthesizeStopped().event())
        elif Synthesize.is_type(event.type) and self._stream is None:
            synthesize = Synthesize.from_event(event)
            splitter = SentenceSplitter()
            await self._speak(
                splitter.feed(synthesize.text) + splitter.finish(),
                *self.pick_voice(synthesize.voice),
            )

    def pick_voice(self, requested: SynthesizeVoice | None) -> tuple[str, Language]:
        """Choose a voice and the language it reads in.

        The voice asked for, else one of the language asked for, else the default; the
        language asked for (Wyoming sends one only without a voice name), else the
        voice's own: never English by default.
        """
        if requested is None:
            return self._default_voice, voice_language(self._default_voice)
        asked = find_language(requested.language) if requested.language else None
        voice = self._choose_voice(requested.name, asked)
        return voice, asked or voice_language(voice)

    def _choose_voice(self, name: str | None, language: Language | None) -> str:
        installed = self.synthesizer.voices()
        if name in installed:
            return name
        if language is not None:
            candidates = [self._default_voice, *installed]
            primary = language.code.split("-")[0]
            matches = [v for v in candidates if voice_language(v) == language] or [
                v for v in candidates if voice_language(v).code.startswith(primary)
            ]
            if matches:
                return matches[0]
        if name:
            _LOGGER.warning(
                "Voice %s is not installed, using %s", name, self._default_voice
            )
        return self._default_voice

    async def _speak(
        self, sentences: list[str], voice: str, language: Language
    ) -> None:
        """Send one audio stream (start, chunks, stop): `sentences` spoken in order."""
        rate = self.synthesizer.sample_rate
        await self.write_event(
            AudioStart(rate=rate, width=WIDTH, channels=CHANNELS).event()
        )
        loop = asyncio.get_running_loop()
        for sentence in sentences:
            _LOGGER.debug("Speaking with %s (%s): %s", voice, language.code, sentence)
            async with self._lock:
                audio = await loop.run_in_executor(
                    None,
                    self.synthesizer.synthesize,
                    sentence,
                    voice,
                    self._speed,
                    language,
                )
            for offset in range(0, len(audio), self._chunk_bytes):
                chunk = audio[offset : offset + self._chunk_bytes]
                await self.write_event(
                    AudioChunk(
                        rate=rate, width=WIDTH, channels=CHANNELS, audio=chunk
                    ).event()
                )
        await self.write_event(AudioStop().event())


async def serve(
    uri: str,
    synthesizer: Synthesizer,
    *,
    default_voice: str,
    speed: float,
    samples_per_chunk: int = 1024,
    streaming: bool = True,
) -> None:
    """Serve Wyoming clients on `uri` until cancelled, all sharing `synthesizer`."""
    server = AsyncServer.from_uri(uri)
    handler = partial(
        KokoroEventHandler,
        synthesizer=synthesizer,
        lock=asyncio.Lock(),
        info=build_info(synthesizer.voices(), streaming),
        default_voice=default_voice,
        speed=speed,
        samples_per_chunk=samples_per_chunk,
    )
    _LOGGER.info("Ready on %s with voices %s", uri, ", ".join(synthesizer.voices()))
    await server.run(handler)
