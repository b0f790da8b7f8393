"""Cut text into sentences, as soon as each one is complete.

Streamed text arrives a few words at a time while the language model is still writing;
speaking each sentence the moment it is complete is what lets the voice start early.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (closing quotes or brackets may follow) before white space,
# at CJK full stops (no space follows those), or at a line break.
_END = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019)\]]*\s+"  # . ! ? … then closing quotes, space
    r"|[\u3002\uff01\uff1f]+\s*"  # CJK full stop, exclamation, question marks
    r"|\n+"
)
# Abbreviations whose period does not end a sentence ("Dr. Smith").
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "no"}
)


def _is_sentence(candidate: str) -> bool:
    """Tell pieces that must join the next one ("1." of a list, "Dr." of a name)."""
    if not any(char.isalpha() for char in candidate):
        return False
    last_word = candidate.rsplit(maxsplit=1)[-1].rstrip(".").lower()
    return not (candidate.endswith(".") and last_word in _ABBREVIATIONS)


class SentenceSplitter:
    """Collect text chunks; hand out each sentence once it is complete."""

    def __init__(self) -> None:
        self._buffer = ""

    def add(self, text: str) -> list[str]:
        """Add a chunk of text; return the sentences it completed (maybe none)."""
        self._buffer += text
        sentences: list[str] = []
        start = 0
        for end in _END.finditer(self._buffer):
            candidate = self._buffer[start : end.end()].strip()
            if _is_sentence(candidate):
                sentences.append(candidate)
                start = end.end()
        self._buffer = self._buffer[start:]
        return sentences

    def finish(self) -> str:
        """Return what is left (the last sentence, maybe unfinished) and reset.

        Nothing is returned for a rest with nothing to say ("...", "-"): Kokoro has no
        phonemes for it and would fail.
        """
        rest, self._buffer = self._buffer.strip(), ""
        return rest if any(char.isalnum() for char in rest) else ""


def split_sentences(text: str) -> list[str]:
    """All sentences of a complete text, in order."""
    splitter = SentenceSplitter()
    sentences = splitter.add(text)
    if rest := splitter.finish():
        sentences.append(rest)
    return sentences
