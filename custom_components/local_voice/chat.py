"""Streaming chat completions against llama-server: request, SSE, tool-call repair.

Nothing here knows about entities. `async_stream_chat` sends one request and yields
the server's chunks as dicts; `DeltaTransformer` turns those chunks into the delta
dicts that Home Assistant's `ChatLog.async_add_delta_content_stream` consumes
(content, thinking, tool calls); `parse_tool_arguments` repairs what small models get
wrong in tool-call JSON.

Every failure becomes a `ChatError` carrying a translation key, so callers can tell the
user what went wrong in words instead of raising into Home Assistant.
"""

from __future__ import annotations

import ast
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
import contextlib
from dataclasses import dataclass, field
from http import HTTPStatus
import json
import re
from typing import Any

import aiohttp

from homeassistant.exceptions import HomeAssistantError

from .const import (
    DOMAIN,
    LOGGER,
    REQUEST_TIMEOUT_SECONDS,
    STREAM_READ_TIMEOUT_SECONDS,
)
from .llama_server import LlamaServerClient

CHAT_PATH = "/v1/chat/completions"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class ChatError(HomeAssistantError):
    """A chat request failed; the message says why, in the user's words."""

    #: The coordinator should re-check the server (down, restarting, key refused).
    refresh_server = False

    def __init__(self, translation_key: str, **placeholders: Any) -> None:
        """Build the error from a key in strings.json `exceptions`."""
        super().__init__(
            translation_domain=DOMAIN,
            translation_key=translation_key,
            translation_placeholders={k: str(v) for k, v in placeholders.items()},
        )


class ChatConnectionError(ChatError):
    """The server could not be reached, or the connection broke mid-answer."""

    refresh_server = True


class ChatHTTPError(ChatError):
    """The server answered the request with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        """Keep the status for callers that branch on it."""
        if status == HTTPStatus.UNAUTHORIZED:
            super().__init__("llm_auth_failed", status=status, message=message)
        elif status == HTTPStatus.SERVICE_UNAVAILABLE:
            super().__init__("llm_loading", status=status, message=message)
        else:
            super().__init__("llm_http_error", status=status, message=message)
        self.status = status
        self.refresh_server = status in (
            HTTPStatus.UNAUTHORIZED,
            HTTPStatus.SERVICE_UNAVAILABLE,
        )


class ContextOverflowError(ChatError):
    """The prompt does not fit the server's context (n_ctx per slot)."""

    def __init__(self, tokens: int, n_ctx: int) -> None:
        """Keep the sizes for the retry after trimming history."""
        super().__init__("llm_context_overflow", tokens=tokens, n_ctx=n_ctx)
        self.tokens = tokens
        self.n_ctx = n_ctx


class ChatStreamError(ChatError):
    """The stream itself went wrong: an error event, bad data, or it stopped early."""


class ToolLoopLimitError(ChatError):
    """The model kept calling tools without giving an answer."""

    def __init__(self, limit: int) -> None:
        """Say how many rounds were allowed."""
        super().__init__("llm_tool_loop_limit", limit=limit)


def _error_message(body: Any, fallback: str) -> tuple[str, Mapping[str, Any]]:
    """Return (message, error object) from an OpenAI-style error body."""
    if isinstance(body, Mapping) and isinstance(error := body.get("error"), Mapping):
        return str(error.get("message") or fallback), error
    if isinstance(body, Mapping) and isinstance(error, str):
        return error, {}
    return fallback, {}


def _raise_for_error_object(
    error: Mapping[str, Any], message: str, status: int
) -> None:
    """Raise the ChatError matching a llama-server error object."""
    if error.get("type") == "exceed_context_size_error":
        raise ContextOverflowError(
            int(error.get("n_prompt_tokens", 0)), int(error.get("n_ctx", 0))
        )
    raise ChatHTTPError(status, message)


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    """Map an HTTP error answer to a ChatError, reading llama-server's JSON body."""
    text = (await resp.text(errors="replace"))[:2000]
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    fallback = text.strip().splitlines()[0][:200] if text.strip() else resp.reason or ""
    message, error = _error_message(body, fallback)
    _raise_for_error_object(error, message, resp.status)


