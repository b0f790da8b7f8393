"""Repairs issues, each raised by a real llama-server started the faulty way.

Each test starts SmolLM2-135M with the fault and checks the issue and its numbers
(`[raised]`); its `[cleared]` case goes on: it restarts the server on the same port as
the issue advises and checks that the issue clears itself at the next poll or chat.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.local_voice.const import CONF_MAX_TOKENS, DOMAIN
from custom_components.local_voice.server_checks import (
    CONVERSATION_ROOM_TOKENS,
    context_for,
)
from custom_components.local_voice.server_issues import issue_id
from homeassistant.config_entries import SOURCE_HASSIO
from homeassistant.const import CONF_API_KEY, CONF_PROMPT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir

from .backends import QWEN_TEMPLATE, ROOT, SMOL, Backend, llama_argv, require, start
from .common import llama_entry, setup_entry
from .conversation_support import async_setup_home, converse
from .test_warm_up import OPTIONS as WARM_UP_OPTIONS, PROMPT

# The warm-up tests' agent (no tools), its fixed instructions cut to ~400 tokens.
OPTIONS = WARM_UP_OPTIONS | {CONF_PROMPT: "\n".join(PROMPT.splitlines()[:20])}
# For the checks that need no long prefix.
SHORT = OPTIONS | {CONF_PROMPT: "Answer in one short sentence."}
TIMESTAMPED = ROOT / "tests/templates/timestamped.jinja"


@pytest.fixture(params=["raised", "cleared"])
def fix(request: pytest.FixtureRequest) -> bool:
    """Whether the test goes on to fix the server as the issue advises."""
    return bool(request.param == "cleared")


def _issue(
    hass: HomeAssistant, entry: MockConfigEntry, kind: str
) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id(entry, kind))


def _raised(
    hass: HomeAssistant, entry: MockConfigEntry, kind: str, translation_key: str
) -> dict[str, str]:
    """Check the issue is up, worded as expected; return its placeholders."""
    issue = _issue(hass, entry, kind)
    assert issue is not None
    assert issue.translation_key == translation_key
    assert issue.is_fixable is False
    return dict(issue.translation_placeholders or {})


async def _restart(
    hass: HomeAssistant, entry: MockConfigEntry, server: Backend, argv: list[str]
) -> Backend:
    """Restart the server on its port with new flags, and let the entry poll it."""
    server.stop()
    server = start(server.name, argv, "http", server.log.parent, port=server.port)
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)
    return server


async def test_context_too_small(
    hass: HomeAssistant, backend_logs: Path, fix: bool
) -> None:
    """`-c 2048` over two slots: the prefix and a conversation need more than 1024."""
    require(SMOL)
    server = start("llama-ctx", llama_argv(SMOL, ctx=2048), "http", backend_logs)
    try:
        # A URL with a password in it: the issue never shows it.
        url = server.url.replace("://", "://user:hunter2@")
        entry = await setup_entry(hass, llama_entry(url, OPTIONS))
        numbers = _raised(hass, entry, "context_too_small", "context_too_small")
        issue = _issue(hass, entry, "context_too_small")
        assert issue is not None
        assert issue.severity == ir.IssueSeverity.WARNING
        assert numbers["url"] == server.url  # without the user-info
        prefix = int(numbers["prefix"])
        assert 300 < prefix < 1024  # measured by the warm-up
        assert numbers["n_ctx"] == "1024"
        assert numbers["slots"] == "2"
        assert int(numbers["needed"]) == prefix + CONVERSATION_ROOM_TOKENS
        assert numbers["context"] == str(context_for(prefix + 1024, 2))

        if not fix:
            return
        # As advised: the next poll sees each slot large enough.
        argv = llama_argv(SMOL, ctx=int(numbers["context"]))
        server = await _restart(hass, entry, server, argv)
        assert entry.runtime_data.coordinator.data.n_ctx >= int(numbers["needed"])
        assert _issue(hass, entry, "context_too_small") is None
    finally:
        server.stop()


async def test_template_without_tools(
    hass: HomeAssistant, backend_logs: Path, fix: bool
) -> None:
    """SmolLM2's own template has no tools; the Assist agent needs them."""
    require(SMOL, QWEN_TEMPLATE)
    await async_setup_home(hass)
    server = start("llama-notools", llama_argv(SMOL, slots=1), "http", backend_logs)
    try:
        # Announced by the add-on: the issue names its options.
        entry = await setup_entry(
            hass, llama_entry(server.url, {CONF_MAX_TOKENS: 2}, source=SOURCE_HASSIO)
        )
        assert _raised(hass, entry, "no_tool_support", "no_tool_support_addon") == {
            "server": "llama-server",
            "url": server.url,
            "model": SMOL.name,
            "agents": "1",
        }
        # Unloaded: its issues go with it; loaded again: judged again at once.
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert _issue(hass, entry, "no_tool_support") is None
        assert await hass.config_entries.async_setup(entry.entry_id)
        assert _issue(hass, entry, "no_tool_support") is not None

        if not fix:
            return
        # A template that supports tools, given with --chat-template-file.
        argv = llama_argv(SMOL, "--chat-template-file", str(QWEN_TEMPLATE), slots=1)
        server = await _restart(hass, entry, server, argv)
        assert _issue(hass, entry, "no_tool_support") is None
    finally:
        server.stop()


