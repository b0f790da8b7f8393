"""Voice satellites as Assist satellite entities, for tests and benchmarks.

A satellite (ESPHome, Wyoming, a Voice PE) is an `AssistSatelliteEntity` on its
device: it runs its pipeline with `async_accept_pipeline_from_satellite` (here
the preferred one: no pipeline select), and its state follows the run. These
stand in for the hardware only: the audio they send is the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable

from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    mock_config_flow,
    mock_integration,
    mock_platform,
)

from homeassistant.components import tts
from homeassistant.components.assist_pipeline import PipelineEvent
from homeassistant.components.assist_satellite import (
    AssistSatelliteConfiguration,
    AssistSatelliteEntity,
)
from homeassistant.config_entries import ConfigEntry, ConfigFlow
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.setup import async_setup_component

type EventCallback = Callable[[PipelineEvent], None]


class Satellite(AssistSatelliteEntity):
    """One satellite on the device `(owner, key)`."""

    _attr_has_entity_name = True
    _attr_name = None

    def __init__(self, owner: str, key: str) -> None:
        """On the owner integration's device for this key; answers read as WAV."""
        self._attr_unique_id = f"satellite-{key}"
        self._attr_device_info = DeviceInfo(identifiers={(owner, key)})
        self._attr_tts_options = {tts.ATTR_PREFERRED_FORMAT: "wav"}
        self._listener: EventCallback | None = None

    @callback
    def async_get_configuration(self) -> AssistSatelliteConfiguration:
        """No wake words here: the satellite detects its own."""
        return AssistSatelliteConfiguration([], [], 0)

    async def async_set_configuration(
        self, config: AssistSatelliteConfiguration
    ) -> None:
        """Nothing to configure."""

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        """Hand the run's events to the caller, as the device would play them."""
        if self._listener is not None:
            self._listener(event)

    async def async_say(
        self, audio: AsyncIterable[bytes], listener: EventCallback
    ) -> None:
        """Send one spoken command, in a new conversation, as after a long pause."""
        self._listener = listener
        self._conversation_id = None
        try:
            await self.async_accept_pipeline_from_satellite(audio)
        finally:
            self._listener = None


async def async_add_satellites(
    hass: HomeAssistant, owner: str, keys: Iterable[str]
) -> dict[str, Satellite]:
    """Put a satellite entity on each of the owner's devices (its entry is made if
    there is none yet)."""
    assert await async_setup_component(hass, "assist_satellite", {})
    satellites = {key: Satellite(owner, key) for key in keys}

    async def add(
        _hass: HomeAssistant, _entry: ConfigEntry, add: AddConfigEntryEntitiesCallback
    ) -> None:
        add(list(satellites.values()))

    async def forward(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(
            entry, ["assist_satellite"]
        )
        return True

    mock_integration(hass, MockModule(owner, async_setup_entry=forward))
    mock_platform(hass, f"{owner}.config_flow")
    mock_platform(
        hass, f"{owner}.assist_satellite", MockPlatform(async_setup_entry=add)
    )
    if not (entries := hass.config_entries.async_entries(owner)):
        entries = [MockConfigEntry(domain=owner)]
        entries[0].add_to_hass(hass)
    with mock_config_flow(owner, ConfigFlow):
        assert await hass.config_entries.async_setup(entries[0].entry_id)
    await hass.async_block_till_done()
    return satellites
