"""Faults: every one ends in an answer that says what went wrong, never in a raise.

A dedicated SmolLM2 llama-server (small context, an API key, stopped and restarted on
the same port) produces the real cases; the loopback fake only serves what a real
server cannot: malformed and truncated streams, invalid tool-call JSON, HTTP errors of
a proxy in front of it, and a server that ignores `stream`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import suppress
from datetime import timedelta
import json
from pathlib import Path
from typing import Any

from aiohttp import web
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.local_voice.const import (
    CONF_ACTION_ENDS_TURN,
    CONF_MAX_HISTORY,
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    DOMAIN,
    UPDATE_INTERVAL_SECONDS,
)
from custom_components.local_voice.llama_server import client as llama_client
from custom_components.local_voice.llama_server.sse import CHAT_TOKEN_MARGIN
from homeassistant.components import conversation
from homeassistant.components.conversation.trace import (
    ConversationTraceEventType,
    async_get_traces,
)
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import CONF_API_KEY, CONF_LLM_HASS_API, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import chat_session, intent
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.util import dt as dt_util

from .backends import SMOL, Backend, llama_argv, require, running, start
from .common import llama_entry, setup_entry
from .conversation_support import (
    FakeLlama,
    Handler,
    RecordingProxy,
    agent_id,
    answer_events,
    async_setup_home,
    chat_log_of,
    converse,
    http_error,
    json_answer,
    replay,
    speech,
    sse_events,
    tool_call_events,
)
from .test_conversation import converse_streaming

KEY = "local-voice-test-key"
CHAT = {CONF_LLM_HASS_API: [], CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 48}
N_CTX = 1024


class Restartable:
    """A real llama-server the tests may stop and start again on the same port."""

    def __init__(self, log_dir: Path) -> None:
        """Start SmolLM2 with 2 slots of 1024 tokens and an API key."""
        require(SMOL)
        self.argv = llama_argv(SMOL, "--api-key", KEY, ctx=2 * N_CTX, slots=2)
        self.log_dir = log_dir
        self.backend: Backend = start("llama-faults", self.argv, "http", log_dir)

    @property
    def url(self) -> str:
        """Base URL."""
        return self.backend.url

    def restart(self) -> None:
        """Start again on the same port (blocking)."""
        self.backend.stop()  # no-op when it was killed
        self.backend = start(
            "llama-faults", self.argv, "http", self.log_dir, port=self.backend.port
        )


@pytest.fixture(scope="module")
def faults_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    """A dedicated real llama-server for the fault tests."""
    server = Restartable(tmp_path_factory.mktemp("faults-logs"))
    with running(server.backend):
        yield server
    server.backend.stop()


async def _fake(
    hass: HomeAssistant, fakes: list[FakeLlama], *answers: Any
) -> FakeLlama:
    server = await FakeLlama(hass, list(answers)).start()
    fakes.append(server)
    return server


async def _tick(hass: HomeAssistant) -> None:
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=UPDATE_INTERVAL_SECONDS + 1)
    )
    await hass.async_block_till_done(wait_background_tasks=True)


def _assert_error(result: conversation.ConversationResult, text: str) -> None:
    assert text in speech(result), speech(result)
    assert result.response.response_type is intent.IntentResponseType.ERROR


def _traced_error() -> dict[str, Any]:
    """Return the newest error the agent kept in a conversation trace (whole text)."""
    return [
        event["data"]
        for trace in async_get_traces()
        for event in trace.as_dict()["events"]
        if event["event_type"] == ConversationTraceEventType.AGENT_DETAIL
        and "error" in event["data"]
    ][-1]


# --- malformed streams (loopback fake replaying real recordings) ---------------------


async def test_malformed_sse_line(hass: HomeAssistant, fake: list[FakeLlama]) -> None:
    """A line that is not JSON: what was said stays, then the user hears the fault."""
    events = sse_events("answer.sse")
    broken = [*events[:4], b"data: {not json\n\n", *events[4:]]
    server = await _fake(hass, fake, replay(broken))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    result = await converse(hass, "Say hello to Alice")
    _assert_error(result, "sent an answer I could not read")
    assert "{not json" in _traced_error()["details"]
    log = chat_log_of(hass, result.conversation_id)
    partial = log.content[-2]
    assert isinstance(partial, conversation.AssistantContent)
    assert partial.content  # the three deltas before the bad line


async def test_unknown_sse_field(hass: HomeAssistant, fake: list[FakeLlama]) -> None:
    """A line that is not SSE at all (a proxy's HTML) is reported, not raised."""
    events = sse_events("answer.sse")
    server = await _fake(hass, fake, replay([events[0], b"<html>502</html>\n\n"]))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    _assert_error(await converse(hass, "Hi"), "sent an answer I could not read")
    assert "<html>502</html>" in _traced_error()["details"]


async def test_truncated_stream(hass: HomeAssistant, fake: list[FakeLlama]) -> None:
    """The stream ends without finish_reason or [DONE]: the answer was cut off."""
    events = sse_events("answer.sse")
    server = await _fake(hass, fake, replay(events[:5]))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    _assert_error(await converse(hass, "Hi"), "answer stopped before it was finished")


async def test_connection_dropped(hass: HomeAssistant, fake: list[FakeLlama]) -> None:
    """The connection drops in the middle of the chunked body."""
    events = sse_events("answer.sse")
    server = await _fake(hass, fake, replay(events[:5], close_early=True))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    _assert_error(await converse(hass, "Hi"), "connection to the language model")


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (502, "<html><h1>502 Bad Gateway</h1></html>", "text/html", "HTTP 502"),
        (
            500,
            '{"error":{"code":500,"message":"out of memory","type":"server_error"}}',
            "application/json",
            "(HTTP 500)",
        ),
        (
            503,
            '{"error":{"code":503,"message":"Loading model",'
            '"type":"unavailable_error"}}',
            "application/json",
            "still loading its model",
        ),
    ],
)
async def test_http_errors(
    hass: HomeAssistant,
    fake: list[FakeLlama],
    status: int,
    body: str,
    content_type: str,
    expected: str,
) -> None:
    """HTTP errors from a proxy or the server are said, with the status."""
    server = await _fake(hass, fake, http_error(status, body, content_type))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    _assert_error(await converse(hass, "Hi"), expected)
    assert f"HTTP {status}" in _traced_error()["details"]


