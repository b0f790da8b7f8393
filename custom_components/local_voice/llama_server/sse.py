"""Reading a streamed chat completion: server-sent events to chat chunks.

Works on any async iterable of byte lines (an aiohttp response's content, or a list
in a test), so it is tested without a server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
import json
from typing import Any

from .errors import (
    AnswerDeadline,
    AnswerOverBudget,
    AnswerTooLong,
    ErrorInStream,
    ReadTimeout,
    StreamError,
    TruncatedStream,
    UnparsableToolCall,
    error_for_status,
    error_message,
    is_tool_parse_failure,
)

DONE = "[DONE]"
# Chunks with text (content, reasoning or a tool call) an answer may send beyond its
# `max_tokens`: llama-server sends one per token, plus one per switch between reasoning,
# text and each tool call, or for text its parser held back. A server that talks on
# past the request's budget is stopped a few tokens later, not at the deadline.
CHAT_TOKEN_MARGIN = 32
# Delta fields whose text the model generated, token by token.
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "tool_calls")


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """How long and how large one streamed answer may be, from sending the request."""

    #: The whole answer, keep-alive comments or not (AnswerDeadline).
    answer_seconds: float
    #: All lines together, comments too (AnswerTooLong).
    max_bytes: int
    #: From the request to its first data line: the prompt read (ReadTimeout).
    first_data_seconds: float
    #: Between data lines after the first (ReadTimeout).
    data_gap_seconds: float


async def bounded_lines(
    lines: AsyncIterable[bytes], limits: StreamLimits, *, started: float
) -> AsyncIterator[bytes]:
    """Yield lines within `limits`, timed from the loop time `started`.

    Every line counts toward the deadline and the size, but only data lines count as
    activity: a server that streams forever or only keeps the connection alive ends
    in AnswerDeadline, AnswerTooLong or ReadTimeout.
    """
    loop = asyncio.get_running_loop()
    iterator = aiter(lines)
    deadline = started + limits.answer_seconds
    wait = limits.first_data_seconds
    data_due = started + wait
    total = 0
    while True:
        try:
            async with asyncio.timeout_at(min(deadline, data_due)):
                line = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError as err:
            if deadline <= data_due:
                raise AnswerDeadline(
                    f"no full answer in {limits.answer_seconds} s",
                    seconds=limits.answer_seconds,
                ) from err
            raise ReadTimeout(f"no data in {wait} s", seconds=wait) from err
        total += len(line)
        if total > limits.max_bytes:
            raise AnswerTooLong(
                f"answer over {limits.max_bytes} bytes", limit=limits.max_bytes
            )
        if line.startswith(b"data:"):
            wait = limits.data_gap_seconds
            data_due = loop.time() + wait
        yield line


async def iter_sse_data(lines: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Yield the data of each event (multi-line data joined by newlines).

    Comments (keep-alives) and `event`/`id`/`retry` fields are skipped; any other
    line is not server-sent events at all. Raw NUL characters are dropped: they are
    never text to say, and JSON does not allow them inside a string.
    """
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        line = line.replace("\x00", "")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
        elif name not in ("event", "id", "retry"):
            raise StreamError(f"not an SSE line: {line[:120]!r}", error=line[:120])
    if data:
        yield "\n".join(data)


def check_chunk(chunk: Any) -> dict[str, Any]:
    """Return a chunk; raise for an error event, or a chunk of the wrong shape."""
    if not isinstance(chunk, dict):
        raise StreamError(f"not a chunk: {chunk!r:.120}", error=str(chunk)[:120])
    if "error" in chunk:
        message, error = error_message(chunk, "unknown error")
        if error.get("type") == "exceed_context_size_error":
            raise error_for_status(HTTPStatus.BAD_REQUEST, message, error)
        if is_tool_parse_failure(message):
            raise UnparsableToolCall(f"error event: {message}", message=message)
        raise ErrorInStream(f"error event: {message}", message=message)
    choices = chunk.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise StreamError(f"bad choices: {chunk!r:.120}", error=str(chunk)[:120])
    return chunk


def carries_text(chunk: Mapping[str, Any]) -> bool:
    """Whether a chunk carries generated text: content, reasoning or a tool call."""
    return any(
        isinstance(choice, Mapping)
        and isinstance(delta := choice.get("delta"), Mapping)
        and any(delta.get(name) for name in _TEXT_FIELDS)
        for choice in chunk.get("choices") or ()
    )


async def iter_chat_chunks(
    lines: AsyncIterable[bytes], *, max_tokens: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Yield each chunk of a streamed chat completion, up to `[DONE]` (not yielded).

    A stream that ends without `[DONE]` and without a `finish_reason` was cut off:
    TruncatedStream. With `max_tokens` (the request's), the chunks that carry text
    are counted as tokens (llama-server sends one per token; estimating from the
    text would need the model's tokenizer): past it and CHAT_TOKEN_MARGIN, the
    server ignores the request's budget, AnswerOverBudget.
    """
    budget = None if max_tokens is None else max_tokens + CHAT_TOKEN_MARGIN
    finished = False
    texts = 0
    async for data in iter_sse_data(lines):
        if data.strip() == DONE:
            return
        try:
            chunk = check_chunk(json.loads(data))
        except ValueError as err:
            raise StreamError(f"not JSON: {data[:120]!r}", error=data[:120]) from err
        if budget is not None and carries_text(chunk):
            texts += 1
            if texts > budget:
                raise AnswerOverBudget(
                    f"{texts} chunks of text for max_tokens {max_tokens}",
                    tokens=max_tokens,
                )
        if any(choice.get("finish_reason") for choice in chunk.get("choices") or ()):
            finished = True
        yield chunk
    if not finished:
        raise TruncatedStream("the stream ended before the answer was finished")
