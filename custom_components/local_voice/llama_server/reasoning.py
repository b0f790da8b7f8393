"""Reasoning written inline in content (`<think>…</think>`), split off as it streams."""

from __future__ import annotations

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ThinkSplitter:
    """Split `<think>…</think>` at the start of streamed content into thinking.

    Some servers (llama-server with `--reasoning-format none`, other OpenAI-compatible
    servers) leave a reasoning model's thoughts inline. Thinking must never be spoken,
    so text is held back only while it could still be the start of a `<think>` tag or,
    inside one, the start of `</think>`.
    """

    def __init__(self) -> None:
        """Start before any content."""
        self._state = "start"  # start → thinking → content, or start → content
        self._buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Return (thinking, content) that can be released now."""
        self._buffer += text
        thinking = content = ""
        if self._state == "start":
            stripped = self._buffer.lstrip()
            if stripped.startswith(THINK_OPEN):
                self._state = "thinking"
                self._buffer = stripped[len(THINK_OPEN) :]
            elif stripped and not THINK_OPEN.startswith(stripped):
                self._state = "content"
            else:
                return "", ""
        if self._state == "thinking":
            if (end := self._buffer.find(THINK_CLOSE)) >= 0:
                thinking = self._buffer[:end]
                self._buffer = self._buffer[end + len(THINK_CLOSE) :].lstrip()
                self._state = "after"
            else:
                keep = _partial_tag_suffix(self._buffer, THINK_CLOSE)
                thinking = self._buffer[: len(self._buffer) - keep]
                self._buffer = self._buffer[len(self._buffer) - keep :]
                return thinking, ""
        if self._state == "after":
            # Drop the blank line models put after </think>, then pass content through.
            self._buffer = self._buffer.lstrip()
            if not self._buffer:
                return thinking, ""
            self._state = "content"
        content, self._buffer = self._buffer, ""
        return thinking, content

    def flush(self) -> tuple[str, str]:
        """Release what is held back at the end of the stream."""
        buffer, self._buffer = self._buffer, ""
        if self._state == "thinking":
            return buffer, ""
        return "", buffer if self._state != "after" else buffer.lstrip()


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