async def test_server_that_does_not_stream(
    hass: HomeAssistant, fake: list[FakeLlama]
) -> None:
    """A server answering one JSON document instead of SSE still gets an answer."""
    answer = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {
                    "role": "assistant",
                    "reasoning_content": "Greet briefly.",
                    "content": "Hello Alice!",
                },
            }
        ],
        "timings": {"prompt_n": 12, "cache_n": 30},
    }
    server = await _fake(hass, fake, json_answer(answer))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    result = await converse(hass, "Say hello to Alice")
    assert speech(result) == "Hello Alice!"
    last = chat_log_of(hass, result.conversation_id).content[-1]
    assert isinstance(last, conversation.AssistantContent)
    assert last.thinking_content == "Greet briefly."
    assert server.requests[0]["stream"] is True


# --- bounded answers: deadline, size, over-long lines (loopback fake) ----------------


def _endless(event: bytes, pause: float = 0.005) -> Handler:
    """Answer with the recorded start, then `event` again and again, never ending."""

    async def handler(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events = sse_events("answer.sse")
        with suppress(ConnectionError):
            await response.write(events[0] + events[1])
            while True:
                await response.write(event)
                await asyncio.sleep(pause)
        return response

    return handler


@pytest.mark.parametrize(
    ("event", "limits", "expected"),
    [
        (  # a model that never stops talking
            b'data: {"choices":[{"index":0,"delta":{"content":" and"}}]}\n\n',
            {"CHAT_ANSWER_DEADLINE_SECONDS": 0.4},
            "took longer than 0.4 seconds to answer, so I stopped it",
        ),
        (  # keep-alive comments only: the deadline comes before the data gap
            b": keep-alive\n\n",
            {"CHAT_ANSWER_DEADLINE_SECONDS": 0.4},
            "took longer than 0.4 seconds to answer, so I stopped it",
        ),
        (  # comments count toward the size too
            b": keep-alive\n\n",
            {"CHAT_ANSWER_MAX_BYTES": 4000},
            "grew longer than 4000 bytes, so I stopped it",
        ),
        (
            b'data: {"choices":[{"index":0,"delta":{"content":" and"}}]}\n\n',
            {"CHAT_ANSWER_MAX_BYTES": 4000},
            "grew longer than 4000 bytes, so I stopped it",
        ),
    ],
)
async def test_answer_limits(
    hass: HomeAssistant,
    fake: list[FakeLlama],
    monkeypatch: pytest.MonkeyPatch,
    event: bytes,
    limits: dict[str, float],
    expected: str,
) -> None:
    """An endless answer is closed at a limit; its words stay, the user is told."""
    for name, value in limits.items():
        monkeypatch.setattr(llama_client, name, value)
    server = await _fake(hass, fake, _endless(event))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    async with asyncio.timeout(30):  # without the limits this never ends
        result = await converse(hass, "Say hello to Alice")
    _assert_error(result, expected)
    partial = chat_log_of(hass, result.conversation_id).content[-2]
    assert isinstance(partial, conversation.AssistantContent)
    assert (partial.content or "").startswith("Alice")


async def test_over_long_sse_line(hass: HomeAssistant, fake: list[FakeLlama]) -> None:
    """One line over aiohttp's line buffer is said, not raised into the pipeline."""
    events = sse_events("answer.sse")
    long_line = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 2_000_000
    server = await _fake(hass, fake, replay([*events[:3], long_line + b'"}}]}\n\n']))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    result = await converse(hass, "Say hello to Alice")
    _assert_error(result, "sent an answer I could not read")
    assert "xxxx" not in speech(result)
    partial = chat_log_of(hass, result.conversation_id).content[-2]
    assert isinstance(partial, conversation.AssistantContent)
    assert (partial.content or "").startswith("Alice")


# --- a voice turn's bounds: token budget, data gaps, NUL, short errors (fake) --------

_AND = b'data: {"choices":[{"index":0,"delta":{"content":" and"}}]}\n\n'


def _comments_only() -> Handler:
    """Answer with keep-alive comments from the start, never any data."""

    async def handler(request: web.Request, _: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        with suppress(ConnectionError):
            while True:
                await response.write(b": keep-alive\n\n")
                await asyncio.sleep(0.005)
        return response

    return handler


def _silent() -> Handler:
    """Accept the request and send nothing, not even the headers, until it is gone."""

    async def handler(_: web.Request, __: dict[str, Any]) -> web.StreamResponse:
        await asyncio.Event().wait()  # cancelled when the client closes
        raise AssertionError

    return handler


async def test_stream_past_max_tokens(
    hass: HomeAssistant, fake: list[FakeLlama]
) -> None:
    """A server that ignores max_tokens is stopped at it, in seconds, not at 600 s."""
    server = await _fake(hass, fake, _endless(_AND))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    async with asyncio.timeout(10):
        result = await converse(hass, "Say hello to Alice")
    _assert_error(result, "kept talking past its limit of 48 tokens, so I stopped it")
    partial = chat_log_of(hass, result.conversation_id).content[-2]
    assert isinstance(partial, conversation.AssistantContent)
    assert (partial.content or "").startswith("Alice")  # the words said stay
    assert 48 <= (partial.content or "").count(" and") <= 48 + CHAT_TOKEN_MARGIN


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # data, then keep-alive comments only: the gap after the first data
        (_endless(b": keep-alive\n\n"), "gave no answer for 0.3 seconds"),
        # comments from the start: the wait for the first data (the prompt read)
        (_comments_only(), "gave no answer for 0.5 seconds"),
        # not even the headers (llama-server sends them after the prompt read)
        (_silent(), "gave no answer for 0.5 seconds"),
    ],
)
async def test_keep_alives_are_not_data(
    hass: HomeAssistant,
    fake: list[FakeLlama],
    monkeypatch: pytest.MonkeyPatch,
    answer: Handler,
    expected: str,
) -> None:
    """Comments keep no turn alive: the data gap and first-data wait end it."""
    monkeypatch.setattr(llama_client, "STREAM_FIRST_DATA_SECONDS", 0.5)
    monkeypatch.setattr(llama_client, "STREAM_DATA_GAP_SECONDS", 0.3)
    server = await _fake(hass, fake, answer)
    await setup_entry(hass, llama_entry(server.url, CHAT))
    async with asyncio.timeout(10):  # without the bounds: 300 s or the deadline
        result = await converse(hass, "Say hello to Alice")
    _assert_error(result, f"The language model server {expected}, so I stopped waiting")


