"""The llama-server HTTP client: every endpoint local_voice uses, one error mapping.

GETs (/health, /v1/models, /props, /slots) check and describe the server; POSTs
stream chat completions and count prompt tokens. Every failure, transport or HTTP,
becomes a `LlamaServerError` (errors.py); HTTP statuses are mapped in one place.

A router (llama-server started with `--models-preset` or `--models-dir`) runs each
of its models in a child server: it lists them with their status on /v1/models, and
answers /props for a loaded one when asked with `?model=` (and `autoload=false`, so
that asking loads nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
import contextlib
from http import HTTPStatus
import json
import logging
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from .errors import (
    AnswerDeadline,
    AnswerTooLong,
    CannotConnect,
    ConnectionLost,
    LlamaServerError,
    ModelNotLoaded,
    NotLlamaServer,
    ReadTimeout,
    StreamError,
    error_for_status,
    error_message,
)
from .props import ServerProps
from .sse import StreamLimits, bounded_lines, check_chunk, iter_chat_chunks
from .url import strip_user_info

_LOGGER = logging.getLogger(__name__)

# Every request but a chat: connecting, and the whole answer.
REQUEST_TIMEOUT_SECONDS = 10
# How long an answer may go without data; keep-alive comments are not data. Until the
# first data line the server reads the prompt: a cold prompt of several thousand tokens
# takes minutes on a slow CPU (4000 tokens at 15 tokens/s is 270 s). After it,
# llama-server sends a chunk per token and only pauses while its parser holds back a
# tool call: 30 s is 300 tokens at a slow CPU's 10 tokens/s, more than any call, and
# ends a stalled turn before text-to-speech stops waiting (TTS_TEXT_TIMEOUT_SECONDS in
# wyoming_client/synthesis.py).
STREAM_FIRST_DATA_SECONDS = 300
STREAM_DATA_GAP_SECONDS = 30
# Longest time one answer may take in all, and most bytes its stream may send
# (keep-alive comments count): a server that never finishes cannot hold a turn.
# The deadline leaves room for a cold prompt on a slow CPU (the first wait above).
CHAT_ANSWER_DEADLINE_SECONDS = 600
CHAT_ANSWER_MAX_BYTES = 8 * 1024 * 1024

CHAT_PATH = "/v1/chat/completions"


async def _read_bounded(
    resp: aiohttp.ClientResponse, limit: int, *, cut: bool = False
) -> bytes:
    """Read a whole body up to `limit` bytes: cut there, or raise AnswerTooLong."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            if cut:
                return bytes(body[:limit])
            raise AnswerTooLong(f"answer over {limit} bytes", limit=limit)
    return bytes(body)


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    """Raise the error an HTTP error answer stands for (reading its JSON body)."""
    if resp.status < HTTPStatus.BAD_REQUEST:
        return
    text = (await _read_bounded(resp, 4096, cut=True)).decode(errors="replace")[:2000]
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    fallback = text.strip().splitlines()[0][:200] if text.strip() else resp.reason or ""
    message, error = error_message(body, fallback)
    raise error_for_status(resp.status, message, error)


def _short(err: BaseException) -> str:
    """Say a reading error in a few words, without the bytes aiohttp quotes."""
    if isinstance(err, LineTooLong):
        return f"a line longer than {err.args[1]} bytes"
    if isinstance(err, HttpProcessingError):
        return type(err).__name__
    return (str(err) or type(err).__name__).splitlines()[0][:120]


