"""Reasoning: thinking goes to `thinking_content`, never to what is spoken.

The streams with reasoning are real llama-server output recorded by
tests/fixtures/record_sse.py (see the .json note beside each); the reasoning-effort
option is checked against a real llama-server whose template opens a thinking block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
import json
from typing import Any

import pytest

from custom_components.local_voice.const import (
    CONF_MAX_TOKENS,
    CONF_REASONING_EFFORT,
    CONF_SEND_REASONING,
    CONF_TEMPERATURE,
)
from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import HomeAssistant

from .backends import SMOL, Backend, llama_argv, require, running, start
from .common import llama_entry, setup_entry
from .conversation_support import (
    FIXTURES,
    SSE,
    FakeLlama,
    RecordingProxy,
    chat_log_of,
    converse,
    replay,
    speech,
    sse_events,
)
from .test_conversation import converse_streaming

CHAT = {CONF_LLM_HASS_API: [], CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 48}


def _recorded(name: str) -> dict[str, str]:
    return json.loads((SSE / f"{name}.json").read_text())["summary"]


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeLlama]]:
    """Fakes started by a test, stopped after it."""
    started: list[FakeLlama] = []
    yield started
    for fake in started:
        await fake.stop()


@pytest.mark.parametrize("send_reasoning", [False, True])
@pytest.mark.parametrize("fixture", ["reasoning", "inline_think"])
async def test_thinking_is_never_spoken(
    hass: HomeAssistant,
    fakes: list[FakeLlama],
    fixture: str,
    send_reasoning: bool,
) -> None:
    """`reasoning_content`, or `<think>` inline in content: thinking, not speech.

    Prior reasoning is sent back only when the option says so.
    """
    fake = await FakeLlama(
        hass, [replay(sse_events(f"{fixture}.sse")), replay(sse_events("answer.sse"))]
    ).start()
    fakes.append(fake)
    await setup_entry(
        hass, llama_entry(fake.url, {**CHAT, CONF_SEND_REASONING: send_reasoning})
    )
    deltas: list[dict[str, Any]] = []
    result = await converse_streaming(hass, "Is 9 a prime number?", deltas.append)

    recorded = _recorded(fixture)
    thought = "9 is divisible by 1 and by 3, so it is not prime."
    assert speech(result) == "No, 9 is not a prime number."
    spoken = "".join(d.get("content") or "" for d in deltas)
    assert spoken == speech(result)
    assert "<think>" not in spoken
    assert "divisible" not in spoken
    thinking = "".join(d.get("thinking_content") or "" for d in deltas)
    assert thinking.strip() == thought
    if fixture == "reasoning":
        assert recorded["reasoning_content"].strip() == thought
    else:
        assert recorded["content"].startswith("<think>")
    log = chat_log_of(hass, result.conversation_id)
    last = log.content[-1]
    assert isinstance(last, conversation.AssistantContent)
    assert (last.thinking_content or "").strip() == thought

    await converse(hass, "And 11?", conversation_id=result.conversation_id)
    history = fake.requests[1]["messages"]
    assistant = next(m for m in history if m["role"] == "assistant")
    assert assistant["content"] == "No, 9 is not a prime number."
    assert ("reasoning_content" in assistant) is send_reasoning


@pytest.fixture(scope="module")
def thinking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """SmolLM2 behind a template whose generation prompt opens a thinking block."""
    require(SMOL)
    argv = llama_argv(
        SMOL,
        "--chat-template-file",
        str(FIXTURES / "templates" / "think-forced.jinja"),
        ctx=2048,
        slots=1,
    )
    logs = tmp_path_factory.mktemp("thinking-logs")
    with running(start("llama-thinking", argv, "http", logs)) as server:
        yield server


@pytest.mark.parametrize(
    ("effort", "request_fields"),
    [
        ("off", {"reasoning_effort": "none", "enable_thinking": False}),
        ("high", {"reasoning_effort": "high", "enable_thinking": True}),
    ],
)
async def test_reasoning_effort_reaches_the_template(
    hass: HomeAssistant,
    thinking_server: Backend,
    effort: str,
    request_fields: dict[str, Any],
) -> None:
    """The option is sent as llama-server understands it, and the template obeys.

    With thinking on, the tiny model never closes its thinking block: everything it
    wrote is thinking, so nothing is spoken and the agent says there was no answer
    (instead of reading the thoughts out).
    """
    proxy = await RecordingProxy(thinking_server.url).start()
    try:
        await setup_entry(
            hass,
            llama_entry(
                proxy.url, {**CHAT, CONF_MAX_TOKENS: 24, CONF_REASONING_EFFORT: effort}
            ),
        )
        deltas: list[dict[str, Any]] = []
        result = await converse_streaming(hass, "Hello!", deltas.append)
        sent = proxy.requests[0]
    finally:
        await proxy.stop()
    assert sent["reasoning_effort"] == request_fields["reasoning_effort"]
    assert sent["chat_template_kwargs"] == {
        "enable_thinking": request_fields["enable_thinking"]
    }
    thinking = "".join(d.get("thinking_content") or "" for d in deltas)
    spoken = "".join(d.get("content") or "" for d in deltas)
    if effort == "off":
        assert not thinking
        assert spoken
        assert speech(result) == spoken
    else:
        assert thinking
        assert thinking not in spoken
        assert speech(result).startswith("The model gave no answer (it stopped: ")
