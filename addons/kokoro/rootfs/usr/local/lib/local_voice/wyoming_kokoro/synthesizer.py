"""Kokoro-82M on ONNX Runtime, behind the small interface the Wyoming server needs.

The server only knows `Synthesizer`: tests give it a fake one, the add-on this ONNX one.
The model is loaded once, when the process starts; every connection shares it.

Kokoro's voices are style tables (510 x 256 float32), one file per voice, named with a
prefix that gives the language: `af_heart` is American English, female.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import tempfile
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

SAMPLE_RATE = 24000
STYLE_SIZE = 256


@dataclass(frozen=True)
class Language:
    """A Kokoro voice language: its Wyoming code and its eSpeak NG phonemizer code."""

    code: str
    espeak: str


# Voice-name prefix -> language (the first letter of "af_heart").
LANGUAGES = {
    "a": Language("en-US", "en-us"),
    "b": Language("en-GB", "en-gb"),
    "e": Language("es", "es"),
    "f": Language("fr", "fr-fr"),
    "h": Language("hi", "hi"),
    "i": Language("it", "it"),
    "j": Language("ja", "ja"),
    "p": Language("pt-BR", "pt-br"),
    "z": Language("zh", "cmn"),
}


def voice_language(voice: str) -> Language:
    """Return a voice's language, from its name's first letter (default en-US)."""
    return LANGUAGES.get(voice[:1], LANGUAGES["a"])


class Synthesizer(Protocol):
    """Text to 16-bit mono PCM at `sample_rate`; `synthesize` blocks (use a thread)."""

    sample_rate: int

    def voices(self) -> list[str]:
        """List the voices that can be used now (their files are on disk)."""
        ...

    def synthesize(self, text: str, voice: str, speed: float) -> bytes:
        """Speak `text` with `voice` at `speed` (1.0 is normal)."""
        ...


def to_pcm16(samples: NDArray[np.floating], volume: float) -> bytes:
    """Convert float samples in [-1, 1] to 16-bit PCM, scaled by `volume`, clipped."""
    scaled = np.clip(np.asarray(samples, dtype=np.float32) * volume, -1.0, 1.0)
    return (scaled * 32767.0).astype("<i2").tobytes()


def read_voice(path: Path) -> NDArray[np.float32]:
    """Read one voice file of the Kokoro ONNX repository (raw float32 style table)."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size == 0 or raw.size % STYLE_SIZE:
        msg = f"{path} is not a Kokoro voice file ({raw.size} values)"
        raise ValueError(msg)
    return raw.reshape(-1, 1, STYLE_SIZE)


def voice_names(voices_dir: Path) -> list[str]:
    """List the voices whose files are in `voices_dir` (`af_heart.bin`: af_heart)."""
    return sorted(path.stem for path in voices_dir.glob("*.bin"))


class KokoroOnnx:
    """Kokoro through kokoro-onnx (ONNX Runtime, CPU execution provider)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Path, voices_dir: Path, volume: float = 1.0) -> None:
        # Only the add-on image has kokoro-onnx (it needs Python < 3.14).
        from kokoro_onnx import Kokoro  # type: ignore[import-not-found]  # noqa: PLC0415

        self._names = voice_names(voices_dir)
        if not self._names:
            msg = f"No voice files (*.bin) in {voices_dir}"
            raise FileNotFoundError(msg)
        # kokoro-onnx reads its voices from one .npz archive: build it from the files,
        # in a folder that lives as long as the model (the archive is read lazily).
        self._tmp = tempfile.TemporaryDirectory(prefix="kokoro-voices-")
        bundle = Path(self._tmp.name, "voices.npz")
        styles = {name: read_voice(voices_dir / f"{name}.bin") for name in self._names}
        np.savez(bundle, allow_pickle=False, **styles)
        self._kokoro = Kokoro(str(model), str(bundle))
        self._volume = volume

    def voices(self) -> list[str]:
        """List the voices found when the model was loaded."""
        return list(self._names)

    def synthesize(self, text: str, voice: str, speed: float) -> bytes:
        """Speak one piece of text (a sentence, usually)."""
        samples, _rate = self._kokoro.create(
            text, voice=voice, speed=speed, lang=voice_language(voice).espeak
        )
        return to_pcm16(samples, self._volume)