def _with_raw_nul(events: list[bytes]) -> list[bytes]:
    """The events with each escaped NUL (\\u0000) sent as a raw NUL byte instead."""
    return [event.replace(b"\\u0000", b"\x00") for event in events]


@pytest.mark.parametrize("raw", [False, True])
async def test_nul_is_never_said(
    hass: HomeAssistant, fake: list[FakeLlama], raw: bool
) -> None:
    """NUL in an answer, escaped in the JSON or raw, is neither said nor kept."""
    events = answer_events("Hello\x00 Alice\x00!")
    assert b"\\u0000" in events[1]
    server = await _fake(hass, fake, replay(_with_raw_nul(events) if raw else events))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    result = await converse(hass, "Say hello to Alice")
    assert speech(result) == "Hello Alice!"
    last = chat_log_of(hass, result.conversation_id).content[-1]
    assert isinstance(last, conversation.AssistantContent)
    assert last.content == "Hello Alice!"


@pytest.mark.parametrize("raw", [False, True])
async def test_error_event_is_said_short_without_nul(
    hass: HomeAssistant, fake: list[FakeLlama], raw: bool
) -> None:
    """A server's long error text with NUL: one short sentence; the text is traced."""
    message = "slot 0: \x00" + "the KV cache could not be updated; " * 20
    error = json.dumps({"error": {"code": 500, "message": message}})
    events = [*sse_events("answer.sse")[:3], f"data: {error}\n\n".encode()]
    server = await _fake(hass, fake, replay(_with_raw_nul(events) if raw else events))
    await setup_entry(hass, llama_entry(server.url, CHAT))
    result = await converse(hass, "Say hello to Alice")
    said = speech(result)
    assert said == "The language model server reported an error while answering"
    details = _traced_error()["details"]
    assert "the KV cache could not be updated" in details
    assert "\x00" not in details


