"""Base entities: availability follows the server's coordinator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import (
    DeviceEntryType,
    DeviceInfo,
    async_get_device_id_by_identifier,
)
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import CONF_MODEL, DOMAIN
from .coordinator import (
    LlamaServerCoordinator,
    LlamaServerData,
    WyomingCoordinator,
    WyomingData,
    subentry_model,
)
from .llama_server.props import ServerProps


def llama_server_device(entry: ConfigEntry[Any], props: ServerProps) -> DeviceInfo:
    """Describe the server's own device: its sensors; the agents' devices run on it."""
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        name=entry.title,
        manufacturer="llama.cpp",
        model=props.model,
        sw_version=props.build,
        entry_type=DeviceEntryType.SERVICE,
    )


def wyoming_device(entry: ConfigEntry[Any]) -> DeviceInfo:
    """Describe a Wyoming server's device, named as the server (the entry's title)."""
    return DeviceInfo(
        identifiers={(DOMAIN, entry.entry_id)},
        name=entry.title,
        entry_type=DeviceEntryType.SERVICE,
    )


class LlamaServerEntity(CoordinatorEntity[LlamaServerCoordinator]):
    """An entity of one conversation or AI task subentry on a llama-server."""

    _attr_has_entity_name = True
    _attr_name = None

    def __init__(self, data: LlamaServerData, subentry: ConfigSubentry) -> None:
        """Give each subentry its own service device, as core LLM integrations do.

        It runs on the server's device (registered at set-up), which has the sensors.
        """
        super().__init__(data.coordinator)
        entry = data.coordinator.config_entry
        self.client = data.client
        #: On a router, the model this entity's requests name (its own slots).
        self.model = subentry_model(data.coordinator.data, subentry)
        self.slots = data.coordinator.slots_for(self.model)
        self.subentry = subentry
        self._attr_unique_id = subentry.subentry_id
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, subentry.subentry_id)},
            name=subentry.title,
            manufacturer="llama.cpp",
            model=self.model or data.coordinator.data.model,
            sw_version=data.coordinator.data.build,
            entry_type=DeviceEntryType.SERVICE,
            via_device_id=async_get_device_id_by_identifier(
                self.coordinator.hass,
                (DOMAIN, entry.entry_id),
                config_entry_id=entry.entry_id,
            ),
        )

    @property
    def model_props(self) -> ServerProps:
        """Return the properties of the model this entity's requests go to.

        On a router, the model's own once it is loaded; before, the router's, which
        knows neither its context size nor what it can do (`router` is then True).
        """
        props = self.coordinator.data
        return props.loaded.get(self.model, props) if self.model else props

    @property
    def options(self) -> Mapping[str, Any]:
        """Return the subentry's options, with the model its requests name."""
        if self.model is None:
            return self.subentry.data
        return {**self.subentry.data, CONF_MODEL: self.model}


class WyomingEntity(CoordinatorEntity[WyomingCoordinator]):
    """The STT or TTS entity of one Wyoming server: named as its device, the server.

    So a whisper.cpp server gives `stt.whisper_cpp`, not `stt.whisper_cpp_whisper_cpp`.
    """

    _attr_has_entity_name = True
    _attr_name: str | None = None

    def __init__(self, data: WyomingData, service: str) -> None:
        """Name the device after the server (the entry's title)."""
        super().__init__(data.coordinator)
        self.server = data.server
        self.timings = data.timings
        entry = data.coordinator.config_entry
        self._attr_unique_id = f"{entry.entry_id}-{service}"
        self._attr_device_info = wyoming_device(entry)

    @callback
    def _update_from_info(self) -> None:
        """Take what the entity offers (languages, voices) from the server's info."""

    @callback
    def _handle_coordinator_update(self) -> None:
        """Follow the server's offer as it changes (a model or voice added)."""
        self._update_from_info()
        super()._handle_coordinator_update()
