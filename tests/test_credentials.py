"""Credentials: a password in a llama-server URL never shows, a refused key re-asks.

The config flow refuses URLs with user-info (test_config_flow.py); these entries
were made before that, as an upgrade finds them. The loopback fake stands in for a
proxy in front of llama-server: it ignores the URL's credentials, and it is what
refuses the key on the chat endpoint alone.
"""

from __future__ import annotations

import logging

import pytest

from custom_components.local_voice.const import DOMAIN
from custom_components.local_voice.diagnostics import (
    async_get_config_entry_diagnostics,
)
from custom_components.local_voice.llama_server.url import (
    has_user_info,
    strip_user_info,
)
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_API_KEY, CONF_LLM_HASS_API
from homeassistant.core import HomeAssistant
from homeassistant.helpers import intent

from .common import llama_entry, setup_entry
from .conversation_support import FakeLlama, converse, http_error, speech

SECRET = "hunter2-secret"
CHAT = {CONF_LLM_HASS_API: []}


@pytest.mark.parametrize(
    ("text", "stripped"),
    [
        ("http://user:pw@host:8080/v1", "http://host:8080/v1"),
        ("HTTPS://u:p@ss@host", "HTTPS://host"),
        (
            "error at URL('http://a:b@h:1/x') and http://h:2",
            "error at URL('http://h:1/x') and http://h:2",
        ),
        ("http://host/path@not-user-info", "http://host/path@not-user-info"),
    ],
)
def test_strip_user_info(text: str, stripped: str) -> None:
    """User-info goes from every URL in a text; an @ in a path stays."""
    assert strip_user_info(text) == stripped
    assert has_user_info(text) == (text != stripped)


async def test_password_in_url_never_shows(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """An old entry's password is kept out of diagnostics, logs and speech."""
    caplog.set_level(logging.DEBUG)
    fake = await FakeLlama(hass, []).start()
    url = f"http://admin:{SECRET}@127.0.0.1:{fake.port}"
    try:
        entry = await setup_entry(hass, llama_entry(url, CHAT))
        assert entry.state is ConfigEntryState.LOADED
        assert SECRET not in entry.unique_id  # migrated to 1.2 at set-up
        diagnostics = await async_get_config_entry_diagnostics(hass, entry)
        assert diagnostics["entry"]["data"]["url"] == fake.url
        assert diagnostics["entry"]["unique_id"] == fake.url
        assert SECRET not in str(diagnostics)
    finally:
        await fake.stop()
    result = await converse(hass, "Hi")
    assert f"I can't reach the language model server at {fake.url}" in speech(result)
    assert result.response.response_type is intent.IntentResponseType.ERROR
    await hass.async_block_till_done(wait_background_tasks=True)
    assert "127.0.0.1" in caplog.text  # the failure and the poll were logged
    assert SECRET not in caplog.text
    assert SECRET not in speech(result)
    assert SECRET not in str(await async_get_config_entry_diagnostics(hass, entry))


async def test_refused_key_on_the_chat_endpoint_starts_reauth(
    hass: HomeAssistant,
) -> None:
    """A 401 from the chat endpoint alone (the poll still passes) re-asks the key."""
    fake = await FakeLlama(hass, [http_error(401, "Unauthorized")]).start()
    try:
        entry = await setup_entry(hass, llama_entry(fake.url, CHAT, api_key="old"))
        result = await converse(hass, "Hi")
        await hass.async_block_till_done(wait_background_tasks=True)
    finally:
        await fake.stop()
    assert "refused the API key (HTTP 401)" in speech(result)
    assert entry.state is ConfigEntryState.LOADED  # the poll passed
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert entry.data[CONF_API_KEY] == "old"
