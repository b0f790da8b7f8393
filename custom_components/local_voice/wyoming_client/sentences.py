"""Cut text into sentences as it streams in, so a voice can start early.

Two users, one source. The integration cuts what it sends a TTS server that cannot
stream text (one request per sentence). The kokoro add-on's server cuts what
streaming clients send it: Home Assistant's own wyoming integration sends the
language model's deltas as they come, a few characters each, and Kokoro reads a
sentence at a time. The add-on's image is built from its own folder, so its
`wyoming_kokoro/sentences.py` is a copy of this file, written by
`scripts/sync-addon-shared` and kept equal by `tests/addons/test_shared_code.py`:
edit this one. That is why it imports nothing but the standard library.
"""

from __future__ import annotations

import re

# Words whose full stop does not end a sentence: titles, then the others.
_ABBREVIATIONS = frozenset(
    {"dr", "mr", "mrs", "ms", "prof", "jr", "sr", "st"}
    | {"vs", "etc", "e.g", "i.e", "approx"}
)
# A sentence end: . ! ? … and closing quotes or brackets (white space must follow),
# or CJK full stop, exclamation and question marks and closing brackets (nothing
# needs to follow: CJK text has no spaces).
_SENTENCE_END_RE = re.compile(
    "(?P<cjk>[\u3002\uff01\uff1f]+[\u300d\u300f\uff09]*)"
    "|[.!?\u2026]+[\"'\u201d\u2019)\\]]*"
)
_SOFT_BREAK_RE = re.compile(r"[,;:](?=\s)")
# Where the first sentence may be cut, so the voice starts at its first clause: a
# comma, semicolon or colon before white space, or a CJK comma (nothing follows it),
# with at least this much before it (not "Sure," nor "\u306f\u3044\u3001").
_CLAUSE_RE = re.compile(r"[,;:](?=\s)|(?P<cjk>[\u3001\uff0c])")
_MIN_CLAUSE_CHARS = 24
_MIN_CJK_CLAUSE_CHARS = 6


class SentenceSplitter:
    """Cut text into sentences as it streams in.

    A sentence ends at ., !, ? or … followed by whitespace (or by the end of the
    text fed, when that is a word end), at a CJK full stop, or at a line end.
    Abbreviations, initials and list numbers ("1.") do not end a sentence.
    The first piece ends at the first clause when that is long enough to say: the
    answer's first sound waits for a clause, not for a whole sentence.
    A sentence longer than max_chars is cut at a comma, or at a space.
    Pieces with nothing to say ("...", "-") are dropped.
    """

    def __init__(self, max_chars: int = 250) -> None:
        """Start empty."""
        self._buffer = ""
        self._max_chars = max_chars
        self._first = True

    def feed(self, text: str, at_word_end: bool = True) -> list[str]:
        """Add text; return the sentences that are complete.

        `at_word_end`: the text ends at a word end, as the speech filter releases
        it; streamed deltas may end inside a word ("3." of "3.5").
        """
        self._buffer += text
        return self._split(at_word_end)

    def finish(self) -> list[str]:
        """End of the stream: return the last sentences."""
        sentences = self._split(at_word_end=True)
        if rest := self._buffer.strip():
            sentences.append(rest)
        self._buffer = ""
        return [sentence for sentence in sentences if _speakable(sentence)]

    def _split(self, at_word_end: bool) -> list[str]:
        sentences: list[str] = []
        while True:
            cut = self._find_cut(at_word_end)
            if cut is None:
                break
            sentence, self._buffer = self._buffer[:cut], self._buffer[cut:].lstrip()
            if _speakable(sentence):
                sentences.append(sentence.strip())
                self._first = False
        return sentences

    def _find_cut(self, at_word_end: bool) -> int | None:
        text = self._buffer
        newline = text.find("\n")
        limit = newline if newline >= 0 else len(text)
        end = self._sentence_end(text, limit, at_word_end)
        if self._first and (clause := _first_clause(text[:limit])):
            end = min(end or clause, clause)
        if end is not None:
            return end
        if newline >= 0:
            return newline + 1
        if len(text) <= self._max_chars:
            return None
        head = text[: self._max_chars]
        soft = [m.end() for m in _SOFT_BREAK_RE.finditer(head) if m.end() >= 40]
        if soft:
            return soft[-1]
        space = head.rfind(" ")
        return space + 1 if space > 0 else self._max_chars

    def _sentence_end(self, text: str, limit: int, at_word_end: bool) -> int | None:
        """Return where the first sentence of `text[:limit]` ends, if it does."""
        for match in _SENTENCE_END_RE.finditer(text, 0, limit):
            end = match.end()
            if match["cjk"]:
                return end
            followed = text[end : end + 1]
            if not (followed.isspace() or (at_word_end and end == len(text))):
                continue
            if not self._is_abbreviation(text[: match.start()]):
                return end
        return None

    @staticmethod
    def _is_abbreviation(before: str) -> bool:
        """Return True if the full stop after `before` belongs to a word."""
        line = before.rsplit("\n", 1)[-1]
        word = line.rsplit(None, 1)[-1] if line.strip() else ""
        if not word:
            return False
        if word.lower() in _ABBREVIATIONS:
            return True
        if len(word) == 1 and word.isalpha():
            return True  # an initial: "J. R. R. Tolkien"
        # A list number at the start of a line: "1. Turn on the light".
        return word.isdigit() and line.strip() == word


def _first_clause(text: str) -> int | None:
    """Return where the first clause of `text` ends, if it is long enough to say."""
    for match in _CLAUSE_RE.finditer(text):
        least = _MIN_CJK_CLAUSE_CHARS if match["cjk"] else _MIN_CLAUSE_CHARS
        if len(text[: match.start()].strip()) >= least:
            return match.end()
    return None


def _speakable(text: str) -> bool:
    """Return True if the text has anything a voice would say."""
    return any(char.isalnum() for char in text)
