"""Guards around a small model's tool calls, grounded in the home.

Before the model (`async_before_model`): a question about what the user clearly
named is answered from its state; "and the other one" repeats the last action.
Before a round's calls run (`async_guard`): an action is never run for a question;
a call whose target differs from what the user clearly named gets the user's
target; a reference back ("turn it off") gets the last turn's target. After a
round (turn.py), a call whose target was not found is grounded (`retry_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import probatio

from homeassistant.components import conversation
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    intent,
    llm,
)
from homeassistant.util import ulid as ulid_util

from .agent_text import AgentError, async_agent_text
from .const import LOGGER
from .grounding import (
    Ambiguous,
    Exposed,
    Fit,
    Grounding,
    NotFound,
    exposed_entities,
    ground,
    kind_named,
    match,
    others_like,
    said_words,
    with_target,
)
from .state_answer import async_state_answer
from .turn_history import (
    earlier_action,
    earlier_targets,
    earlier_utterance,
    utterance_of,
)
from .utterance import ACTION_VERBS, Utterance


# Tool errors that say the target was not found or the slots were refused.
def is_action(tool: llm.Tool | None) -> bool:
    """Return True for a tool that changes something (not a read-only look-up)."""
    return tool is not None and not tool.annotations.read_only


_SWITCH_INTENTS = {"on": "HassTurnOn", "off": "HassTurnOff"}
SWITCH_TOOLS = tuple(_SWITCH_INTENTS.values())
_DURATION_ARGUMENTS = frozenset(("hours", "minutes", "seconds"))


@dataclass(slots=True)
class Guarded:
    """A round's calls after the guards: what runs, or what is said instead."""

    calls: list[llm.ToolInput] = field(default_factory=list)
    say: str | None = None
    refusals: list[dict[str, Any]] = field(default_factory=list)


def _refusal(call: llm.ToolInput, text: str) -> dict[str, Any]:
    return {
        "role": "tool_result",
        "tool_call_id": call.id,
        "tool_name": call.tool_name,
        "result": llm.ToolResult(
            data={"error": "NotDone", "error_text": text}, error=True
        ),
    }


