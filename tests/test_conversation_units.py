"""Pieces of the agent without a model: argument repair, thinking split, SSE, slots."""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

import aiohttp
import pytest

from custom_components.local_voice.chat import (
    ChatStreamError,
    DeltaTransformer,
    ThinkSplitter,
    ToolArgumentsError,
    async_stream_chat,
    drop_unknown_arguments,
    parse_tool_arguments,
    resolve_tool_name,
)
from custom_components.local_voice.llama_server import LlamaServerClient
from custom_components.local_voice.llm_entity import ChatState, reasoning_options

from .conversation_support import FakeLlama, replay, sse_events

COMPONENT = Path(__file__).parent.parent / "custom_components" / "local_voice"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"name": "Kitchen light"}', {"name": "Kitchen light"}),
        ("", {}),
        (None, {}),
        ({"name": "x", "area": None}, {"name": "x"}),
        ('"{\\"name\\": \\"x\\"}"', {"name": "x"}),  # double-encoded
        ('```json\n{"name": "x"}\n```', {"name": "x"}),
        ('{"name": "x"} I turned it on.', {"name": "x"}),
        ('{"name": "x", "domain": ["light",],}', {"name": "x", "domain": ["light"]}),
        ("{'name': 'x', 'on': True, 'area': None}", {"name": "x", "on": True}),
        ('{"name": "x", "area": "Kit', {"name": "x", "area": "Kit"}),  # cut off
        ('{"domain": "[\\"light\\", \\"fan\\"]"}', {"domain": ["light", "fan"]}),
    ],
)
def test_parse_tool_arguments_repairs(raw: Any, expected: dict[str, Any]) -> None:
    """What small models get wrong, when the intent is clear."""
    assert parse_tool_arguments(raw) == expected


@pytest.mark.parametrize("raw", ["turn on the light", "[1, 2]", '"just a string"', "{"])
def test_parse_tool_arguments_refuses(raw: str) -> None:
    """Not an object, and no clear repair: the model gets told."""
    if raw == "{":
        assert parse_tool_arguments(raw) == {}  # cut off before any argument
        return
    with pytest.raises(ToolArgumentsError):
        parse_tool_arguments(raw)


def test_tool_names_and_unknown_arguments() -> None:
    """A dropped `domain__` prefix is restored; invented arguments are dropped."""
    names = {"intent__HassTurnOn", "intent__HassTurnOff", "light__HassLightSet"}
    assert resolve_tool_name("HassTurnOn", names) == "intent__HassTurnOn"
    assert resolve_tool_name("hassturnoff", names) == "hassturnoff"
    assert resolve_tool_name("INTENT__HASSTURNOFF", names) == "intent__HassTurnOff"
    assert resolve_tool_name("Unknown", names) == "Unknown"
    schema = {"type": "object", "properties": {"name": {}, "area": {}}}
    assert drop_unknown_arguments({"name": "a", "temperature": "0"}, schema) == {
        "name": "a"
    }
    open_schema = {**schema, "additionalProperties": True}
    assert drop_unknown_arguments({"x": 1}, open_schema) == {"x": 1}


@pytest.mark.parametrize(
    ("chunks", "thinking", "content"),
    [
        (
            ["<th", "ink>I should ", "greet.</th", "ink>\n\nHel", "lo!"],
            "I should greet.",
            "Hello!",
        ),
        (["  <think>\nx\n</think>", "", "\n", "Hi"], "\nx\n", "Hi"),
        (
            ["Hello ", "<think>not thinking</think>"],
            "",
            "Hello <think>not thinking</think>",
        ),
        (["<", "b>bold</b>"], "", "<b>bold</b>"),
        (["<think>never closed"], "never closed", ""),
    ],
)
def test_think_splitter(chunks: list[str], thinking: str, content: str) -> None:
    """Tags split across chunks; content is released as soon as it cannot be a tag."""
    splitter = ThinkSplitter()
    got_thinking = got_content = ""
    for chunk in chunks:
        t, c = splitter.feed(chunk)
        got_thinking += t
        got_content += c
    t, c = splitter.flush()
    assert (got_thinking + t, got_content + c) == (thinking, content)


def test_plain_content_is_not_held_back() -> None:
    """Text that cannot start a <think> tag streams at once (TTS waits for nothing)."""
    splitter = ThinkSplitter()
    assert splitter.feed("Sure") == ("", "Sure")
    assert splitter.feed(", done.") == ("", ", done.")


def test_tool_call_deltas_accumulate_by_index() -> None:
    """Fragments of interleaved calls are joined per index; reasoning is thinking."""
    transformer = DeltaTransformer()

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = []
    out += transformer.feed(chunk({"reasoning": "think "}))
    out += transformer.feed(chunk({"reasoning_content": "more"}))
    for delta in (
        {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "On"}}]},
        {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "Off"}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"name":'}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": '{"area": "x"}'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "lamp"}'}}]},
    ):
        out += transformer.feed(chunk(delta))
    out += transformer.feed({**chunk({}, "tool_calls"), "timings": {"cache_n": 5}})
    assert out == [{"thinking_content": "think "}, {"thinking_content": "more"}]
    calls = transformer.tool_calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a", "On", '{"name": "lamp"}'),
        ("b", "Off", '{"area": "x"}'),
    ]
    assert transformer.result.finish_reason == "tool_calls"
    assert transformer.result.timings == {"cache_n": 5}


