"""Hand an add-on's real discovery message to Home Assistant's hassio discovery flow.

Run by scripts/addon_build/smoke.py (build-addon --smoke) with the message the
add-on's discovery service posted to the Supervisor stand-in, in
LOCAL_VOICE_SMOKE_DISCOVERY, while the add-on's server runs: Home Assistant's test
harness (pytest-homeassistant-custom-component, with this folder's conftest: the
integration loaded, loopback sockets) confirms the discovered add-on, and the entry
it creates must load against that server. Not collected by the suite (the name does
not start with test_): it needs a running add-on image.
"""

from __future__ import annotations

import json
import os

from custom_components.local_voice.const import DOMAIN
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.hassio import HassioServiceInfo


async def test_discovery_makes_a_working_entry(hass: HomeAssistant) -> None:
    """Confirm the discovered add-on; the created entry loads."""
    config = json.loads(os.environ["LOCAL_VOICE_SMOKE_DISCOVERY"])
    addon = json.loads(os.environ["LOCAL_VOICE_SMOKE_ADDON"])
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": config_entries.SOURCE_HASSIO},
        data=HassioServiceInfo(
            config=config, name=addon["name"], slug=addon["slug"], uuid="smoke"
        ),
    )
    assert result["type"] is FlowResultType.FORM, result
    assert result["step_id"] == "hassio_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    if result.get("step_id") == "template_without_tools":
        # The smoke's tiny model has no tool-calling template: Assist warns, then adds.
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    assert entry.state is ConfigEntryState.LOADED, entry.reason
    print(f"\nsmoke: Home Assistant entry '{entry.title}' {entry.state}: {entry.data}")
    assert await hass.config_entries.async_unload(entry.entry_id)