class CallGuard:
    """The guards of one turn, with the facts they share."""

    def __init__(
        self,
        hass: HomeAssistant,
        chat_log: conversation.ChatLog,
        language: str,
        *,
        device_id: str | None = None,
        active: bool = True,
    ) -> None:
        """Read the user's message, the satellite's area and the tools once.

        Inactive (an AI task: its "message" is instructions, its answer data),
        the calls run as the model made them.
        """
        self.hass = hass
        device = dr.async_get(hass).async_get(device_id) if device_id else None
        area_id = dr.async_get_effective_area_id(hass, device) if device else None
        area = ar.async_get(hass).async_get_area(area_id) if area_id else None
        self.area = area.name if area else None
        self.chat_log = chat_log
        self.language = language
        self.active = active
        self.utterance = utterance_of(chat_log) if active else Utterance("")
        api = chat_log.llm_api
        self.tools = {tool.name: tool for tool in api.tools} if api else {}

    async def async_before_model(self) -> Guarded | None:
        """Answer without the model what the home alone answers.

        A question about what the user clearly named is answered from its state
        (a small model guesses states); "and the other one" repeats the last
        action on the other target (a small model loses it). None: ask the model.
        """
        if not self.active:
            return None
        utterance = self.utterance
        if utterance.is_question:
            if fit := self.said():
                answer = await async_state_answer(
                    self.hass, fit.entities, self.language
                )
                return Guarded(say=answer) if answer else None
            return None
        if not utterance.refers_back or self.said() is not None:
            return None
        call, _ = earlier_action(self.chat_log)
        target = self._referred()
        if target is None:
            return None
        if isinstance(target, Ambiguous):
            return await self.async_which_one(target)
        tool = self._switch_tool(call.tool_name if call else None)
        if tool is None:
            return None
        args = with_target(call.tool_args if call else {}, target.target)
        return Guarded(calls=[llm.ToolInput(tool, args, id=ulid_util.ulid_now())])

    def _switch_tool(self, earlier: str | None) -> str | None:
        """Return the tool a follow-up means: its on/off word, else the last one.

        "Switch that one off again" is a turn-off whatever was done before; with
        another verb ("dim it") the model decides.
        """
        if direction := self.utterance.direction:
            return self._switch_named(direction)
        return None if set(self.utterance.words) & ACTION_VERBS else earlier

    def _switch_named(self, direction: str) -> str | None:
        """Return the on/off tool's name for a direction."""
        intent_type = _SWITCH_INTENTS[direction]
        return next((name for name in self.tools if name.endswith(intent_type)), None)

    def _timed(self, call: llm.ToolInput) -> llm.ToolInput:
        """Return a timer call with the length the user said, not the model's guess."""
        duration = self.utterance.duration
        if duration is None or not call.tool_name.endswith("HassStartTimer"):
            return call
        kept = {k: v for k, v in call.tool_args.items() if k not in _DURATION_ARGUMENTS}
        return llm.ToolInput(call.tool_name, {**kept, **duration}, id=call.id)

    def _switched(self, call: llm.ToolInput) -> llm.ToolInput:
        """Return an on/off call going the way the user's words say.

        A switch the model called the wrong way round is turned; another tool
        that cannot act on the device the user named (a timer tool for "close
        the blinds") becomes the switch, on that device.
        """
        direction = self.utterance.direction
        if direction is None or (tool := self._switch_named(direction)) is None:
            return call
        args = call.tool_args
        if not call.tool_name.endswith(SWITCH_TOOLS):
            said = self.said()
            if (
                said is None
                or self._takes_target(call)
                or "timer" in self.utterance.words
            ):
                return call
            args = dict(said.target)
        if tool == call.tool_name:
            return call
        LOGGER.debug("%s made %s: the user said %s", call.tool_name, tool, direction)
        return llm.ToolInput(tool, args, id=call.id)

    @staticmethod
    def _kind_fit(target: dict[str, str], everything: list[Exposed]) -> Grounding:
        """Return the fit of a kind (in an area), or nothing when none is there."""
        picked = tuple(
            e
            for e in everything
            if e.domain == target["domain"]
            and ("area" not in target or e.area == target["area"])
        )
        return Fit(dict(target), picked) if picked else NotFound("")

    @cached_property
    def everything(self) -> list[Exposed]:
        """The exposed entities, read once a turn (names and areas, not states)."""
        return exposed_entities(self.hass)

    def said(self) -> Fit | None:
        """Return what the user's words name clearly (in the satellite's area)."""
        found = self._said_match()
        return found if isinstance(found, Fit) else None

    def _said_match(self) -> Grounding:
        """Match the user's words; the satellite's area settles two fits.

        Words that name only a kind ("the lights") mean that kind in the
        satellite's area, or everywhere ("all the lights", or from the app).
        """
        everything = self.everything
        words = said_words(self.utterance, everything)
        if self.utterance.wants_several and (kind := kind_named(words)):
            if self.area and "all" not in words:
                kind["area"] = self.area
            return self._kind_fit(kind, everything)
        found = match(words, everything, None)
        if isinstance(found, Ambiguous):
            return found.in_area(self.area) or found
        return found

    def is_action(self, call: llm.ToolInput) -> bool:
        """Return True when the call changes something."""
        return is_action(self.tools.get(call.tool_name))

    async def async_guard(self, calls: list[llm.ToolInput]) -> Guarded:
        """Check a round's calls before they run."""
        if not calls or not self.active:
            return Guarded(calls=calls)
        if self.utterance.is_question:
            return await self._async_question(calls)
        guarded = Guarded()
        for call in map(self._switched, map(self._timed, calls)):
            if not self.is_action(call) or not self._takes_target(call):
                guarded.calls.append(call)
                continue
            target = self._intended(call)
            if isinstance(target, Ambiguous):
                return await self.async_which_one(target)
            if target is None:
                guarded.calls.append(call)
                continue
            LOGGER.debug("Target of %s set to %s", call.tool_name, target.target)
            args = with_target(call.tool_args, target.target)
            guarded.calls.append(llm.ToolInput(call.tool_name, args, id=call.id))
        return guarded

    def _takes_target(self, call: llm.ToolInput) -> bool:
        """Return True for a tool that picks entities by name (not a timer's)."""
        tool = self.tools.get(call.tool_name)
        if tool is None:
            return False
        try:
            tool.parameters({"name": "x"})
        except probatio.Invalid:
            return False
        return True

    def _intended(self, call: llm.ToolInput) -> Fit | Ambiguous | None:
        """Return the target the user meant, when the call's differs from it."""
        found = self._said_match()
        if domains := self._tool_domains(call):
            found = self._within(found, domains)
        said: Fit | Ambiguous | None = found if isinstance(found, Fit) else None
        if (
            isinstance(found, Ambiguous)
            and not self.utterance.wants_several
            and not self._names_one_of(call, found)
        ):
            return found  # "the lamp": which one, not whatever the model picked
        if said is None and self.utterance.refers_back:
            said = self._referred()
        if not isinstance(said, Fit):
            return said
        name = call.tool_args.get("name")
        if "name" not in said.target:  # the user named an area (and a kind)
            if not isinstance(name, str):
                return None  # so does the call: the intent matches it itself
            if self.utterance.wants_several:
                return said  # "the bedroom lights": all of them, not one
        names = {n.casefold() for e in said.entities for n in e.names}
        if isinstance(name, str) and name.casefold() in names:
            return None
        return said

    def _tool_domains(self, call: llm.ToolInput) -> set[str] | None:
        """Return the domains a tool's intent acts on (None: any)."""
        tool = self.tools.get(call.tool_name)
        intent_type = getattr(tool, "intent_type", None)
        for handler in intent.async_get(self.hass):
            if handler.intent_type == intent_type:
                return handler.platforms
        return None

    @staticmethod
    def _within(found: Grounding, domains: set[str]) -> Grounding:
        """Keep a match only when what it picks is something the tool acts on."""
        if isinstance(found, NotFound):
            return found
        inside = tuple(e for e in found.entities if e.domain in domains)
        if not inside:
            return NotFound("")
        if isinstance(found, Fit):
            return found
        if len(inside) == 1:
            return Fit({"name": inside[0].name}, inside)
        return Ambiguous(inside)

    @staticmethod
    def _names_one_of(call: llm.ToolInput, found: Ambiguous) -> bool:
        """Return True when the call names one of the candidates exactly."""
        name = call.tool_args.get("name")
        return isinstance(name, str) and any(
            name.casefold() == n.casefold() for e in found.entities for n in e.names
        )

    def _referred(self) -> Fit | Ambiguous | None:
        """Return the target "it" or "the other one" points back to."""
        earlier = earlier_targets(self.chat_log)
        if not earlier and (before := earlier_utterance(self.chat_log)):
            # "Is the back door locked?" then "lock it": what was asked about.
            everything = self.everything
            asked = match(said_words(before, everything), everything, None)
            earlier = (
                [e.entity_id for e in asked.entities] if isinstance(asked, Fit) else []
            )
        if not earlier:
            return None
        if self.utterance.wants_other:
            others = others_like(self.hass, earlier)
            if len(others) == 1:
                return Fit({"name": others[0].name}, (others[0],))
            return Ambiguous(tuple(others)) if others else None
        entities = [e for e in self.everything if e.entity_id in earlier]
        if len(entities) == 1:
            return Fit({"name": entities[0].name}, (entities[0],))
        return None

    async def _async_question(self, calls: list[llm.ToolInput]) -> Guarded:
        """Answer a question from the states; never run an action for it."""
        # Only what the user named: states the model picked would answer another
        # question than the one asked.
        found = self.said()
        if found is not None:
            text = await async_state_answer(self.hass, found.entities, self.language)
            if text:
                return Guarded(say=text)
        guarded = Guarded()
        for call in calls:
            if self.is_action(call):
                LOGGER.debug("Not running %s for a question", call.tool_name)
                guarded.calls.append(
                    llm.ToolInput(
                        call.tool_name, call.tool_args, id=call.id, external=True
                    )
                )
                guarded.refusals.append(
                    _refusal(call, "Not done: the user asked a question. Answer it.")
                )
            else:
                guarded.calls.append(call)
        return guarded

    async def async_which_one(self, found: Ambiguous) -> Guarded:
        """Ask which one was meant, naming them."""
        *first, last = found.names
        err = AgentError("llm_which_one", names=", ".join(first), last=last)
        return Guarded(say=await async_agent_text(self.hass, err, self.language))

    def retry_of(self, call: llm.ToolInput) -> Grounding:
        """Ground a call whose target was not found (its area, or the satellite's)."""
        found = ground(self.hass, call.tool_args, self.utterance)
        if not isinstance(found, Ambiguous):
            return found
        area = call.tool_args.get("area")
        in_call = found.in_area(area) if isinstance(area, str) else None
        return in_call or found.in_area(self.area) or found


def retry_input(call: llm.ToolInput, fit: Fit) -> llm.ToolInput:
    """Return the call again with the grounded target."""
    return llm.ToolInput(
        call.tool_name, with_target(call.tool_args, fit.target), id=ulid_util.ulid_now()
    )