async def _iter_sse_data(resp: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """Yield the data of each server-sent event (multi-line data joined by newlines)."""
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("event", "id", "retry"):
            continue
        else:
            raise ChatStreamError("llm_malformed_stream", error=line[:120])
    if data:
        yield "\n".join(data)


async def async_stream_chat(
    client: LlamaServerClient, payload: Mapping[str, Any]
) -> AsyncGenerator[dict[str, Any]]:
    """POST a streaming chat request and yield each chunk as a dict.

    A server that ignores `stream` and answers with one JSON document is handled too:
    its single completion is yielded as one chunk (with `message` instead of `delta`).
    The final `[DONE]` is not yielded; a stream that ends without it and without a
    `finish_reason` raises ChatStreamError (truncated). Cancelling the consumer closes
    the HTTP connection, which tells llama-server to stop generating.
    """
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=REQUEST_TIMEOUT_SECONDS,
        sock_read=STREAM_READ_TIMEOUT_SECONDS,
    )
    # llama-server closes the connection after a streamed answer although it offers
    # keep-alive; without `Connection: close` the pool would hand that dead connection
    # to the next request.
    headers = {**client.headers, "Accept": "text/event-stream", "Connection": "close"}
    finished = False
    try:
        resp = await _async_post(client, payload, headers, timeout)
        async with resp:
            try:
                if resp.status >= HTTPStatus.BAD_REQUEST:
                    await _raise_for_status(resp)
                if resp.content_type == "application/json":
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError as err:
                        raise ChatStreamError(
                            "llm_malformed_stream", error=err
                        ) from err
                    _check_chunk(body)
                    yield body
                    return
                async for data in _iter_sse_data(resp):
                    if data.strip() == "[DONE]":
                        finished = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as err:
                        raise ChatStreamError(
                            "llm_malformed_stream", error=data[:120]
                        ) from err
                    _check_chunk(chunk)
                    if any(c.get("finish_reason") for c in chunk.get("choices") or ()):
                        finished = True
                    yield chunk
            except BaseException:
                # Close (not release) so the server sees the client go away at once.
                resp.close()
                raise
    except TimeoutError as err:
        raise ChatConnectionError(
            "llm_timeout", seconds=STREAM_READ_TIMEOUT_SECONDS
        ) from err
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as err:
        raise ChatConnectionError("llm_connection_lost", error=repr(err)) from err
    except aiohttp.ClientError as err:
        raise ChatConnectionError(
            "llm_cannot_connect", server=client.url, error=str(err) or repr(err)
        ) from err
    if not finished:
        raise ChatStreamError("llm_truncated_stream")


async def async_prompt_timings(
    client: LlamaServerClient, payload: Mapping[str, Any]
) -> dict[str, Any]:
    """Send a request for its prompt processing alone; return the server's timings."""
    timings: dict[str, Any] = {}
    async with contextlib.aclosing(async_stream_chat(client, payload)) as stream:
        async for chunk in stream:
            timings = chunk.get("timings") or timings
    return timings


