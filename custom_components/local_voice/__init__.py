"""Local Voice: a fully local voice assistant on llama-server and Wyoming servers."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from homeassistant.const import CONF_API_KEY, CONF_HOST, CONF_PORT, CONF_URL, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession

from .const import CONF_SERVICE, DOMAIN, SERVICE_ASR, SERVICE_LLAMA, SERVICE_TTS
from .coordinator import (
    LlamaServerCoordinator,
    LlamaServerData,
    LocalVoiceConfigEntry,
    WyomingCoordinator,
    WyomingData,
)
from .entity import llama_server_device
from .llama_server.client import LlamaServerClient
from .llama_server.url import strip_user_info
from .server_issues import ServerIssues
from .slots import SlotManager
from .wyoming_client.server import WyomingServer

PLATFORMS_BY_SERVICE: dict[str, list[Platform]] = {
    SERVICE_LLAMA: [Platform.AI_TASK, Platform.CONVERSATION, Platform.SENSOR],
    SERVICE_ASR: [Platform.SENSOR, Platform.STT],
    SERVICE_TTS: [Platform.SENSOR, Platform.TTS],
}


async def async_setup_entry(hass: HomeAssistant, entry: LocalVoiceConfigEntry) -> bool:
    """Connect to the entry's server; HA retries while it is down."""
    if entry.data[CONF_SERVICE] == SERVICE_LLAMA:
        client = LlamaServerClient(
            async_get_clientsession(hass),
            entry.data[CONF_URL],
            entry.data.get(CONF_API_KEY),
        )

        def schedule(job: Coroutine[Any, Any, None], name: str) -> None:
            entry.async_create_background_task(hass, job, f"{DOMAIN} {name}")

        slots = SlotManager(client, schedule)
        coordinator = LlamaServerCoordinator(hass, entry, client, slots)
        await coordinator.async_config_entry_first_refresh()
        # Before the platforms: the agents' devices name it as their via device.
        dr.async_get(hass).async_get_or_create(
            config_entry_id=entry.entry_id,
            **llama_server_device(entry, coordinator.data),
        )
        entry.runtime_data = LlamaServerData(client, coordinator, slots)
        issues = ServerIssues(hass, coordinator, slots)
        entry.async_on_unload(issues.async_clear)
        entry.async_on_unload(coordinator.async_add_listener(issues.async_check))
        # Each chat and warm-up reaches the coordinator's listeners: sensors, issues.
        entry.async_on_unload(slots.add_listener(coordinator.async_update_listeners))
        issues.async_check()
    else:
        server = WyomingServer(entry.data[CONF_HOST], entry.data[CONF_PORT])
        wyoming = WyomingCoordinator(hass, entry, server)
        await wyoming.async_config_entry_first_refresh()
        entry.runtime_data = WyomingData(server, wyoming)

    await hass.config_entries.async_forward_entry_setups(
        entry, PLATFORMS_BY_SERVICE[entry.data[CONF_SERVICE]]
    )
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    return True


async def async_migrate_entry(
    hass: HomeAssistant, entry: LocalVoiceConfigEntry
) -> bool:
    """Take URL user-info out of unique ids made before 1.2: the UI shows them."""
    if entry.version > 1:
        return False  # made by a newer local_voice
    if entry.minor_version < 2:
        unique_id = entry.unique_id and strip_user_info(entry.unique_id)
        hass.config_entries.async_update_entry(
            entry, unique_id=unique_id, minor_version=2
        )
    return True


async def async_unload_entry(hass: HomeAssistant, entry: LocalVoiceConfigEntry) -> bool:
    """Unload the entry's platforms."""
    return await hass.config_entries.async_unload_platforms(
        entry, PLATFORMS_BY_SERVICE[entry.data[CONF_SERVICE]]
    )


async def _async_update_listener(
    hass: HomeAssistant, entry: LocalVoiceConfigEntry
) -> None:
    """Reload when subentries or options change, so entities match them."""
    await hass.config_entries.async_reload(entry.entry_id)
