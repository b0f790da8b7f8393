"""PCM audio: its format, conversion between formats, and WAV framing."""

from __future__ import annotations

from dataclasses import dataclass
import io
import wave

import audioop

# Audio the Wyoming ASR servers take: 16 kHz, 16-bit, mono PCM.
SPEECH_RATE = 16000
SPEECH_WIDTH = 2
SPEECH_CHANNELS = 1
# Audio formats taken from Home Assistant and from TTS servers; others are refused.
AUDIO_RATE_RANGE = (4000, 192000)
AUDIO_WIDTHS = (1, 2, 3, 4)
AUDIO_CHANNELS = (1, 2)


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

    def problem(self) -> str | None:
        """Say what makes this format unusable (zero rate, odd width...), or None.

        Such a format would otherwise end deep in the conversion or the WAV writer
        with a raw exception.
        """
        low, high = AUDIO_RATE_RANGE
        if not low <= self.rate <= high:
            return f"a sample rate of {self.rate} Hz (not {low}-{high})"
        if self.width not in AUDIO_WIDTHS:
            return f"{self.width}-byte samples (not 1-4)"
        if self.channels not in AUDIO_CHANNELS:
            return f"{self.channels} channels (not mono or stereo)"
        return None


def format_problem(rate: object, width: object, channels: object) -> str | None:
    """Say what makes a format a server announced unusable, or None."""
    if isinstance(rate, int) and isinstance(width, int) and isinstance(channels, int):
        return AudioFormat(rate, width, channels).problem()
    return "a format that is not numbers"


#: What Wyoming ASR servers take: 16 kHz, 16-bit, mono.
SPEECH_FORMAT = AudioFormat(SPEECH_RATE, SPEECH_WIDTH, SPEECH_CHANNELS)


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


def wav_bytes(audio_format: AudioFormat, pcm: bytes = b"") -> bytes:
    """Return PCM as a WAV file; without PCM, the header of a stream (0 frames)."""
    with io.BytesIO() as buffer:
        with wave.open(buffer, "wb") as writer:
            writer.setframerate(audio_format.rate)
            writer.setsampwidth(audio_format.width)
            writer.setnchannels(audio_format.channels)
            writer.writeframes(pcm)
        return buffer.getvalue()


def strip_wav_header(data: bytes) -> tuple[bytes, bool]:
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
