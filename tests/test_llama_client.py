"""The llama-server client on its own: endpoints, one error tree, one status mapping.

No Home Assistant here (the autouse fixture that starts it is overridden): the
client talks to a real llama-server, or to the loopback fake for what a real one
cannot be made to answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from http import HTTPStatus
import json
from typing import Any

import aiohttp
import pytest

from custom_components.local_voice.llama_server.client import LlamaServerClient
from custom_components.local_voice.llama_server.errors import (
    CannotConnect,
    ContextOverflow,
    ErrorInStream,
    InvalidAuth,
    LlamaServerError,
    NotLlamaServer,
    ServerLoading,
    error_for_status,
)

from .backends import Backend, free_port
from .conversation_support import FakeLlama, http_error, replay, sse_events


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the suite's Home Assistant set-up: nothing here needs it."""


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, as Home Assistant's shared one would be."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.mark.parametrize(
    ("status", "error", "key", "refresh"),
    [
        (HTTPStatus.UNAUTHORIZED, InvalidAuth, "llm_auth_failed", True),
        (HTTPStatus.SERVICE_UNAVAILABLE, ServerLoading, "llm_loading", True),
        (HTTPStatus.NOT_FOUND, NotLlamaServer, "llm_http_error", False),
        (HTTPStatus.INTERNAL_SERVER_ERROR, LlamaServerError, "llm_http_error", False),
    ],
)
def test_one_status_mapping(
    status: int, error: type[LlamaServerError], key: str, refresh: bool
) -> None:
    """Each HTTP status is one error, with the user's words and whether to re-poll."""
    mapped = error_for_status(status, "boom")
    assert type(mapped) is error
    assert mapped.translation_key == key
    assert mapped.refresh_server is refresh
    overflow = error_for_status(
        400, "too long", {"type": "exceed_context_size_error", "n_ctx": 4096}
    )
    assert isinstance(overflow, ContextOverflow)
    assert overflow.translation_placeholders == {"tokens": "0", "n_ctx": "4096"}


async def test_every_endpoint_of_a_real_server(
    session: aiohttp.ClientSession, llama_chat_server: Backend
) -> None:
    """/health + /v1/models + /props, /slots, token counting and a streamed chat."""
    client = LlamaServerClient(session, llama_chat_server.url)
    props = await client.async_get_props()
    assert props.total_slots == 2
    assert not props.supports_tools
    slots = await client.async_get_slots()
    assert [slot["id"] for slot in slots] == [0, 1]
    payload = {
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
        "stream": True,
    }
    assert 3 < await client.async_count_prompt_tokens(payload) < 100
    chunks = [chunk async for chunk in client.async_stream_chat(payload)]
    assert chunks[-1]["timings"]["prompt_n"] > 0
    timings = await client.async_prompt_timings(payload)
    assert timings["cache_n"] > 0  # the same prompt again: read from the cache


async def test_nothing_listening(session: aiohttp.ClientSession) -> None:
    """No server: CannotConnect, from the GETs and the chat alike."""
    client = LlamaServerClient(session, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(CannotConnect):
        await client.async_get_props()
    with pytest.raises(CannotConnect) as err:
        async for _chunk in client.async_stream_chat({"messages": []}):
            pass
    assert err.value.translation_key == "llm_cannot_connect"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, '{"error": {"message": "Invalid API Key"}}', InvalidAuth),
        (503, '{"error": {"message": "Loading model"}}', ServerLoading),
        (500, "<html>Bad gateway</html>", LlamaServerError),
    ],
)
async def test_chat_http_errors(
    session: aiohttp.ClientSession, status: int, body: str, error: type[Exception]
) -> None:
    """The chat's HTTP errors go through the same mapping as the GETs'."""
    fake = await FakeLlama(None, [http_error(status, body)]).start()
    try:
        client = LlamaServerClient(session, fake.url)
        with pytest.raises(error) as raised:
            async for _chunk in client.async_stream_chat({"messages": []}):
                pass
    finally:
        await fake.stop()
    assert raised.value.translation_placeholders["status"] == str(status)


async def test_error_event_after_some_chunks(session: aiohttp.ClientSession) -> None:
    """Chunks before an error event are yielded; then the error is raised."""
    events = sse_events("answer.sse")
    error = {"error": {"code": 500, "message": "boom", "type": "server_error"}}
    body = [*events[:2], f"data: {json.dumps(error)}\n\n".encode()]
    fake = await FakeLlama(None, [replay(body)]).start()
    chunks: list[dict[str, Any]] = []
    try:
        client = LlamaServerClient(session, fake.url)
        with pytest.raises(ErrorInStream) as err:
            async for chunk in client.async_stream_chat({"messages": []}):
                chunks.append(chunk)
    finally:
        await fake.stop()
    assert len(chunks) == 2
    assert err.value.translation_placeholders == {"message": "boom"}
