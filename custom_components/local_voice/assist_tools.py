"""The turn's Assist tools, and what each one can act on.

The guards (turn_guards.py) need a few facts of a tool that its schema alone does
not give: whether it changes something, whether it picks entities by name, which
domains its intent acts on (Assist's on/off intents take any domain that has a
turn_on or turn_off service), and which tool does what the user asked when the
model's cannot act on what the user named (tool_choice.py chooses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import probatio

from homeassistant.core import HomeAssistant
from homeassistant.helpers import intent, llm

from .grounding import Fit
from .tool_choice import asked_words, best_tool, value_arguments
from .utterance import Utterance

_SWITCH_INTENTS = {"on": "HassTurnOn", "off": "HassTurnOff"}
SWITCH_TOOLS = tuple(_SWITCH_INTENTS.values())
# Domains Assist's on/off intents act on with services of their own (open, lock,
# press); every other domain they reach through its turn_on/turn_off service.
_ON_OFF_OWN = frozenset(("cover", "lock", "valve", "button", "input_button"))


def is_action(tool: llm.Tool | None) -> bool:
    """Return True for a tool that changes something (not a read-only look-up)."""
    return tool is not None and not tool.annotations.read_only


@dataclass(frozen=True, slots=True)
class AssistTools:
    """The tools of one turn, by name."""

    hass: HomeAssistant
    by_name: dict[str, llm.Tool]
    # Each intent's domains (None: any), read once a turn: choosing a tool asks
    # for every tool's, and Home Assistant lists its intent handlers anew each time.
    platforms: dict[str, set[str] | None]

    @classmethod
    def of(cls, hass: HomeAssistant, api: llm.APIInstance | None) -> AssistTools:
        """Return the tools the turn's LLM API offers (none without one)."""
        handlers = {h.intent_type: h.platforms for h in intent.async_get(hass)}
        return cls(
            hass, {tool.name: tool for tool in api.tools} if api else {}, handlers
        )

    def __contains__(self, name: str) -> bool:
        """Return True when the turn offers a tool of this name."""
        return name in self.by_name

    def is_action(self, name: str) -> bool:
        """Return True when the tool changes something."""
        return is_action(self.by_name.get(name))

    def named(self, intent_type: str) -> str | None:
        """Return the name of the tool for an intent ("HassStartTimer"), if offered."""
        return next((name for name in self.by_name if name.endswith(intent_type)), None)

    def switch(self, direction: str) -> str | None:
        """Return the on/off tool's name for a direction ("on", "off")."""
        return self.named(_SWITCH_INTENTS[direction])

    def domains(self, name: str) -> set[str] | None:
        """Return the domains a tool's intent acts on (None: any)."""
        intent_type = getattr(self.by_name.get(name), "intent_type", None)
        return self.platforms.get(intent_type) if intent_type else None

    def takes_target(self, name: str) -> bool:
        """Return True for a tool that picks entities by name (not a timer's)."""
        tool = self.by_name.get(name)
        if tool is None:
            return False
        if self.domains(name) is not None:
            return True  # an intent for some domains acts on their entities
        try:
            tool.parameters({"name": "x"})
        except probatio.Invalid:
            return False
        return True

    def acts_on(self, name: str, domains: set[str]) -> bool:
        """Return True when the tool is an action that can act on every domain named.

        Assist's on/off intents take any domain, through its turn_on or turn_off
        service (or the cover's, lock's, valve's or button's own): a shopping list
        is out of their reach.
        """
        if not self.is_action(name) or not self.takes_target(name):
            return False
        if (platforms := self.domains(name)) is not None:
            return domains <= platforms
        services = self.hass.services
        return all(
            domain in _ON_OFF_OWN
            or services.has_service(domain, "turn_on")
            or services.has_service(domain, "turn_off")
            for domain in domains
        )

    def instead_of(
        self, name: str, target: Fit, utterance: Utterance, *, switching: bool
    ) -> tuple[str, dict[str, Any]] | None:
        """Return the tool and arguments that act on the target, for one that cannot.

        An on/off tool for words that switch nothing ("set the TV volume to 50
        percent", `switching` False) gives way to a tool the words choose. None
        when the tool fits, or when no other tool clearly does.
        """
        domains = {entity.domain for entity in target.entities}
        fits_already = self.takes_target(name) and self.acts_on(name, domains)
        if fits_already and (switching or not name.endswith(SWITCH_TOOLS)):
            return None
        fits = {
            other: tool
            for other, tool in self.by_name.items()
            if other != name
            and self.acts_on(other, domains)
            and not (fits_already and other.endswith(SWITCH_TOOLS))
        }
        best = best_tool(asked_words(utterance, target), fits)
        if best is None:
            return None
        args = value_arguments(self.by_name[best], target, utterance)
        return None if args is None else (best, args)
