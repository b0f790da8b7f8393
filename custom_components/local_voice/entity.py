"""Base entities: availability follows the server's coordinator."""

from __future__ import annotations

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import LlamaServerCoordinator, WyomingCoordinator


class LlamaServerEntity(CoordinatorEntity[LlamaServerCoordinator]):
    """An entity of one conversation or AI task subentry on a llama-server."""

    _attr_has_entity_name = True
    _attr_name = None

    def __init__(
        self, coordinator: LlamaServerCoordinator, subentry: ConfigSubentry
    ) -> None:
        """Give each subentry its own service device, as core LLM integrations do."""
        super().__init__(coordinator)
        self.subentry = subentry
        self._attr_unique_id = subentry.subentry_id
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, subentry.subentry_id)},
            name=subentry.title,
            manufacturer="llama.cpp",
            model=coordinator.data.model,
            sw_version=coordinator.data.build,
            entry_type=DeviceEntryType.SERVICE,
        )


class WyomingEntity(CoordinatorEntity[WyomingCoordinator]):
    """An STT or TTS entity on one Wyoming server."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: WyomingCoordinator, service: str) -> None:
        """Name the device after the server's first installed program."""
        super().__init__(coordinator)
        entry = coordinator.config_entry
        self._attr_unique_id = f"{entry.entry_id}-{service}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=entry.title,
            entry_type=DeviceEntryType.SERVICE,
        )

    @callback
    def _update_from_info(self) -> None:
        """Take what the entity offers (languages, voices) from the server's info."""

    @callback
    def _handle_coordinator_update(self) -> None:
        """Follow the server's offer as it changes (a model or voice added)."""
        self._update_from_info()
        super()._handle_coordinator_update()
