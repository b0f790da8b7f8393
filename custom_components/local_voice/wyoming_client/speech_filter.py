"""Text fit for speech: a streaming filter for what goes to text-to-speech.

Only what goes to text-to-speech passes through here; the chat log keeps the
original text. The filter drops what should not be read aloud (markdown markup,
emoji, URLs, code) and works on a stream of LLM text deltas: it releases text at
word boundaries as soon as no markdown construct is left open, so feeding a text
in one piece or in any number of deltas gives the same result.
"""

from __future__ import annotations

import re
import unicodedata

# Pictographs that a TTS voice would read as their Unicode names, or skip
# inconsistently: emoji, dingbats, arrows, and the invisible joiners,
# variation selectors, keycaps and tags that build emoji sequences.
_EMOJI_RE = re.compile(
    "["
    "\U0001f000-\U0001faff"  # emoticons, pictographs, transport, flags, extended
    "\u2190-\u21ff"  # arrows
    "\u2300-\u23ff"  # miscellaneous technical (watch, hourglass, alarm clock)
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats
    "\u2b00-\u2bff"  # stars, squares, arrows
    "\u200d"  # zero-width joiner
    "\u20e3"  # combining enclosing keycap
    "\ufe00-\ufe0f"  # variation selectors
    "\U000e0000-\U000e007f"  # tags (subdivision flags)
    "\u3030\u303d\u3297\u3299"
    "]+"
)
# At the start of a line: headings, block quotes, bullets, task boxes.
_LINE_START_RE = re.compile(r"^\s*(?:#{1,6}(?:\s+|$)|>\s*|[-*+•]\s+|\[[ xX]\]\s+)+")
_IMAGE_RE = re.compile(r"!\[([^\]\n]*)\]\(([^)\n]*)\)")
_LINK_RE = re.compile(r"\[([^\]\n]*)\]\(([^)\n]*)\)")
_INLINE_CODE_RE = re.compile(r"`([^`\n]*)`")
# Inline code that is prose in disguise ("the `kitchen light`") is read;
# anything with code characters (dots, slashes, brackets, digits...) is not.
_PROSE_CODE_RE = re.compile(r"[^\W\d_]+(?:['\- ][^\W\d_]+)*")
_HTML_TAG_RE = re.compile(r"</?[A-Za-z!][^<>\n]*>")
# A URL, without the punctuation that ends the sentence around it.
_URL_RE = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)\S+?(?=[.,;:!?)\]'\"]*(?:\s|$))", re.IGNORECASE
)
_EMPHASIS_RE = re.compile(r"\*+|~~+|(?<!\w)_+|_+(?!\w)|`+")
# Table separators and horizontal rules: "---", "|:---:|", "===".
_RULE_RE = re.compile(r"(?<!\S)[-=:|]{3,}(?!\S)")
_PIPE_RE = re.compile(r"\s*\|\s*")
_TRAILING_PIPE_RE = re.compile(r"\s*\|\s*$")
_EMPTY_BRACKETS_RE = re.compile(r"\(\s*\)|\[\s*\]")
_SPACE_RE = re.compile(r"\s+")
_REPEATED_COMMA_RE = re.compile(r",(?:\s*,)+")
_SPACE_BEFORE_PUNCTUATION_RE = re.compile(r"\s+([,.;:!?…])")
_FENCE_RE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")

# CJK punctuation: the ideographic comma and full stop, and the full-width comma,
# exclamation and question marks. CJK text has no spaces: a piece may end after these.
_CJK_PUNCTUATION = "\u3001\u3002\uff0c\uff01\uff1f"
# Punctuation after which a line needs no full stop to sound finished.
_CLOSING_PUNCTUATION = ".!?…:;," + _CJK_PUNCTUATION
# Punctuation that must not start a phrase (it belongs to the previous word).
_LEADING_PUNCTUATION = ",.;:!?…)" + _CJK_PUNCTUATION
# Quotes and brackets that may follow a sentence's last punctuation.
_CLOSERS = "\"'\u201d\u2019)]\u00bb"
# A line with a construct still open is released anyway past this length.
_MAX_HELD_CHARS = 400


def _clean_piece(text: str, line_start: bool, line_end: bool) -> str:
    """Clean one piece of a line; the piece starts and ends at word boundaries."""
    if line_start:
        text = _LINE_START_RE.sub("", text, count=1)
    if line_end:
        text = _TRAILING_PIPE_RE.sub("", text)
    text = _IMAGE_RE.sub("", text)
    text = _LINK_RE.sub(r"\1", text)
    text = _INLINE_CODE_RE.sub(_inline_code, text)
    text = _HTML_TAG_RE.sub("", text)
    text = _URL_RE.sub("", text)
    text = _EMPHASIS_RE.sub("", text)
    text = _RULE_RE.sub("", text)
    text = _PIPE_RE.sub(", ", text)
    text = _EMOJI_RE.sub("", text)
    text = _EMPTY_BRACKETS_RE.sub("", text)
    text = _REPEATED_COMMA_RE.sub(",", text)
    text = _SPACE_BEFORE_PUNCTUATION_RE.sub(r"\1", text)
    return _SPACE_RE.sub(" ", text)