async def test_cache_not_reused(
    hass: HomeAssistant, backend_logs: Path, fix: bool
) -> None:
    """A template that writes the time first: the same prefix is re-read every chat.

    One chat that finds its slot cold is a restart (the next one is warm again);
    chats that keep re-reading the prefix their slot held are a broken cache.
    """
    require(SMOL)
    home = await async_setup_home(hass)
    kitchen = home.satellites["kitchen"]
    faulty = llama_argv(SMOL, "--chat-template-file", str(TIMESTAMPED), slots=1)
    server = start("llama-clock", faulty, "http", backend_logs)
    try:
        entry = await setup_entry(hass, llama_entry(server.url, OPTIONS))
        state = entry.runtime_data.slots
        for _ in range(2):
            assert _issue(hass, entry, "cache_not_reused") is None
            await asyncio.sleep(1)  # the template's clock moves on
            await converse(hass, "Hello", device_id=kitchen)
        numbers = _raised(hass, entry, "cache_not_reused", "cache_not_reused_clock")
        assert numbers["chats"] == "2"
        assert int(numbers["prompt_n"]) > 300 > int(numbers["cache_n"])
        assert numbers["prompt_n"] == str(state.timings[-1]["prompt_n"])

        if not fix:
            return
        # SmolLM2's own template. The first chat after the (unnoticed) restart finds
        # its slot cold, as after any restart; the next one reuses it: cleared.
        server.stop()
        good = llama_argv(SMOL, slots=1)
        server = start(server.name, good, "http", backend_logs, port=server.port)
        await converse(hass, "Hello", device_id=kitchen)
        assert state.timings[-1]["prompt_n"] > 300
        await converse(hass, "Hello", device_id=kitchen)
        assert state.timings[-1]["prompt_n"] < 100
        assert _issue(hass, entry, "cache_not_reused") is None
    finally:
        server.stop()


async def test_slots_shared(hass: HomeAssistant, backend_logs: Path, fix: bool) -> None:
    """`--parallel 1` and two satellites: they take turns on one slot."""
    require(SMOL)
    home = await async_setup_home(hass)
    kitchen, bedroom = home.satellites["kitchen"], home.satellites["bedroom"]
    faulty = llama_argv(SMOL, ctx=2048, slots=1)
    server = start("llama-np1", faulty, "http", backend_logs)
    try:
        # With an API key (the server takes any): it never shows in the issue.
        entry = await setup_entry(
            hass,
            llama_entry(
                server.url, SHORT, source=SOURCE_HASSIO, **{CONF_API_KEY: "sekrit"}
            ),
        )
        await converse(hass, "Hello", device_id=kitchen)
        assert _issue(hass, entry, "slots_shared") is None
        await converse(hass, "Hello", device_id=bedroom)
        assert _raised(hass, entry, "slots_shared", "slots_shared_addon") == {
            "server": "llama-server",
            "url": server.url,
            "conversations": "2",
            "slots": "1",
            "n_ctx": "2048",
            "context": "4096",
        }

        if not fix:
            return
        # As advised: --parallel 2 and twice the context.
        argv = llama_argv(SMOL, ctx=4096, slots=2)
        server = await _restart(hass, entry, server, argv)
        assert _issue(hass, entry, "slots_shared") is None
        await converse(hass, "Hello", device_id=kitchen)
        await converse(hass, "Hello", device_id=bedroom)
        assert _issue(hass, entry, "slots_shared") is None
    finally:
        server.stop()
