"""Reading llama-server's answers, without a server or Home Assistant.

Server-sent events to chunks, chunks to chat-log deltas, inline reasoning, and the
repair of small models' tool-call arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
import json
from typing import Any

import pytest

from custom_components.local_voice.llama_server.deltas import DeltaTransformer
from custom_components.local_voice.llama_server.errors import (
    AnswerOverBudget,
    ContextOverflow,
    ErrorInStream,
    StreamError,
    TruncatedStream,
)
from custom_components.local_voice.llama_server.reasoning import ThinkSplitter
from custom_components.local_voice.llama_server.sse import (
    CHAT_TOKEN_MARGIN,
    carries_text,
    iter_chat_chunks,
)
from custom_components.local_voice.tool_arguments import (
    ToolArgumentsError,
    drop_copied_enums,
    drop_unknown_arguments,
    parse_tool_arguments,
    resolve_tool_name,
)

from .conversation_support import sse_events


async def _lines(body: Iterable[bytes]) -> AsyncIterator[bytes]:
    """Yield a body line by line, as aiohttp's response content does."""
    for event in body:
        for line in event.splitlines(keepends=True):
            yield line


async def _chunks(body: Iterable[bytes]) -> list[dict[str, Any]]:
    return [chunk async for chunk in iter_chat_chunks(_lines(body))]


async def test_recorded_stream_reads_to_the_end() -> None:
    """A recorded answer: every chunk up to [DONE], the last with its timings."""
    chunks = await _chunks(sse_events("answer.sse"))
    assert chunks[-1]["timings"]["prompt_n"] == 28
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_comments_fields_and_multiline_data() -> None:
    """Keep-alive comments and `event:` lines are skipped; data lines are joined."""
    events = sse_events("answer.sse")
    first = json.loads(events[1].decode().removeprefix("data: "))
    lines = json.dumps(first, indent=1).split("\n")
    split = "".join(f"data: {line}\n" for line in lines).encode() + b"\n"
    body = [b": keep-alive\n\n", b"event: message\n" + events[0], split, *events[2:]]
    chunks = await _chunks(body)
    assert chunks[1] == first
    assert len(chunks) == len(await _chunks(events))


@pytest.mark.parametrize(
    ("body", "error", "key"),
    [
        ([b'data: {"choices": []}\n\n'], TruncatedStream, "llm_truncated_stream"),
        ([b"<html>502</html>\n\n"], StreamError, "llm_malformed_stream"),
        ([b"data: {not json\n\n"], StreamError, "llm_malformed_stream"),
        ([b'data: {"choices": {}}\n\n'], StreamError, "llm_malformed_stream"),
        (
            [b'data: {"error": {"code": 500, "message": "boom"}}\n\n'],
            ErrorInStream,
            "llm_stream_error",
        ),
        (
            [
                b'data: {"error": {"type": "exceed_context_size_error",'
                b' "n_prompt_tokens": 9000, "n_ctx": 4096}}\n\n'
            ],
            ContextOverflow,
            "llm_context_overflow",
        ),
    ],
)
async def test_broken_streams(
    body: list[bytes], error: type[StreamError], key: str
) -> None:
    """Each way a stream goes wrong is its own error, with the user's words."""
    with pytest.raises(error) as raised:
        await _chunks(body)
    assert raised.value.translation_key == key


@pytest.mark.parametrize(
    "name",
    ["answer.sse", "inline_think.sse", "reasoning.sse", "tool_call.sse"],
)
async def test_recorded_streams_fit_their_token_budget(name: str) -> None:
    """Real answers send no more text chunks than the tokens they generated."""
    body = sse_events(name)
    final = json.loads(body[-2].decode().removeprefix("data: "))
    predicted = final["timings"]["predicted_n"]
    chunks = [
        chunk async for chunk in iter_chat_chunks(_lines(body), max_tokens=predicted)
    ]
    assert sum(map(carries_text, chunks)) <= predicted


