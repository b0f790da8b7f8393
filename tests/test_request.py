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
from syrupy.assertion import SnapshotAssertion

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
