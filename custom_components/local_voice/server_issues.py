"""Repairs issues for a llama-server whose set-up wastes or breaks the prompt cache.

Thin glue around `server_checks.find_problems`: after each poll of /props and after
each chat and warm-up, every problem found is raised as a repairs issue (one per
kind and server) and every other kind is cleared, so an issue goes away by itself
once the server is fixed. Issues name the add-on's options for an entry the add-on
announced (Supervisor discovery), llama-server's flags otherwise. Only a router's
missing model is fixed from Home Assistant (repairs.py); the rest, on the server.
"""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_HASSIO
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN, SUBENTRY_CONVERSATION
from .coordinator import LlamaConfigEntry, LlamaServerCoordinator, subentry_model
from .llama_server.url import strip_user_info
from .server_checks import KINDS, ServerState, find_problems
from .slots import SlotManager


def issue_id(entry: LlamaConfigEntry, kind: str) -> str:
    """Return the issue id of one kind of problem on one server."""
    return f"{kind}_{entry.entry_id}"


class ServerIssues:
    """Raises and clears one llama-server entry's repairs issues."""

    def __init__(
        self,
        hass: HomeAssistant,
        coordinator: LlamaServerCoordinator,
        slots: SlotManager,
    ) -> None:
        """Check what the coordinator polls and what the slot manager records."""
        self.hass = hass
        self.coordinator = coordinator
        self.slots = slots
        self.entry = coordinator.config_entry

    def _state(self) -> ServerState:
        entry = self.entry
        tool_agents = sum(
            1
            for subentry in entry.subentries.values()
            if subentry.subentry_type == SUBENTRY_CONVERSATION
            and subentry.data.get(CONF_LLM_HASS_API)
        )
        props = self.coordinator.data
        used = tuple(
            subentry_model(props, subentry) or ""
            for subentry in entry.subentries.values()
        )
        loads = self.coordinator.load_seconds
        waits = [loads[model] for model in used if model in loads]
        return ServerState(
            props=props,
            prefix_tokens=max(self.slots.prefix_tokens.values(), default=None),
            tool_agents=tool_agents,
            conversations=len(self.slots.pinned),
            misses=self.slots.misses,
            addon=entry.source == SOURCE_HASSIO,
            models_used=used if props.router else (),
            load_seconds=max(waits, default=None),
        )

    @callback
    def async_check(self) -> None:
        """Raise an issue for each problem the server shows now; clear the others.

        While the server cannot be reached nothing changes: what was wrong is
        judged again when it is back.
        """
        if not self.coordinator.last_update_success or self.coordinator.data is None:
            return
        problems = {problem.kind: problem for problem in find_problems(self._state())}
        server = {
            "server": strip_user_info(self.entry.title),
            "url": strip_user_info(self.coordinator.client.url),
        }
        for kind in KINDS:
            if (problem := problems.get(kind)) is None:
                ir.async_delete_issue(self.hass, DOMAIN, issue_id(self.entry, kind))
                continue
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id(self.entry, kind),
                # A missing model is picked here (repairs.py); the rest, on the server.
                is_fixable=kind == "model_missing",
                data={"entry_id": self.entry.entry_id},
                severity=ir.IssueSeverity.ERROR
                if problem.error
                else ir.IssueSeverity.WARNING,
                translation_key=problem.translation_key,
                translation_placeholders=server | problem.placeholders,
            )

    @callback
    def async_clear(self) -> None:
        """Clear every issue of the server (its entry is unloaded)."""
        for kind in KINDS:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id(self.entry, kind))
