"""The conversation agent against the real llama-server: tools, streaming, the cache.

Qwen2.5-Coder-0.5B (`llama_tools_server`) makes the real tool calls; every test that
uses it builds the same home, so its prompt prefix is byte-identical from test to test
and the server evaluates the ~2,500-token Assist prompt once per slot for the session.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
import json
from typing import Any

from freezegun.api import FrozenDateTimeFactory
import pytest

from custom_components.local_voice import llm_entity
from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
)
from custom_components.local_voice.messages import CONTEXT_OPEN
from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import chat_session, intent
from homeassistant.util import dt as dt_util

from .backends import Backend
from .common import llama_entry, setup_entry
from .conversation_support import (
    RecordingProxy,
    agent_id,
    async_setup_home,
    chat_log_of,
    converse,
    speech,
)

QWEN_OPTIONS = {CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 64}


async def _post_json(hass: HomeAssistant, url: str, body: Any) -> Any:
    from homeassistant.helpers.aiohttp_client import (  # noqa: PLC0415
        async_get_clientsession,
    )

    async with async_get_clientsession(hass).post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def converse_streaming(
    hass: HomeAssistant,
    text: str,
    on_delta: Callable[[dict[str, Any]], None],
    **kwargs: Any,
) -> conversation.ConversationResult:
    """Converse as the Assist pipeline does, with a chat-log delta listener."""

    def listener(_: conversation.ChatLog, delta: dict[str, Any]) -> None:
        on_delta(delta)

    with (
        chat_session.async_get_chat_session(hass) as session,
        conversation.async_get_chat_log(
            hass, session, None, chat_log_delta_listener=listener
        ),
    ):
        return await conversation.async_converse(
            hass,
            text,
            session.conversation_id,
            kwargs.pop("context", None) or Context(),
            language="en",
            agent_id=agent_id(hass),
            **kwargs,
        )


async def test_tool_call_then_loop_limit(
    hass: HomeAssistant,
    llama_tools_server: Backend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real streamed tool call runs the intent; the tool loop is bounded.

    Qwen 0.5B calls HassTurnOn for the kitchen; arguments the intent's schema
    refuses are dropped before the call, and a repeated failing call or the
    iteration limit (2 rounds here) ends the turn with a sentence that says why.
    """
    monkeypatch.setattr(llm_entity, "MAX_TOOL_ITERATIONS", 2)
    home = await async_setup_home(hass)
    entry = await setup_entry(hass, llama_entry(llama_tools_server.url, QWEN_OPTIONS))
    state = hass.states.get(agent_id(hass))
    assert state is not None
    assert state.attributes["supported_features"] == (
        conversation.ConversationEntityFeature.CONTROL
    )

    result = await converse(
        hass, "Turn on the kitchen light", device_id=home.satellites["kitchen"]
    )

    log = chat_log_of(hass, result.conversation_id)
    calls = [
        call
        for content in log.content
        if isinstance(content, conversation.AssistantContent) and content.tool_calls
        for call in content.tool_calls
    ]
    assert calls, log.content
    first = calls[0]
    assert first.tool_name == "intent__HassTurnOn"
    assert "kitchen" in json.dumps(first.tool_args).lower()
    results = [c for c in log.content if isinstance(c, conversation.ToolResultContent)]
    assert results[0].tool_call_id == first.id
    refused = [r for r in results if r.result.data.get("error") == "InvalidSlotInfo"]
    assert not refused, refused  # e.g. `device_class: light` was dropped
    said = speech(result)
    assert said and "does not match the expected" not in said
    if result.response.response_type is intent.IntentResponseType.ERROR:
        assert said.startswith(
            ("I gave up after 2 rounds", "I stopped because HassTurnOn failed")
        ), said

    timings = list(entry.runtime_data.slots.timings)
    assert 1 <= len(timings) <= 4  # 2 rounds, each may be asked again as raw text
    if len(timings) > 1:
        assert timings[1]["cache_n"] > timings[1]["prompt_n"]  # the loop reuses it


async def test_unparsable_tool_call_is_never_said(
    hass: HomeAssistant, llama_tools_server: Backend
) -> None:
    """llama-server's tool parser gives up (an error event): the user gets a sentence.

    Asked for raw JSON, Qwen writes JSON that is not a tool call; llama-server's tool
    parser then sends `data: {"error": ...}` in the stream. The agent asks again with
    `tool_choice: "none"` (same prefix), finds no offered tool in the raw text, and
    says so plainly; the parser's message is never said.
    """
    await async_setup_home(hass)
    async with RecordingProxy(llama_tools_server.url) as proxy:
        await setup_entry(hass, llama_entry(proxy.url, QWEN_OPTIONS))
        result = await converse(
            hass, 'Reply only with this JSON: {"answer": "hello", "ok": true}'
        )
    said = speech(result)
    assert "does not match the expected" not in said
    assert said and not said.lstrip().startswith("{"), said
    first, retry = proxy.requests[-2:]
    assert "tool_choice" not in first
    assert retry == {**first, "tool_choice": "none"}
    # The retry reused the whole prompt of the refused request from the cache.
    retry_timings = json.loads(
        proxy.exchanges[-1][1].split(b"data: [DONE]")[0].rsplit(b"data: ", 1)[1]
    )["timings"]
    assert retry_timings["prompt_n"] <= 2, retry_timings