# --- tool-call JSON (recorded real tool call, arguments altered) ---------------------


@pytest.mark.parametrize(
    ("arguments", "repaired"),
    [
        ('```json\n{"name": "Kitchen light",}\n```', {"name": "Kitchen light"}),
        ("{'name': 'Kitchen light', 'area': None}", {"name": "Kitchen light"}),
        (
            '{"name": "Kitchen light", "area": "Kitchen"',
            {"name": "Kitchen light", "area": "Kitchen"},
        ),
        ("turn it on please", None),
    ],
)
async def test_tool_call_arguments(
    hass: HomeAssistant,
    fake: list[FakeLlama],
    arguments: str,
    repaired: dict[str, Any] | None,
) -> None:
    """Broken arguments are repaired when clear; otherwise the model is told, not HA.

    The recorded call names `HassTurnOn`; Home Assistant's tool is
    `intent__HassTurnOn`, which the agent resolves.
    """
    await async_setup_home(hass)
    server = await _fake(
        hass,
        fake,
        replay(tool_call_events(arguments)),
        replay(sse_events("answer.sse")),
    )
    # A second round after the action: the model reads the tool's result.
    options = {CONF_TEMPERATURE: 0.0, CONF_ACTION_ENDS_TURN: False}
    await setup_entry(hass, llama_entry(server.url, options))
    result = await converse(hass, "Turn on the kitchen light")

    log = chat_log_of(hass, result.conversation_id)
    call = next(c for c in log.content if isinstance(c, conversation.AssistantContent))
    assert call.tool_calls is not None
    assert call.tool_calls[0].tool_name == "intent__HassTurnOn"
    tool_result = next(
        c for c in log.content if isinstance(c, conversation.ToolResultContent)
    )
    second = server.requests[1]["messages"]
    assert second[-1]["role"] == "tool"
    if repaired is None:
        assert call.tool_calls[0].external
        assert tool_result.result.error
        assert tool_result.result.data["error"] == "InvalidArguments"
        assert "not a JSON object" in second[-1]["content"]
    else:
        assert call.tool_calls[0].tool_args == repaired
        assert not call.tool_calls[0].external
    # Either way the model had its say afterwards, and the user got its answer.
    assert speech(result).startswith("Alice")
    assert result.response.response_type is not intent.IntentResponseType.ERROR


