"""The home's voice satellites as Assist satellite entities, as real ones are.

Each is `tests/satellite_support.py`'s `Satellite` on one of the home's satellite
devices (home.py): it runs the preferred pipeline and its state follows the run.
"""

from __future__ import annotations

from home import Home

from homeassistant.core import HomeAssistant
from tests.satellite_support import Satellite, async_add_satellites

OWNER = "home_satellites"  # the domain of the home's satellite devices (home.py)


async def async_add_home_satellites(
    hass: HomeAssistant, home: Home
) -> dict[str, Satellite]:
    """Put a satellite entity on each of the home's satellite devices."""
    satellites = await async_add_satellites(hass, OWNER, home.satellites)
    for key, satellite in satellites.items():
        assert satellite.device_entry is not None, key
        assert satellite.device_entry.id == home.satellites[key], key
    return satellites
