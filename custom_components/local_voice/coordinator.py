"""Coordinators that poll each backend, so entities follow the server's availability."""

from __future__ import annotations

from collections import deque
from datetime import timedelta
from typing import Any

from wyoming.info import Info

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .const import DOMAIN, LOGGER, UPDATE_INTERVAL_SECONDS
from .llama_server import InvalidAuth, LlamaServerClient, LlamaServerError, ServerProps
from .wyoming_service import WyomingError, WyomingServer

type LlamaConfigEntry = ConfigEntry[LlamaServerCoordinator]
type WyomingConfigEntry = ConfigEntry[WyomingCoordinator]
type LocalVoiceConfigEntry = ConfigEntry[LlamaServerCoordinator | WyomingCoordinator]


class LlamaServerCoordinator(DataUpdateCoordinator[ServerProps]):
    """Polls llama-server's /props: model, context size, slots, tool support."""

    config_entry: LlamaConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry[Any], client: LlamaServerClient
    ) -> None:
        """Keep the client the platforms use for requests."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {client.url}",
            update_interval=timedelta(seconds=UPDATE_INTERVAL_SECONDS),
        )
        self.client = client

    async def _async_update_data(self) -> ServerProps:
        """Fetch the server's properties; a refused key starts reauthentication."""
        try:
            return await self.client.async_get_props()
        except InvalidAuth as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except LlamaServerError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="server_unavailable",
                translation_placeholders={"server": self.client.url, "error": str(err)},
            ) from err


class WyomingCoordinator(DataUpdateCoordinator[Info]):
    """Polls a Wyoming server's info: the voices, languages and models it offers."""

    config_entry: WyomingConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry[Any], server: WyomingServer
    ) -> None:
        """Keep the server address the platforms connect to."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {server}",
            update_interval=timedelta(seconds=UPDATE_INTERVAL_SECONDS),
        )
        self.server = server
        # Per-request stage timings (STT time, time to first audio, audio length),
        # newest last, shown in diagnostics so users can tune their set-up.
        self.timings: deque[dict[str, Any]] = deque(maxlen=20)

    async def _async_update_data(self) -> Info:
        """Describe the server."""
        try:
            return await self.server.async_describe()
        except WyomingError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="server_unavailable",
                translation_placeholders={
                    "server": str(self.server),
                    "error": str(err),
                },
            ) from err