async def test_two_tool_calls_by_index(
    hass: HomeAssistant, fake: list[FakeLlama]
) -> None:
    """Parallel tool calls (recorded) are assembled by index and both run."""
    await async_setup_home(hass)
    server = await _fake(
        hass,
        fake,
        replay(sse_events("two_tool_calls.sse")),
        replay(sse_events("answer.sse")),
    )
    await setup_entry(hass, llama_entry(server.url, {CONF_TEMPERATURE: 0.0}))
    result = await converse(hass, "Kitchen light on, bedroom light off")
    log = chat_log_of(hass, result.conversation_id)
    calls = next(
        c.tool_calls
        for c in log.content
        if isinstance(c, conversation.AssistantContent) and c.tool_calls
    )
    assert [(c.tool_name, c.tool_args) for c in calls] == [
        ("intent__HassTurnOn", {"area": "kitchen", "name": "light"}),
        ("intent__HassTurnOff", {"area": "bedroom", "name": "light"}),
    ]
    results = [c for c in log.content if isinstance(c, conversation.ToolResultContent)]
    assert [r.tool_call_id for r in results[:2]] == [c.id for c in calls]
    # Both name "light" in an area, which matches no name: each is grounded to the
    # light of its own area and made again, in one round, before the model's next.
    acted = [
        [t["id"] for t in r.result.data["data"]["success"] if t["type"] == "entity"]
        for r in results[2:]
    ]
    assert acted == [["light.kitchen_ceiling"], ["light.bedroom_light"]]
    roles = [message["role"] for message in server.requests[1]["messages"]]
    assert roles == [
        *("system", "user", "assistant", "tool", "tool", "assistant", "tool", "tool")
    ]


# --- the real server: context, key, restart, cancel ----------------------------------


async def test_history_trimmed_to_the_context(
    hass: HomeAssistant, faults_server: Restartable
) -> None:
    """Old turns are dropped so the next request fits n_ctx; the newest stays."""
    proxy = await RecordingProxy(faults_server.url).start()
    try:
        entry = await setup_entry(
            hass,
            llama_entry(proxy.url, {**CHAT, CONF_MAX_HISTORY: 0}, api_key=KEY),
        )
        filler = " ".join(["the quick brown fox jumps over the lazy dog"] * 20)
        with (
            chat_session.async_get_chat_session(hass) as session,
            conversation.async_get_chat_log(hass, session) as chat_log,
        ):
            for turn in range(6):
                chat_log.async_add_user_content(
                    conversation.UserContent(f"Question {turn}: {filler}")
                )
                chat_log.async_add_assistant_content_without_tools(
                    conversation.AssistantContent(
                        agent_id=agent_id(hass), content=f"Answer {turn}: {filler}"
                    )
                )
            conversation_id = session.conversation_id
        result = await converse(
            hass, "What was my last question?", conversation_id=conversation_id
        )
        sent = proxy.requests
    finally:
        await proxy.stop()
    assert result.response.response_type is not intent.IntentResponseType.ERROR
    messages = sent[-1]["messages"]
    assert messages[0]["role"] == "system"
    assert "Question" not in messages[0]["content"]
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert 1 < len(users) < 7
    assert users[-1].endswith("What was my last question?")
    assert not any(u.startswith("Question 0:") for u in users)
    assert users[0].startswith(f"Question {7 - len(users)}:")
    timings = entry.runtime_data.slots.timings[-1]
    assert timings["prompt_n"] + timings["cache_n"] <= N_CTX - 48


