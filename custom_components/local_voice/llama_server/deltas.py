"""Chat-completion chunks to the delta dicts of Home Assistant's chat log.

The dicts are plain (`content`, `thinking_content`); the tool calls are assembled
here and turned into Home Assistant tool inputs by the agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .reasoning import ThinkSplitter

# An answer that opens with one of these may be markup around a tool call (Qwen 0.5B
# writes "```json" before calls llama-server parses): held until it turns to prose.
_MARKUP_OPENERS = "`{[<"


def _text(value: Any) -> str:
    """Return a delta's text without NUL (raw or escaped): never said or kept."""
    return value.replace("\x00", "") if isinstance(value, str) else ""


@dataclass
class ToolCallBuilder:
    """One tool call being assembled from deltas that share an index."""

    id: str = ""
    name: str = ""
    arguments: str = ""
    parsed: dict[str, Any] | None = None


@dataclass
class StreamResult:
    """What one request produced besides the deltas: why it ended, its timings."""

    finish_reason: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)


class DeltaTransformer:
    """Turn chat-completion chunks into Home Assistant delta dicts.

    Content deltas are released as they arrive (so TTS can start early), except an
    opening that may be markup: it is held until prose follows, and dropped at the
    end if the answer was tool calls (never spoken, never in the log). Reasoning
    (`reasoning_content`, `reasoning`, or inline `<think>`) becomes `thinking_content`;
    tool-call fragments are accumulated by index and released once the choice
    finishes (the agent reads their arguments with tool_arguments.py).
    """

    def __init__(self) -> None:
        """Start an empty result."""
        self.result = StreamResult()
        self._think = ThinkSplitter()
        self._calls: dict[int, ToolCallBuilder] = {}
        self._opening: str | None = ""  # None once the content is known to be prose

    def feed(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the deltas a chunk produces (possibly none)."""
        if isinstance(timings := chunk.get("timings"), dict):
            self.result.timings = timings
        out: list[dict[str, Any]] = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta is None:
                delta = choice.get("message")  # non-streaming answer
            if isinstance(delta, Mapping):
                out.extend(self._feed_delta(delta))
            if reason := choice.get("finish_reason"):
                self.result.finish_reason = str(reason)
        return out

    def _feed_delta(self, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if reasoning := _text(delta.get("reasoning_content") or delta.get("reasoning")):
            out.append({"thinking_content": reasoning})
        if content := _text(delta.get("content")):
            thinking, text = self._think.feed(content)
            out.extend(self._released(thinking, text))
        for fragment in delta.get("tool_calls") or ():
            if isinstance(fragment, Mapping):
                self._add_tool_fragment(fragment)
        return out

    def _released(self, thinking: str, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if thinking:
            out.append({"thinking_content": thinking})
        if text and self._opening is not None:
            self._opening += text
            start = self._opening.lstrip()[:1]
            if not start or start in _MARKUP_OPENERS:
                return out
            text, self._opening = self._opening, None
        if text:
            out.append({"content": text})
        return out

    def _add_tool_fragment(self, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        if not isinstance(index, int):
            index = len(self._calls)
        call = self._calls.setdefault(index, ToolCallBuilder())
        if fragment.get("id"):
            call.id = _text(str(fragment["id"]))
        function = fragment.get("function") or {}
        if name := function.get("name"):
            call.name += _text(str(name))
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):
            call.parsed = dict(arguments)
        elif arguments:
            call.arguments += _text(str(arguments))

    def finish(self) -> list[dict[str, Any]]:
        """Release held-back content; return the deltas for it.

        A held opening is dropped when the answer made tool calls (markup around
        them), and released otherwise (the answer itself, for the agent to judge).
        """
        out = self._released(*self._think.flush())
        opening, self._opening = self._opening, None
        if opening and not self._calls:
            out.append({"content": opening})
        return out

    def tool_calls(self) -> list[ToolCallBuilder]:
        """Return the assembled tool calls, in index order."""
        return [self._calls[index] for index in sorted(self._calls)]
