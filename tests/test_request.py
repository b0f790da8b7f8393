"""The exact request local_voice sends for a chat, and what a turn can say went wrong.

The snapshot (__snapshots__/test_request.ambr) shows the request bodies byte for byte in
their order: the cache-stable prefix (system message, tools) comes first, and the
warm-up is the same bytes up to the end of it. A change to either shows in review.
"""

from __future__ import annotations

import json
from pathlib import Path
import re

from freezegun.api import FrozenDateTimeFactory
import pytest
from syrupy.assertion import SnapshotAssertion

from custom_components.local_voice.agent_text import (
    AgentError,
    TurnError,
    async_agent_text,
)
from custom_components.local_voice.llama_server.errors import (
    CannotConnect,
    ErrorInStream,
)
from custom_components.local_voice.request import reasoning_options
from homeassistant.core import HomeAssistant

from .common import llama_entry, setup_entry
from .conversation_support import (
    FakeLlama,
    async_setup_home,
    converse,
    replay,
    sse_events,
)

COMPONENT = Path(__file__).parent.parent / "custom_components" / "local_voice"


async def test_chat_request_body(
    hass: HomeAssistant, snapshot: SnapshotAssertion, freezer: FrozenDateTimeFactory
) -> None:
    """A new chat from the kitchen satellite, with the default options."""
    freezer.move_to("2026-03-01 07:30:00+00:00")
    home = await async_setup_home(hass)
    fake = await FakeLlama(hass, [replay(sse_events("answer.sse"))]).start()
    try:
        await setup_entry(hass, llama_entry(fake.url))
        await converse(
            hass, "Turn on the kitchen light", device_id=home.satellites["kitchen"]
        )
    finally:
        await fake.stop()
    assert len(fake.requests) == 1
    assert [body["id_slot"] for body in fake.warm_ups] == [0]  # one slot
    # Serialized as received (json keeps the order), so the prefix reads in order.
    assert json.dumps(fake.warm_ups[0], indent=1) == snapshot(name="warm_up")
    assert json.dumps(fake.requests[0], indent=1) == snapshot(name="chat")


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


def test_every_error_has_a_string() -> None:
    """Each translation key a turn can end with is in strings.json (and en.json)."""
    strings = json.loads((COMPONENT / "strings.json").read_text())["exceptions"]
    english = json.loads((COMPONENT / "translations" / "en.json").read_text())
    keys: set[str] = set()
    for path in COMPONENT.rglob("*.py"):
        source = path.read_text()
        keys |= set(
            re.findall(r'translation_key(?:: ClassVar\[str\])? = "(\w+)"', source)
        )
        keys |= set(re.findall(r'AgentError\(\s*"(\w+)"', source))
        keys |= set(re.findall(r'translation_key="(\w+)"', source))
    assert {"llm_cannot_connect", "llm_http_error", "llm_tool_loop_limit"} <= keys
    assert keys <= set(strings)
    assert english["exceptions"] == strings


def test_every_error_is_one_short_sentence() -> None:
    """What a turn says when it fails: one sentence of at most 80 characters of its own.

    It holds no server text or tool error; the names and numbers put in it are one
    line each, without NUL, cut at SPOKEN_DETAIL_MAX_CHARS (tested below).
    """
    strings = json.loads((COMPONENT / "strings.json").read_text())["exceptions"]
    for key, value in strings.items():
        if key.startswith("llm_"):
            words = re.sub(r"\{\w+\}", "", value["message"])
            assert len(words) <= 80, key
            assert not re.search(r"[.!?:;]\s+[A-Z]|\n", value["message"]), key


# A real tool error (HassTurnOn, a name no entity has): read aloud it took 5 s.
_TOOL_ERROR = (
    "MatchFailedError: No entities matched for: name=Garage door, area=None, "
    "floor=None, domains={'light', 'switch', 'fan'}, device_classes=None, "
    "features=0, states=None, assistant=conversation"
)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (
            AgentError("llm_tool_repeated", tool="HassTurnOn", reason=_TOOL_ERROR),
            "I stopped because HassTurnOn failed again in the same way",
        ),
        (
            ErrorInStream("error event", message="boom\x00" + "x" * 500),
            "The language model server reported an error while answering",
        ),
        (
            AgentError("llm_no_answer", reason="len\x00gth"),
            "The model gave no answer (it stopped: length)",
        ),
        (
            CannotConnect("down", server="http://\x00192.168.1.10:8080", error="x"),
            "I can't reach the language model server at http://192.168.1.10:8080",
        ),
        (  # a long list of names is cut after a name
            AgentError("llm_tool_done", targets=", ".join(["Kitchen light"] * 9)),
            f"Done: {', '.join(['Kitchen light'] * 6)}….",
        ),
        (
            AgentError("llm_vision_unsupported", model="\n".join(["Qwen"] * 30)),
            f"The model {' '.join(['Qwen'] * 19)}… cannot see images: start"
            " llama-server with a vision projector",
        ),
    ],
)
async def test_errors_are_said_short_without_nul(
    hass: HomeAssistant, error: TurnError, said: str
) -> None:
    """Tool errors and server texts are not read aloud whole, and NUL never is."""
    assert await async_agent_text(hass, error, "en") == said
