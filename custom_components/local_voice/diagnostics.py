"""Diagnostics: what the server offers and how fast recent requests were."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_KEY
from homeassistant.core import HomeAssistant

from .coordinator import LlamaServerCoordinator, LocalVoiceConfigEntry
from .llm_entity import chat_state
from .wyoming_service import installed_programs

TO_REDACT = {CONF_API_KEY}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: LocalVoiceConfigEntry
) -> dict[str, Any]:
    """Return the entry (key redacted), the server's state and recent timings."""
    coordinator = entry.runtime_data
    diagnostics: dict[str, Any] = {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "server_available": coordinator.last_update_success,
    }
    if isinstance(coordinator, LlamaServerCoordinator):
        diagnostics["server"] = coordinator.data and asdict(coordinator.data)
        # Pinned slots and prompt_n / cache_n of recent requests: is the cache reused?
        diagnostics["chat"] = chat_state(coordinator).as_dict()
        return diagnostics
    service = entry.data["service"]
    diagnostics["server"] = coordinator.data and {
        "programs": [
            {
                "name": program.name,
                "version": program.version,
                "models_or_voices": len(getattr(program, "models", None) or [])
                + len(getattr(program, "voices", None) or []),
            }
            for program in installed_programs(coordinator.data, service)
        ]
    }
    diagnostics["timings"] = list(coordinator.timings)
    return diagnostics