async def test_context_overflow(
    hass: HomeAssistant, faults_server: Restartable
) -> None:
    """One message larger than the context: the server refuses, the user is told."""
    await setup_entry(hass, llama_entry(faults_server.url, CHAT, api_key=KEY))
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 150)
    result = await converse(hass, text)
    _assert_error(result, "tokens but the model's context holds 1024")


async def test_refused_key_starts_reauth(
    hass: HomeAssistant, faults_server: Restartable
) -> None:
    """The server refuses the key (HTTP 401): said, and reauthentication starts."""
    entry = await setup_entry(hass, llama_entry(faults_server.url, CHAT, api_key=KEY))
    entry.runtime_data.client.api_key = "not-the-key"
    result = await converse(hass, "Hi")
    _assert_error(result, "refused the API key (HTTP 401)")
    await hass.async_block_till_done(wait_background_tasks=True)
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert entry.data[CONF_API_KEY] == KEY


async def test_server_restarted_mid_stream_then_down_then_back(
    hass: HomeAssistant, faults_server: Restartable
) -> None:
    """The server dies while answering, stays down, comes back on the same port."""
    await setup_entry(
        hass,
        llama_entry(faults_server.url, {**CHAT, CONF_MAX_TOKENS: 200}, api_key=KEY),
    )
    killed: list[bool] = []

    def on_delta(delta: dict[str, Any]) -> None:
        if delta.get("content") and not killed:
            faults_server.backend.process.kill()  # a crash, mid-answer
            killed.append(True)

    try:
        result = await converse_streaming(
            hass, "Write a long story about a dragon.", on_delta
        )
        assert killed
        _assert_error(result, "connection to the language model server broke")
        log = chat_log_of(hass, result.conversation_id)
        partial = log.content[-2]
        assert isinstance(partial, conversation.AssistantContent)
        assert partial.content

        # Down: the user hears so, and the entity goes unavailable.
        result = await converse(hass, "Are you there?")
        _assert_error(result, "I can't reach the language model server at")
        await hass.async_block_till_done(wait_background_tasks=True)
        state = hass.states.get(agent_id(hass))
        assert state is not None
        assert state.state == STATE_UNAVAILABLE
    finally:
        await hass.async_add_executor_job(faults_server.restart)

    await _tick(hass)
    state = hass.states.get(agent_id(hass))
    assert state is not None
    assert state.state != STATE_UNAVAILABLE
    result = await converse(hass, "Say hello.")
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
    assert speech(result)


async def test_cancelled_pipeline_closes_the_request(
    hass: HomeAssistant, faults_server: Restartable
) -> None:
    """Cancelling the pipeline closes the HTTP request: the server stops generating."""
    await setup_entry(
        hass,
        llama_entry(faults_server.url, {**CHAT, CONF_MAX_TOKENS: 1000}, api_key=KEY),
    )
    started = asyncio.Event()
    tasks_before = asyncio.all_tasks()

    def on_delta(delta: dict[str, Any]) -> None:
        if delta.get("content"):
            started.set()

    task = asyncio.create_task(
        converse_streaming(hass, "Count from one to five hundred in words.", on_delta)
    )
    await asyncio.wait_for(started.wait(), 120)
    assert await _processing(hass, faults_server)
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    for _ in range(50):
        if not await _processing(hass, faults_server):
            break
        await asyncio.sleep(0.2)
    assert not await _processing(hass, faults_server)
    await hass.async_block_till_done(wait_background_tasks=True)
    leaked = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
    assert leaked <= {asyncio.current_task()}


async def _processing(hass: HomeAssistant, server: Restartable) -> bool:
    """Return True while a slot of the server is generating."""
    async with async_get_clientsession(hass).get(
        f"{server.url}/slots", headers={"Authorization": f"Bearer {KEY}"}
    ) as resp:
        return any(slot.get("is_processing") for slot in await resp.json())
