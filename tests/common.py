"""Helpers shared by the tests: config entries for the real backends."""

from __future__ import annotations

from typing import Any

from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.local_voice.const import (
    CONF_SERVICE,
    DEFAULT_AI_TASK_NAME,
    DEFAULT_CONVERSATION_NAME,
    DOMAIN,
    RECOMMENDED_AI_TASK_OPTIONS,
    RECOMMENDED_CONVERSATION_OPTIONS,
    SERVICE_LLAMA,
    SUBENTRY_AI_TASK,
    SUBENTRY_CONVERSATION,
)
from homeassistant.config_entries import SOURCE_USER, ConfigSubentryData
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_URL
from homeassistant.core import HomeAssistant


def llama_entry(
    url: str,
    conversation_options: dict[str, Any] | None = None,
    *,
    source: str = SOURCE_USER,
    **data: Any,
) -> MockConfigEntry:
    """Return a llama-server entry with one conversation and one AI task subentry.

    `source`: how it was made (SOURCE_HASSIO: announced by the add-on).
    """
    return MockConfigEntry(
        domain=DOMAIN,
        title="llama-server",
        source=source,
        unique_id=url,
        data={CONF_SERVICE: SERVICE_LLAMA, CONF_URL: url, **data},
        subentries_data=[
            ConfigSubentryData(
                subentry_type=SUBENTRY_CONVERSATION,
                title=DEFAULT_CONVERSATION_NAME,
                data={
                    **RECOMMENDED_CONVERSATION_OPTIONS,
                    **(conversation_options or {}),
                },
                unique_id=None,
            ),
            ConfigSubentryData(
                subentry_type=SUBENTRY_AI_TASK,
                title=DEFAULT_AI_TASK_NAME,
                data=dict(RECOMMENDED_AI_TASK_OPTIONS),
                unique_id=None,
            ),
        ],
    )


def wyoming_entry(
    service: str, port: int, host: str = "127.0.0.1", title: str | None = None
) -> MockConfigEntry:
    """Return an ASR or TTS entry for a Wyoming server (titled as the flow would)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=title or f"Wyoming {service}",
        unique_id=f"{service}-{host}-{port}",
        data={CONF_SERVICE: service, CONF_HOST: host, CONF_PORT: port},
    )


async def setup_entry(hass: HomeAssistant, entry: MockConfigEntry) -> MockConfigEntry:
    """Add and set up an entry, waiting for its platforms and the slot warm-up."""
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done(wait_background_tasks=True)
    return entry
