"""How text reaches a Wyoming TTS server: the synthesis modes, as types."""

from __future__ import annotations

from typing import ClassVar, Protocol

from .sentences import SentenceSplitter


class TextPieces(Protocol):
    """Cuts filtered text into the pieces sent to the server."""

    def feed(self, text: str) -> list[str]:
        """Return the pieces complete so far."""

    def finish(self) -> list[str]:
        """Return what is left at the end of the text."""


class _AsItComes:
    """Every piece of text as it comes."""

    def feed(self, text: str) -> list[str]:
        return [text]

    def finish(self) -> list[str]:
        return []


class _All:
    """The whole text as one piece, at its end."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def feed(self, text: str) -> list[str]:
        self._parts.append(text)
        return []

    def finish(self) -> list[str]:
        whole = "".join(self._parts).strip()
        return [whole] if whole else []


class SynthesisMode:
    """How text reaches the server; `name` is what diagnostics show."""

    name: ClassVar[str]
    #: One connection with synthesize-chunk events (else a request per piece).
    streams_text: ClassVar[bool] = False

    def pieces(self) -> TextPieces:
        """Return what cuts the text into pieces."""
        raise NotImplementedError


class StreamingText(SynthesisMode):
    """The server streams text: every piece goes out as it comes."""

    name = "stream"
    streams_text = True

    def pieces(self) -> TextPieces:
        """Pass every piece through."""
        return _AsItComes()


class PerSentence(SynthesisMode):
    """The server cannot stream text: one request per sentence, as each completes."""

    name = "sentences"

    def pieces(self) -> TextPieces:
        """Cut at sentence ends."""
        return SentenceSplitter()


class WholeText(SynthesisMode):
    """One request for the whole message."""

    name = "single"

    def pieces(self) -> TextPieces:
        """Hold everything until the end."""
        return _All()
