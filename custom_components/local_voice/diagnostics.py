"""Diagnostics: what the server offers and how fast recent requests were."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant

from .coordinator import LlamaServerData, LocalVoiceConfigEntry
from .llama_server.errors import LlamaServerError
from .llama_server.url import strip_user_info
from .wyoming_client.server import installed_programs

TO_REDACT = {CONF_API_KEY}
# What /slots says of each slot that helps judge the cache (not the prompts).
SLOT_FIELDS = ("id", "n_ctx", "is_processing")


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: LocalVoiceConfigEntry
) -> dict[str, Any]:
    """Return the entry (key redacted), the server's state and recent timings."""
    data = entry.runtime_data
    coordinator = data.coordinator
    diagnostics: dict[str, Any] = {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "server_available": coordinator.last_update_success,
    }
    if isinstance(data, LlamaServerData):
        diagnostics["server"] = data.coordinator.data and asdict(data.coordinator.data)
        diagnostics["server_slots"] = await _async_server_slots(data)
        # Pinned slots and prompt_n / cache_n of recent requests: is the cache reused?
        diagnostics["chat"] = data.slots.as_dict()
        if models := data.coordinator.model_slots:  # a router: each model's slots
            diagnostics["models"] = {name: s.as_dict() for name, s in models.items()}
        return _without_user_info(diagnostics)
    service = entry.data["service"]
    diagnostics["server"] = data.coordinator.data and {
        "programs": [
            {
                "name": program.name,
                "version": program.version,
                "models_or_voices": len(getattr(program, "models", None) or [])
                + len(getattr(program, "voices", None) or []),
            }
            for program in installed_programs(data.coordinator.data, service)
        ]
    }
    diagnostics["timings"] = list(data.timings)
    return _without_user_info(diagnostics)


def _without_user_info(diagnostics: dict[str, Any]) -> dict[str, Any]:
    """Strip URL user-info from every string (an old entry's URL and unique id)."""
    return {key: _strip(value) for key, value in diagnostics.items()}


def _strip(value: Any) -> Any:
    if isinstance(value, str):
        return strip_user_info(value)
    if isinstance(value, dict):
        return _without_user_info(value)
    if isinstance(value, list | tuple):
        return [_strip(item) for item in value]
    return value


async def _async_server_slots(data: LlamaServerData) -> list[dict[str, Any]] | str:
    """Return what /slots says of each slot, or why it cannot be read."""
    if not data.coordinator.last_update_success:
        return "server unavailable"
    try:
        slots = await data.client.async_get_slots()
    except LlamaServerError as err:
        return str(err)  # started with --no-slots
    return [{key: slot.get(key) for key in SLOT_FIELDS} for slot in slots]