def _inline_code(match: re.Match[str]) -> str:
    """Keep inline code that is plain words; drop real code."""
    inner = match.group(1).strip()
    return inner if _PROSE_CODE_RE.fullmatch(inner) else ""


def _safe_cut(text: str) -> int:
    """Return how much of a partial line can be cleaned now (0: nothing).

    The cut is just after a whitespace character or a CJK punctuation mark, outside
    any inline code span, link or HTML tag, so every construct is cleaned whole.
    """
    cut = 0
    in_code = False
    brackets = 0
    in_target = False
    in_tag = False
    for index, char in enumerate(text):
        if in_code:
            in_code = char != "`"
        elif in_tag:
            in_tag = char != ">"
        elif in_target:
            in_target = char != ")"
        elif char == "`":
            in_code = True
        elif char == "[":
            brackets += 1
        elif char == "]" and brackets:
            brackets -= 1
            in_target = brackets == 0 and text[index + 1 : index + 2] == "("
        elif char == "<" and re.match(r"[A-Za-z/!]", text[index + 1 : index + 2]):
            in_tag = True
        elif (char.isspace() or char in _CJK_PUNCTUATION) and not brackets:
            cut = index + 1
    return cut


class SpeechFilter:
    """Turn streamed LLM text into text fit for speech.

    feed() returns the speakable text released so far; finish() the rest.
    Lines end with a newline; a line that does not end in punctuation (a
    heading, a list item) gets a full stop so the voice pauses.
    """

    def __init__(self) -> None:
        """Start with an empty line."""
        self._buffer = ""
        self._in_fence = False
        self._fence = ""
        self._line_start = True
        self._line_last = ""
        self._pending_space = False

    def feed(self, text: str) -> str:
        """Add streamed text; return the speakable text that is complete."""
        self._buffer += text
        return self._drain(final=False)

    def finish(self) -> str:
        """End of the stream: return the speakable rest."""
        text = self._drain(final=True)
        return text + self._end_line()

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        while self._buffer:
            newline = self._buffer.find("\n")
            if self._in_fence:
                if newline < 0:
                    if final:
                        self._buffer = ""
                    break
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                if line.strip().startswith(self._fence):
                    self._in_fence = False
                continue
            if newline >= 0:
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                if self._line_start and (fence := _FENCE_RE.match(line)):
                    self._in_fence = True
                    self._fence = fence.group(1)
                    out.append(self._end_line())
                    continue
                out.append(self._emit(line, trailing_space=False))
                out.append(self._end_line())
                continue
            if final:
                if self._line_start and _FENCE_RE.match(self._buffer):
                    self._buffer = ""
                    break
                out.append(self._emit(self._buffer, trailing_space=False))
                self._buffer = ""
                break
            if self._line_start and self._may_open_fence(self._buffer):
                break
            cut = _safe_cut(self._buffer)
            if not cut and len(self._buffer) > _MAX_HELD_CHARS:
                cut = max(self._buffer.rfind(" ") + 1, 0)
            if not cut:
                break
            piece, self._buffer = self._buffer[:cut], self._buffer[cut:]
            out.append(self._emit(piece, trailing_space=True))
        return "".join(out)

    @staticmethod
    def _may_open_fence(text: str) -> bool:
        """Return True while the start of a line could still become a fence."""
        stripped = text.lstrip(" ")
        return any(
            stripped.startswith(marker) or marker.startswith(stripped)
            for marker in ("```", "~~~")
        )

    def _emit(self, piece: str, trailing_space: bool) -> str:
        """Clean a piece of the current line and join it to what was said."""
        text = _clean_piece(piece, self._line_start, not trailing_space).strip()
        if not self._line_last:
            text = text.lstrip(_LEADING_PUNCTUATION + " ")
        elif text and text[0] in ",;" and self._line_last in _CLOSING_PUNCTUATION:
            text = text[1:].lstrip()
        if not text:
            # Keep line-start context across pieces that said nothing ("# ", "- ").
            self._pending_space = self._pending_space or bool(
                self._line_last and piece[-1:].isspace()
            )
            return ""
        self._line_start = False
        joiner = ""
        if (
            self._line_last
            and text[0] not in _LEADING_PUNCTUATION
            and (self._pending_space or piece[:1].isspace())
        ):
            joiner = " "
        self._pending_space = trailing_space and piece[-1:].isspace()
        self._line_last = text.rstrip(_CLOSERS)[-1:] or self._line_last or text[-1]
        return joiner + text

    def _end_line(self) -> str:
        """Finish the current line: a full stop where it needs one, a newline."""
        ending = ""
        if last := self._line_last:
            # A CJK line gets the ideographic full stop its voice reads as a pause.
            stop = "\u3002" if unicodedata.east_asian_width(last) in "WF" else "."
            ending = "\n" if last in _CLOSING_PUNCTUATION else stop + "\n"
        self._line_start = True
        self._line_last = ""
        self._pending_space = False
        return ending