async def test_sse_comments_multiline_data_and_error_event() -> None:
    """Keep-alive comments and `event:` lines are skipped; an error event is raised."""
    events = sse_events("answer.sse")
    first = json.loads(events[1].decode().removeprefix("data: "))
    lines = json.dumps(first, indent=1).split("\n")
    split = "".join(f"data: {line}\n" for line in lines).encode() + b"\n"
    body = [
        b": keep-alive\n\n",
        b"event: message\n" + events[0],
        split,
        b'data: {"error": {"code": 500, "message": "boom", "type": "server_error"}}'
        b"\n\n",
    ]
    fake = await FakeLlama([replay(body)]).start()
    chunks: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as session:
            client = LlamaServerClient(session, fake.url)
            with pytest.raises(ChatStreamError) as err:
                async for chunk in async_stream_chat(client, {"messages": []}):
                    chunks.append(chunk)
    finally:
        await fake.stop()
    assert len(chunks) == 2
    assert chunks[1] == first
    assert err.value.translation_key == "llm_stream_error"
    assert err.value.translation_placeholders == {"message": "boom"}


def test_slots_pinned_and_spread() -> None:
    """Each (agent, device) keeps its slot; new ones take the least used slot."""
    state = ChatState()
    assert state.slot_for("agent", "kitchen", 2) == 0
    assert state.slot_for("agent", "bedroom", 2) == 1
    assert state.slot_for("agent", None, 2) == 0
    assert state.slot_for("agent", "office", 2) == 1
    assert state.slot_for("agent", "kitchen", 2) == 0
    assert state.slot_for("agent", "bedroom", 2) == 1
    assert state.slot_for("other agent", "kitchen", 2) == 0
    # The server restarted with another slot count: start over.
    assert state.slot_for("agent", "bedroom", 4) == 0
    assert state.slot_for("agent", "kitchen", 4) == 1
    assert state.as_dict()["slots"][0] == {
        "agent": "agent",
        "device_id": "bedroom",
        "slot": 0,
    }


def test_slots_to_warm() -> None:
    """An agent warms empty slots and its own stale ones, never another agent's."""
    state = ChatState()
    assert state.claim_cold_slots("agent", "v1", 3) == [0, 1, 2]
    assert state.claim_cold_slots("agent", "v1", 3) == []  # claimed: warm or warming
    # The AI task used slot 2: it holds another prefix now.
    assert state.note_request(2, "ai task", "t1", {"prompt_n": 900, "cache_n": 0})
    # The exposed devices changed: the conversation's prefix is v2 on slot 0 now.
    warm = {"prompt_n": 40, "cache_n": 3000}
    assert not state.note_request(0, "agent", "v2", warm)
    assert state.claim_cold_slots("agent", "v2", 3) == [1]
    # A chat that re-read its prefix: the server lost it; our other slots are stale.
    assert state.note_request(1, "agent", "v2", {"prompt_n": 3040, "cache_n": 0})
    assert state.claim_cold_slots("agent", "v2", 3) == [0]
    # Short prompts are not worth a warm-up: never called cold.
    assert not state.note_request(1, "agent", "v2", {"prompt_n": 200, "cache_n": 10})
    state.forget("agent", [0])
    assert state.as_dict()["held"] == [
        {"slot": 1, "agent": "agent", "prefix": "v2"},
        {"slot": 2, "agent": "ai task", "prefix": "t1"},
    ]
    # Another slot count: the server restarted; nothing is known.
    assert state.claim_cold_slots("agent", "v2", 2) == [0, 1]


def test_reasoning_options() -> None:
    """Off is said both ways llama-server understands; levels go to the template."""
    assert reasoning_options("off") == {
        "reasoning_effort": "none",
        "chat_template_kwargs": {"enable_thinking": False},
    }
    assert reasoning_options("medium") == {
        "reasoning_effort": "medium",
        "chat_template_kwargs": {"enable_thinking": True},
    }


def test_every_chat_error_has_a_string() -> None:
    """Each translation key the agent can say is in strings.json (and en.json)."""
    strings = json.loads((COMPONENT / "strings.json").read_text())["exceptions"]
    keys: set[str] = set()
    for name in ("chat.py", "llm_entity.py", "ai_task.py", "conversation.py"):
        source = (COMPONENT / name).read_text()
        keys |= set(re.findall(r'(?:Chat\w*Error|__init__)\(\s*"(\w+)"', source))
        keys |= set(re.findall(r'translation_key="(\w+)"', source))
    assert {"llm_cannot_connect", "llm_http_error", "llm_tool_loop_limit"} <= keys
    assert keys <= set(strings)
