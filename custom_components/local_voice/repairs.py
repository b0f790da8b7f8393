"""The fix flow of a router's repair: an agent names a model the router lacks.

The other repairs are fixed on the server (its flags or the add-on's options); this
one is fixed here: the agents and AI tasks that name a missing model are moved to one
of the router's models, which the user picks.
"""

from __future__ import annotations

from typing import Any

import probatio as vol

from homeassistant.components.repairs import RepairsFlow, RepairsFlowResult
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers.selector import SelectSelector, SelectSelectorConfig

from .const import CONF_MODEL
from .coordinator import LlamaConfigEntry, subentry_model
from .llama_server.url import strip_user_info


class MissingModelFlow(RepairsFlow):
    """Move the entry's agents off a model its router lacks."""

    def __init__(self, entry_id: str) -> None:
        """Fix the subentries of this llama-server entry."""
        super().__init__()
        self._entry_id = entry_id

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> RepairsFlowResult:
        """Ask for the model; move every subentry that names a missing one to it."""
        entry: LlamaConfigEntry | None = self.hass.config_entries.async_get_entry(
            self._entry_id
        )
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="entry_not_loaded")
        props = entry.runtime_data.coordinator.data
        stranded = [
            subentry
            for subentry in entry.subentries.values()
            if subentry_model(props, subentry) not in props.model_names
        ]
        # The first step gets {"issue_id": ...} from the repairs API; the form, a model.
        chosen = (user_input or {}).get(CONF_MODEL)
        if chosen:
            for subentry in stranded:
                data = {**subentry.data, CONF_MODEL: chosen}
                self.hass.config_entries.async_update_subentry(
                    entry, subentry, data=data
                )
        if chosen or not stranded:
            return self.async_create_entry(data={})
        models = props.model_names
        schema = vol.Schema(
            {
                vol.Required(CONF_MODEL, default=props.model_for(None)): SelectSelector(
                    SelectSelectorConfig(options=models)
                )
            }
        )
        missing = sorted({str(s.data.get(CONF_MODEL)) for s in stranded})
        return self.async_show_form(
            step_id="init",
            data_schema=schema,
            description_placeholders={
                "agents": ", ".join(subentry.title for subentry in stranded),
                "missing": ", ".join(missing),
                "models": ", ".join(models),
                "url": strip_user_info(entry.runtime_data.client.url),
            },
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """Create the fix flow of a missing-model repair."""
    return MissingModelFlow(str((data or {})["entry_id"]))
