"""The home's voice satellites as Assist satellite entities, as real ones are.

A satellite (an ESPHome or Wyoming one, a Voice PE) is an `AssistSatelliteEntity`
on its device: it runs the pipeline with `async_accept_pipeline_from_satellite`,
with the pipeline its device has chosen (here none: the preferred one), and its
state follows the run (listening, processing, responding). These stand in for the
hardware only: the audio they send is the benchmark's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable

from home import Home
from pytest_homeassistant_custom_component.common import (
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

OWNER = "home_satellites"  # the domain of the home's satellite devices (home.py)

type EventCallback = Callable[[PipelineEvent], None]


class Satellite(AssistSatelliteEntity):
    """One satellite; each command it hears starts a new conversation."""

    _attr_has_entity_name = True
    _attr_name = None

    def __init__(self, key: str) -> None:
        """On the home's satellite device for this area key."""
        self._attr_unique_id = f"satellite-{key}"
        self._attr_device_info = DeviceInfo(identifiers={(OWNER, key)})
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
        """Hand the run's events to the benchmark, as the device would play them."""
        if self._listener is not None:
            self._listener(event)

    async def async_say(
        self, audio: AsyncIterable[bytes], listener: EventCallback
    ) -> None:
        """Send one spoken command through the preferred pipeline."""
        self._listener = listener
        self._conversation_id = None  # a new conversation, as after a long pause
        try:
            await self.async_accept_pipeline_from_satellite(audio)
        finally:
            self._listener = None


async def async_add_satellites(hass: HomeAssistant, home: Home) -> dict[str, Satellite]:
    """Put a satellite entity on each of the home's satellite devices."""
    assert await async_setup_component(hass, "assist_satellite", {})
    satellites = {key: Satellite(key) for key in home.satellites}

    async def add(
        _hass: HomeAssistant, _entry: ConfigEntry, add: AddConfigEntryEntitiesCallback
    ) -> None:
        add(list(satellites.values()))

    async def forward(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(
            entry, ["assist_satellite"]
        )
        return True

    mock_integration(hass, MockModule(OWNER, async_setup_entry=forward))
    mock_platform(hass, f"{OWNER}.config_flow")
    mock_platform(
        hass, f"{OWNER}.assist_satellite", MockPlatform(async_setup_entry=add)
    )
    (owner,) = hass.config_entries.async_entries(OWNER)
    with mock_config_flow(OWNER, ConfigFlow):
        assert await hass.config_entries.async_setup(owner.entry_id)
    await hass.async_block_till_done()
    for key, satellite in satellites.items():
        assert satellite.device_entry is not None, key
        assert satellite.device_entry.id == home.satellites[key], key
    return satellites