async def _async_post(
    client: LlamaServerClient,
    payload: Mapping[str, Any],
    headers: dict[str, str],
    client_timeout: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """POST the request; retry once if a pooled connection was already closed.

    The server closes idle keep-alive connections before the client's pool forgets
    them; such a request fails before the server saw it, so sending again is safe.
    """
    url = f"{client.url}{CHAT_PATH}"
    try:
        return await client.session.post(
            url, json=payload, headers=headers, timeout=client_timeout
        )
    except aiohttp.ServerDisconnectedError:
        LOGGER.debug("Pooled connection to %s was closed; retrying once", client.url)
        return await client.session.post(
            url, json=payload, headers=headers, timeout=client_timeout
        )


def _check_chunk(chunk: Any) -> None:
    """Raise for an error event inside the stream, or a chunk of the wrong shape."""
    if not isinstance(chunk, dict):
        raise ChatStreamError("llm_malformed_stream", error=str(chunk)[:120])
    if "error" in chunk:
        message, error = _error_message(chunk, "unknown error")
        if error.get("type") == "exceed_context_size_error":
            _raise_for_error_object(error, message, HTTPStatus.BAD_REQUEST)
        raise ChatStreamError("llm_stream_error", message=message)
    choices = chunk.get("choices")
    if choices is not None and not isinstance(choices, list):
        raise ChatStreamError("llm_malformed_stream", error=str(chunk)[:120])


async def async_count_prompt_tokens(
    client: LlamaServerClient, payload: Mapping[str, Any]
) -> int:
    """Count the prompt's tokens exactly: the server's own template and tokenizer."""
    body = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    try:
        async with client.session.post(
            f"{client.url}/apply-template",
            json=body,
            headers=client.headers,
            timeout=timeout,
        ) as resp:
            if resp.status >= HTTPStatus.BAD_REQUEST:
                await _raise_for_status(resp)
            prompt = (await resp.json(content_type=None))["prompt"]
        async with client.session.post(
            f"{client.url}/tokenize",
            json={"content": prompt, "add_special": True, "parse_special": True},
            headers=client.headers,
            timeout=timeout,
        ) as resp:
            if resp.status >= HTTPStatus.BAD_REQUEST:
                await _raise_for_status(resp)
            return len((await resp.json(content_type=None))["tokens"])
    except (aiohttp.ClientError, TimeoutError) as err:
        raise ChatConnectionError(
            "llm_cannot_connect", server=client.url, error=str(err) or repr(err)
        ) from err
    except (KeyError, TypeError, ValueError) as err:
        raise ChatStreamError("llm_malformed_stream", error=repr(err)) from err


# --- tool-call arguments -------------------------------------------------------------

_FENCE = re.compile(r"^```(?:json|JSON)?\s*(.*?)\s*```$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class ToolArgumentsError(ValueError):
    """Tool-call arguments that could not be read, even after repair."""


def _scan_json(text: str) -> tuple[str | None, str]:
    """Read JSON text once, minding strings and escapes.

    Return the text up to the end of its first balanced object (None if it has
    none), and what would close the strings, arrays and objects left open at its end.
    """
    depth = 0
    stack: list[str] = []
    in_string = escape = False
    for index, char in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return text[: index + 1], ""
            if stack:
                stack.pop()
    return None, ('"' if in_string else "") + "".join(reversed(stack))


def _candidates(raw: str) -> list[str]:
    """Repairs to try, least invasive first."""
    text = raw.strip()
    if match := _FENCE.match(text):
        text = match.group(1).strip()
    candidates = [text]
    balanced, closing = _scan_json(text)
    if balanced and balanced != text:
        candidates.append(balanced)  # trailing chatter after the object
    candidates.append(_TRAILING_COMMA.sub(r"\1", text))
    if text.startswith("{") and balanced is None:
        candidates.append(_TRAILING_COMMA.sub(r"\1", text + closing))  # cut off
    return candidates


def _as_object(value: Any) -> dict[str, Any] | None:
    """Accept a dict, or a JSON string holding one (double-encoded arguments)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _clean(args: dict[str, Any]) -> dict[str, Any]:
    """Decode JSON-string values that hold lists/objects; drop null arguments."""
    cleaned: dict[str, Any] = {}
    for key, value in args.items():
        if value is None:
            continue
        cleaned[str(key)] = value
        if isinstance(value, str) and value[:1] + value[-1:] in ("[]", "{}"):
            with contextlib.suppress(ValueError):
                cleaned[str(key)] = json.loads(value)
    return cleaned


def parse_tool_arguments(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse a tool call's arguments, repairing small models' mistakes when clear.

    Repairs: empty → {}; code fences; text after the object; trailing commas;
    double-encoded JSON; Python-literal dicts (single quotes, True/None); an object
    cut off at the end; list/object values sent as JSON strings; null arguments.
    Raises ToolArgumentsError when the intent is not clear.
    """
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return _clean(dict(raw))
    if not raw.strip():
        return {}
    error: Exception | None = None
    for candidate in _candidates(raw):
        try:
            value = json.loads(candidate)
        except ValueError as err:
            error = error or err
            continue
        if (obj := _as_object(value)) is not None:
            return _clean(obj)
        error = error or ValueError(f"expected an object, got {type(value).__name__}")
    try:
        value = ast.literal_eval(_candidates(raw)[0])
    except ValueError, SyntaxError, MemoryError, RecursionError:
        pass
    else:
        if isinstance(value, dict):
            return _clean(value)
    raise ToolArgumentsError(f"{error}" if error else "not a JSON object")


def drop_unknown_arguments(
    args: dict[str, Any], parameters: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Drop arguments the tool's schema does not have (small models invent some)."""
    if not parameters or parameters.get("additionalProperties") is True:
        return args
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return args
    return {key: value for key, value in args.items() if key in properties}


def resolve_tool_name(name: str, tool_names: set[str]) -> str:
    """Map a tool name the model shortened (no `domain__` prefix) to the real one."""
    if name in tool_names or not name:
        return name
    matches = [tool for tool in tool_names if tool.endswith(f"__{name}")]
    if len(matches) == 1:
        return matches[0]
    lowered = {tool.lower(): tool for tool in tool_names}
    return lowered.get(name.lower(), name)


# --- reasoning inline in content ------------------------------------------------------


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


# --- chunks → Home Assistant deltas ---------------------------------------------------


@dataclass
class _ToolCallBuilder:
    """One tool call being assembled from deltas that share an index."""

    id: str = ""
    name: str = ""
    arguments: str = ""
    parsed: dict[str, Any] | None = None


@dataclass
class StreamResult:
    """What one request produced besides the deltas."""

    finish_reason: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    thinking: str = ""
    tool_calls: list[_ToolCallBuilder] = field(default_factory=list)


class DeltaTransformer:
    """Turn chat-completion chunks into Home Assistant delta dicts.

    Content deltas are released as they arrive (so TTS can start early); reasoning
    (`reasoning_content`, `reasoning`, or inline `<think>`) becomes `thinking_content`;
    tool-call fragments are accumulated by index and released once the choice
    finishes, with their arguments parsed (and repaired) by `parse_tool_arguments`.
    """

    def __init__(self) -> None:
        """Start an empty result."""
        self.result = StreamResult()
        self._think = ThinkSplitter()
        self._calls: dict[int, _ToolCallBuilder] = {}

    def feed(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Return the deltas a chunk produces (possibly none)."""
        if isinstance(timings := chunk.get("timings"), dict):
            self.result.timings = timings
        if isinstance(usage := chunk.get("usage"), dict):
            self.result.usage = usage
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
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self.result.thinking += reasoning
            out.append({"thinking_content": reasoning})
        content = delta.get("content")
        if isinstance(content, str) and content:
            thinking, text = self._think.feed(content)
            out.extend(self._released(thinking, text))
        for fragment in delta.get("tool_calls") or ():
            if isinstance(fragment, Mapping):
                self._add_tool_fragment(fragment)
        return out

    def _released(self, thinking: str, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if thinking:
            self.result.thinking += thinking
            out.append({"thinking_content": thinking})
        if text:
            self.result.content += text
            out.append({"content": text})
        return out

    def _add_tool_fragment(self, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        if not isinstance(index, int):
            index = len(self._calls)
        call = self._calls.setdefault(index, _ToolCallBuilder())
        if fragment.get("id"):
            call.id = str(fragment["id"])
        function = fragment.get("function") or {}
        if name := function.get("name"):
            call.name += str(name)
        arguments = function.get("arguments")
        if isinstance(arguments, Mapping):
            call.parsed = dict(arguments)
        elif arguments:
            call.arguments += str(arguments)

    def finish(self) -> list[dict[str, Any]]:
        """Release held-back content; return the deltas for it."""
        return self._released(*self._think.flush())

    def tool_calls(self) -> list[_ToolCallBuilder]:
        """Return the assembled tool calls, in index order."""
        calls = [self._calls[index] for index in sorted(self._calls)]
        self.result.tool_calls = calls
        return calls


def log_unparsed(name: str, raw: str, err: Exception) -> None:
    """Log a tool call whose arguments could not be repaired."""
    LOGGER.warning("Tool call %s has unreadable arguments %r: %s", name, raw[:300], err)