async def test_past_the_token_budget() -> None:
    """Text chunks past max_tokens and the margin end the stream; others don't count."""
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
    word = b'data: {"choices":[{"index":0,"delta":{"content":" and"}}]}\n\n'
    body = [role, b": keep-alive\n\n", *[word] * (10 + CHAT_TOKEN_MARGIN), word]
    read: list[dict[str, Any]] = []
    with pytest.raises(AnswerOverBudget) as raised:
        async for chunk in iter_chat_chunks(_lines(body), max_tokens=10):
            read.append(chunk)
    assert len(read) == 1 + 10 + CHAT_TOKEN_MARGIN  # the role and the words in it
    assert raised.value.translation_placeholders == {"tokens": "10"}


def test_nul_never_reaches_a_delta() -> None:
    """NUL (escaped in the JSON, so a NUL after parsing) is dropped from every text."""
    transformer = DeltaTransformer()

    def chunk(delta: dict[str, Any]) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    out = transformer.feed(chunk({"reasoning_content": "th\x00ink"}))
    out += transformer.feed(chunk({"content": "\x00"}))
    out += transformer.feed(chunk({"content": "Hel\x00lo"}))
    function = {"name": "Hass\x00TurnOn", "arguments": '{"name": "La\x00mp"}'}
    transformer.feed(chunk({"tool_calls": [{"index": 0, "function": function}]}))
    assert out == [{"thinking_content": "think"}, {"content": "Hello"}]
    [call] = transformer.tool_calls()
    assert (call.name, call.arguments) == ("HassTurnOn", '{"name": "Lamp"}')


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


CLASSES = {"type": "array", "items": {"type": "string", "enum": ["door", "tv", "gas"]}}


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        # The whole enum (in any order, with an extra class) narrows nothing: dropped.
        (
            {"area": "Kitchen", "device_class": ["tv", "gas", "door"]},
            {"area": "Kitchen"},
        ),
        ({"device_class": ["light", "door", "tv", "gas"]}, {}),
        # A choice is kept, as is anything that is not a list of strings.
        ({"area": "Kitchen", "device_class": ["tv", "gas"]}, None),
        ({"device_class": "door"}, None),
        ({"device_class": ["door", "tv", 3]}, None),
    ],
)
def test_copied_enums_are_dropped(
    args: dict[str, Any], kept: dict[str, Any] | None
) -> None:
    """A list argument naming every value of its enum is dropped (Qwen 0.5B's)."""
    schema = {"type": "object", "properties": {"area": {}, "device_class": CLASSES}}
    assert drop_copied_enums(args, schema) == (args if kept is None else kept)
    # A required argument is never dropped, whatever it holds.
    required = {**schema, "required": ["device_class"]}
    assert drop_copied_enums(args, required) == args


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


@pytest.mark.parametrize(
    ("pieces", "call", "streamed", "at_finish"),
    [
        # Qwen 0.5B's fence before a call llama-server parsed: never content.
        (["```json\n"], True, [], []),
        (["<tool_call>", "\n"], True, [], []),
        # Prose is released as soon as it shows, with the opening held so far.
        (["\n", "Sure", ", done."], False, ["\nSure", ", done."], []),
        (["Turning it on."], True, ["Turning it on."], []),
        # Markup without a call is the answer itself: released at the end.
        (["```", "text```"], False, [], ["```text```"]),
    ],
)
def test_markup_before_a_call_is_held(
    pieces: list[str], call: bool, streamed: list[str], at_finish: list[str]
) -> None:
    """An opening that may be markup waits for prose; dropped if calls came."""
    transformer = DeltaTransformer()

    def chunk(delta: dict[str, Any]) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}

    out = [d for piece in pieces for d in transformer.feed(chunk({"content": piece}))]
    if call:
        function = {"name": "HassTurnOn", "arguments": "{}"}
        transformer.feed(chunk({"tool_calls": [{"index": 0, "function": function}]}))
    assert out == [{"content": text} for text in streamed]
    assert transformer.finish() == [{"content": text} for text in at_finish]