class LlamaServerClient:
    """Talks to one llama-server over Home Assistant's shared aiohttp session."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, api_key: str | None = None
    ) -> None:
        """Store the session and address; no I/O happens here."""
        self.session = session
        self.url = url.rstrip("/")
        self.api_key = api_key or None

    @property
    def headers(self) -> dict[str, str]:
        """Return the auth header llama-server's --api-key expects."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _cannot_connect(self, err: BaseException) -> CannotConnect:
        return CannotConnect(
            f"{self.url}: {err!r}", server=self.url, error=str(err) or repr(err)
        )

    async def _request_json(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        """Send one short request and return its JSON answer."""
        try:
            async with self.session.request(
                method,
                f"{self.url}{path}",
                json=body,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            ) as resp:
                await _raise_for_status(resp)
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise self._cannot_connect(err) from err
        except (ValueError, HttpProcessingError) as err:
            raise NotLlamaServer(f"{path}: answer is not JSON") from err

    async def async_get_props(self) -> ServerProps:
        """Check the server end to end: alive, key accepted, and really llama-server.

        /health is public even with --api-key, so /v1/models is what proves the key.
        """
        health = await self._request_json("GET", "/health")
        if not isinstance(health, dict) or health.get("status") != "ok":
            raise NotLlamaServer(f"unexpected /health answer: {health!r}")
        models = await self._request_json("GET", "/v1/models")
        if not isinstance(models, dict) or not isinstance(models.get("data"), list):
            raise NotLlamaServer("unexpected /v1/models answer")
        props = await self._request_json("GET", "/props")
        if not isinstance(props, dict):
            raise NotLlamaServer("unexpected /props answer")
        if props.get("role") == "router":
            return ServerProps.from_router(props, models["data"])
        return ServerProps.from_props(props)

    async def async_get_model_props(self, model: str) -> ServerProps | None:
        """Return a router's loaded model's properties; None if it is not loaded.

        Asked with `autoload=false`: a poll never loads (nor, with `--models-max`,
        unloads) a model.
        """
        query = urlencode({"model": model, "autoload": "false"})
        try:
            props = await self._request_json("GET", f"/props?{query}")
        except ModelNotLoaded:
            return None
        if not isinstance(props, dict):
            raise NotLlamaServer("unexpected /props answer")
        return ServerProps.from_props(props)

    async def async_get_slots(self) -> list[dict[str, Any]]:
        """Return /slots: each slot's context size and whether it is busy."""
        slots = await self._request_json("GET", "/slots")
        if not isinstance(slots, list):
            raise NotLlamaServer("unexpected /slots answer")
        return [slot for slot in slots if isinstance(slot, dict)]

    async def async_count_prompt_tokens(self, payload: Mapping[str, Any]) -> int:
        """Count a chat's prompt tokens exactly: the server's template and tokenizer."""
        body = {
            k: v for k, v in payload.items() if k not in ("stream", "stream_options")
        }
        try:
            prompt = (await self._request_json("POST", "/apply-template", body))[
                "prompt"
            ]
            tokens = await self._request_json(
                "POST",
                "/tokenize",
                {"content": prompt, "add_special": True, "parse_special": True},
            )
            return len(tokens["tokens"])
        except (KeyError, TypeError) as err:
            raise StreamError(f"bad token count: {err!r}", error=repr(err)) from err
        except NotLlamaServer as err:
            raise StreamError(str(err), error=str(err)) from err

    async def async_stream_chat(
        self, payload: Mapping[str, Any]
    ) -> AsyncGenerator[dict[str, Any]]:
        """POST a streaming chat request and yield each chunk as a dict.

        A server that ignores `stream` and answers with one JSON document is handled
        too: its single completion is yielded as one chunk (with `message` instead of
        `delta`). Cancelling the consumer closes the HTTP connection, which tells
        llama-server to stop generating. The answer is bounded (sse.StreamLimits: a
        wait for its first data, a gap between data, a deadline and a size) and held
        to the request's `max_tokens`; any failure, also while reading, is raised as a
        LlamaServerError.
        """
        # The limits are read here, so a test may change them for one request.
        limits = StreamLimits(
            answer_seconds=CHAT_ANSWER_DEADLINE_SECONDS,
            max_bytes=CHAT_ANSWER_MAX_BYTES,
            first_data_seconds=STREAM_FIRST_DATA_SECONDS,
            data_gap_seconds=STREAM_DATA_GAP_SECONDS,
        )
        # The waits are the limits' own: aiohttp's read timeout would count comments.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=REQUEST_TIMEOUT_SECONDS
        )
        started = asyncio.get_running_loop().time()
        # Until the first data: llama-server sends its headers after the prompt read.
        first_data = started + min(limits.first_data_seconds, limits.answer_seconds)
        max_tokens = payload.get("max_tokens")
        # llama-server closes the connection after a streamed answer although it
        # offers keep-alive; without `Connection: close` the pool would hand that
        # dead connection to the next request.
        headers = {**self.headers, "Accept": "text/event-stream", "Connection": "close"}
        try:
            async with asyncio.timeout_at(first_data):
                resp = await self._async_post_chat(payload, headers, timeout)
            async with resp:
                try:
                    async with asyncio.timeout_at(first_data):
                        await _raise_for_status(resp)
                        body = None
                        if resp.content_type == "application/json":
                            body = await _read_bounded(resp, limits.max_bytes)
                    if body is not None:
                        try:
                            yield check_chunk(json.loads(body))
                        except ValueError as err:
                            raise StreamError(str(err), error=err) from err
                        return
                    lines = bounded_lines(resp.content, limits, started=started)
                    async for chunk in iter_chat_chunks(
                        lines,
                        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
                    ):
                        yield chunk
                except BaseException:
                    # Close (not release) so the server sees the client go away.
                    resp.close()
                    raise
        except (aiohttp.ClientError, HttpProcessingError, ValueError, OSError) as err:
            raise self._chat_error(err, limits) from err

    def _chat_error(self, err: Exception, limits: StreamLimits) -> LlamaServerError:
        """Return the error a failed chat raises; the first check that fits wins.

        A timeout here is the wait for the first data (or the deadline, when it comes
        first): bounded_lines raises its own errors for the waits after it.
        """
        if isinstance(err, TimeoutError):
            if limits.answer_seconds <= limits.first_data_seconds:
                return AnswerDeadline(
                    f"{self.url}: no full answer in {limits.answer_seconds} s",
                    seconds=limits.answer_seconds,
                )
            return ReadTimeout(
                f"{self.url}: no answer in {limits.first_data_seconds} s",
                seconds=limits.first_data_seconds,
            )
        if isinstance(
            err,
            aiohttp.ClientPayloadError
            | aiohttp.ServerDisconnectedError
            | ConnectionError,
        ):
            return ConnectionLost(f"{self.url}: {err!r}", error=repr(err))
        if isinstance(err, aiohttp.ClientError):
            return self._cannot_connect(err)
        # aiohttp's LineTooLong (an SSE line over its buffer), bad encodings...
        return StreamError(f"{self.url}: {err!r}", error=_short(err))

    async def async_load_model(self, model: str) -> None:
        """Ask a router to load one of its models (it answers before the load ends)."""
        await self._request_json("POST", "/models/load", {"model": model})

    async def async_prompt_timings(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send a request for its prompt processing alone; return the timings."""
        timings: dict[str, Any] = {}
        async with contextlib.aclosing(self.async_stream_chat(payload)) as stream:
            async for chunk in stream:
                timings = chunk.get("timings") or timings
        return timings

    async def _async_post_chat(
        self,
        payload: Mapping[str, Any],
        headers: dict[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """POST the request; retry once if a pooled connection was already closed.

        The server closes idle keep-alive connections before the client's pool
        forgets them; such a request fails before the server saw it, so sending
        again is safe.
        """
        url = f"{self.url}{CHAT_PATH}"
        try:
            return await self.session.post(
                url, json=payload, headers=headers, timeout=client_timeout
            )
        except aiohttp.ServerDisconnectedError:
            _LOGGER.debug(
                "Pooled connection to %s was closed; retrying once",
                strip_user_info(self.url),
            )
            return await self.session.post(
                url, json=payload, headers=headers, timeout=client_timeout
            )
