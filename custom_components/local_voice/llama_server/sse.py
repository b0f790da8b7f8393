"""Reading a streamed chat completion: server-sent events to chat chunks.

Works on any async iterable of byte lines (an aiohttp response's content, or a list
in a test), so it is tested without a server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from http import HTTPStatus
import json
from typing import Any

from .errors import (
    AnswerDeadline,
    AnswerTooLong,
    ErrorInStream,
    StreamError,
    TruncatedStream,
    UnparsableToolCall,
    error_for_status,
    error_message,
    is_tool_parse_failure,
)

DONE = "[DONE]"


async def bounded_lines(
    lines: AsyncIterable[bytes], *, deadline: float, max_bytes: int, seconds: float
) -> AsyncIterator[bytes]:
    """Yield lines until the loop time `deadline` or `max_bytes` in all.

    Every line counts, keep-alive comments too, so a server that streams forever
    or only keeps the connection alive ends in AnswerDeadline or AnswerTooLong.
    """
    iterator = aiter(lines)
    total = 0
    while True:
        scope = asyncio.timeout_at(deadline)
        try:
            async with scope:
                line = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError as err:
            if scope.expired():
                raise AnswerDeadline(
                    f"no full answer in {seconds} s", seconds=seconds
                ) from err
            raise  # the idle timeout: the caller's ReadTimeout
        total += len(line)
        if total > max_bytes:
            raise AnswerTooLong(f"answer over {max_bytes} bytes", limit=max_bytes)
        yield line


async def iter_sse_data(lines: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Yield the data of each event (multi-line data joined by newlines).

    Comments (keep-alives) and `event`/`id`/`retry` fields are skipped; any other
    line is not server-sent events at all.
    """
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
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


async def iter_chat_chunks(
    lines: AsyncIterable[bytes],
) -> AsyncIterator[dict[str, Any]]:
    """Yield each chunk of a streamed chat completion, up to `[DONE]` (not yielded).

    A stream that ends without `[DONE]` and without a `finish_reason` was cut off:
    TruncatedStream.
    """
    finished = False
    async for data in iter_sse_data(lines):
        if data.strip() == DONE:
            return
        try:
            chunk = check_chunk(json.loads(data))
        except ValueError as err:
            raise StreamError(f"not JSON: {data[:120]!r}", error=data[:120]) from err
        if any(choice.get("finish_reason") for choice in chunk.get("choices") or ()):
            finished = True
        yield chunk
    if not finished:
        raise TruncatedStream("the stream ended before the answer was finished")