async def test_new_chats_share_the_prefix(
    hass: HomeAssistant,
    llama_tools_server: Backend,
    freezer: FrozenDateTimeFactory,
) -> None:
    """Two new chats, two satellites, hours apart: the same bytes up to the context.

    Checked three ways: the request bodies (system message and tools identical, also
    those of the warm-up that put the prefix on each slot at start), the prompts
    llama-server renders from them (identical up to the newest user turn), and the
    server's own `cache_n` for every new chat, the first on each slot included.
    """
    home = await async_setup_home(hass, timer_areas=("kitchen",))
    proxy = await RecordingProxy(llama_tools_server.url).start()
    try:
        entry = await setup_entry(
            hass, llama_entry(proxy.url, {**QWEN_OPTIONS, CONF_MAX_TOKENS: 2})
        )
        own: list[str | None] = []  # Home Assistant's own system prompt, per chat
        for when, text, area in (
            (datetime(2026, 3, 1, 7, 30, tzinfo=dt_util.UTC), "Hello", "kitchen"),
            (datetime(2026, 3, 1, 22, 5, tzinfo=dt_util.UTC), "Hi there", "bedroom"),
            (datetime(2026, 3, 2, 6, 0, tzinfo=dt_util.UTC), "Morning", "kitchen"),
        ):
            freezer.move_to(when)
            result = await converse(hass, text, device_id=home.satellites[area])
            own.append(chat_log_of(hass, result.conversation_id).content[0].content)
        bodies = proxy.bodies
        requests = proxy.requests
    finally:
        await proxy.stop()
    # Before any chat, one warm-up per slot with the chats' system message and tools.
    state = entry.runtime_data.slots
    assert sorted(w["slot"] for w in state.warmups) == [0, 1]
    warm_ups, chats = requests[:2], requests[2:]
    assert len(chats) == 3
    assert sorted(r["id_slot"] for r in warm_ups) == [0, 1]
    for warm_up in warm_ups:
        assert warm_up["messages"] == [
            chats[0]["messages"][0],
            {"role": "user", "content": ""},
        ]
        assert json.dumps(warm_up["tools"]) == json.dumps(chats[0]["tools"])

    # Home Assistant's own system prompts differ (area, timers): the baseline's prefix.
    assert own[0] != own[1]

    a, b = chats[0], chats[1]
    assert a["messages"][0] == b["messages"][0]
    assert json.dumps(a["tools"]) == json.dumps(b["tools"])
    assert a["cache_prompt"] is True
    # Pinned: each satellite its own slot, the same one every time.
    assert a["id_slot"] != b["id_slot"]
    assert chats[2]["id_slot"] == a["id_slot"]
    # Serialized, the body is identical up to the newest user message.
    marker = json.dumps(CONTEXT_OPEN)[:-1].encode()
    body_a, body_b = bodies[2], bodies[3]
    assert body_a.index(marker) == body_b.index(marker)
    prefix_end = body_a.index(marker)
    assert body_a[:prefix_end] == body_b[:prefix_end]
    assert "Kitchen" in a["messages"][-1]["content"]
    assert "Bedroom" in b["messages"][-1]["content"]

    # The prompts llama-server renders share everything before the newest user turn.
    rendered = [
        (await _post_json(hass, f"{llama_tools_server.url}/apply-template", r))[
            "prompt"
        ]
        for r in (a, b)
    ]
    user_turn = rendered[0].rindex("<|im_start|>user")
    assert rendered[0][:user_turn] == rendered[1][:user_turn]
    assert rendered[0][user_turn:] != rendered[1][user_turn:]
    prefix_tokens = len(
        (
            await _post_json(
                hass,
                f"{llama_tools_server.url}/tokenize",
                {"content": rendered[0][:user_turn], "parse_special": True},
            )
        )["tokens"]
    )
    # Each slot holds the prefix after its warm-up, read then or by an earlier test.
    assert [w["prompt_n"] + w["cache_n"] > prefix_tokens for w in state.warmups] == [
        True,
        True,
    ]
    # Every new chat, the first on each slot too, evaluated only what follows.
    assert len(state.timings) == 3
    for timings in state.timings:
        assert timings["cache_n"] >= prefix_tokens - 1
        assert timings["prompt_n"] < 100


async def test_streams_deltas_and_pins_slot(
    hass: HomeAssistant, llama_chat_server: Backend
) -> None:
    """Text arrives in many deltas before the answer is complete (TTS starts early)."""
    await setup_entry(
        hass,
        llama_entry(
            llama_chat_server.url,
            {CONF_LLM_HASS_API: [], CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 40},
        ),
    )
    state = hass.states.get(agent_id(hass))
    assert state is not None
    assert state.attributes.get("supported_features", 0) == 0
    deltas: list[dict[str, Any]] = []
    result = await converse_streaming(hass, "Tell me about the moon.", deltas.append)
    contents = [d["content"] for d in deltas if d.get("content")]
    assert deltas[0] == {"role": "assistant"}
    assert len(contents) > 5
    assert "".join(contents) == speech(result)
    assert not any("thinking_content" in d for d in deltas)
    assert result.response.response_type is intent.IntentResponseType.ACTION_DONE
