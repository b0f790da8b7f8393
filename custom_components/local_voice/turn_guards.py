"""Guards around a small model's tool calls, grounded in the home.

Before the model (`async_before_model`): a question about what the user clearly
named is answered from its state; "and the other one" repeats the last action.
Before a round's calls run (`async_guard`): an action is never run for a question;
a timer gets the length said; a tool that cannot act on what the user named gets
the one that can (assist_tools.py); an on/off call goes the way the words say; a
call whose target differs from what the user clearly named (user_target.py) gets
the user's target; a reference back ("turn it off") gets the last turn's target.
After a round (turn.py), a call whose target was not found is grounded
(`retry_of`); an answer that could not be read is done from the words alone when
they make one call (`from_words`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeassistant.components import conversation
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    llm,
)
from homeassistant.util import ulid as ulid_util

from .agent_text import AgentError, async_agent_text
from .assist_tools import SWITCH_TOOLS, AssistTools
from .const import LOGGER
from .grounding import (
    Ambiguous,
    Exposed,
    Fit,
    Grounding,
    NotFound,
    ground,
    match_for,
    said_words,
    same_place,
    with_target,
)
from .state_answer import async_state_answer
from .turn_history import (
    earlier_action,
    utterance_of,
)
from .user_target import UserTarget
from .utterance import ACTION_VERBS, Utterance

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
        self.tools = AssistTools.of(hass, chat_log.llm_api)
        self.target = UserTarget(hass, chat_log, self.utterance, self.area)

    @property
    def everything(self) -> list[Exposed]:
        """The exposed entities, read once a turn (names and areas, not states)."""
        return self.target.everything

    def said(self) -> Fit | None:
        """Return what the user's words name clearly (in the satellite's area)."""
        return self.target.said()

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
        target = self.target.referred()
        if target is None:
            return None
        if isinstance(target, Ambiguous):
            return await self.async_which_one(target)
        tool = self._switch_tool(call.tool_name if call else None)
        if tool is None:
            return None
        args = with_target(call.tool_args if call else {}, target.target)
        return Guarded(calls=[llm.ToolInput(tool, args, id=ulid_util.ulid_now())])

    @property
    def orders_from_words(self) -> bool:
        """True when the words alone order one switch or timer (words only, cheap).

        A model that only talks about such an order ("you need to specify an
        area") has its answer held, and from_words does the order instead.
        """
        said = self.utterance
        return (
            self.active
            and said.is_command
            and said.is_single_request
            and (
                said.direction is not None
                or bool("timer" in said.words and said.duration)
            )
        )

    def from_words(self) -> Guarded | None:
        """Return the one call the user's words alone make, for a model that made none.

        A single request for a timer of a said length, or to switch a device the
        user clearly named, needs no model: when the model's answer could not be
        read, it is done from the words rather than failed.
        """
        utterance = self.utterance
        if not self.active or not utterance.is_single_request:
            return None
        tool: str | None
        args: dict[str, Any]
        if "timer" in utterance.words and (duration := utterance.duration):
            tool = self.tools.named("HassStartTimer")
            args = dict(duration)
        elif (direction := utterance.direction) and (said := self.said()):
            tool = self.tools.switch(direction)
            domains = {e.domain for e in said.entities}
            if tool and not self.tools.acts_on(tool, domains):
                tool = None
            args = dict(said.target)
        else:
            return None
        if tool is None:
            return None
        LOGGER.debug("No call from the model; %s(%s) from the words", tool, args)
        return Guarded(calls=[llm.ToolInput(tool, args, id=ulid_util.ulid_now())])

    def _switch_tool(self, earlier: str | None) -> str | None:
        """Return the tool a follow-up means: its on/off word, else the last one.

        "Switch that one off again" is a turn-off whatever was done before; with
        another verb ("dim it") the model decides.
        """
        if direction := self.utterance.direction:
            return self.tools.switch(direction)
        if earlier is None or set(self.utterance.words) & ACTION_VERBS:
            return None
        # Home Assistant's own intents (prefer local) log "HassTurnOn": this tool.
        return self.tools.named(earlier.rsplit("__", 1)[-1])

    def _timed(self, call: llm.ToolInput) -> llm.ToolInput:
        """Return a timer call with the length the user said, not the model's guess.

        A command to run when it ends is kept only when the user said one: a
        small model fills in "start timer", which makes a silent delayed command
        instead of a timer.
        """
        duration = self.utterance.duration
        if duration is None or not call.tool_name.endswith("HassStartTimer"):
            return call
        dropped = set(_DURATION_ARGUMENTS)
        if "timer" in self.utterance.words:
            dropped.add("conversation_command")
        kept = {k: v for k, v in call.tool_args.items() if k not in dropped}
        return llm.ToolInput(call.tool_name, {**kept, **duration}, id=call.id)

    def _switched(self, call: llm.ToolInput) -> llm.ToolInput:
        """Return an on/off call going the way the user's words say.

        A switch the model called the wrong way round is turned; another tool
        that cannot act on the device the user named (a timer tool for "close
        the blinds", the thermostat's for "lock the back door") becomes the
        switch, on that device.
        """
        direction = self.utterance.direction
        if direction is None or (tool := self.tools.switch(direction)) is None:
            return call
        args = call.tool_args
        if not call.tool_name.endswith(SWITCH_TOOLS):
            said = self.said()
            if (
                said is None
                or "timer" in self.utterance.words
                or self.tools.acts_on(
                    call.tool_name, {entity.domain for entity in said.entities}
                )
            ):
                return call
            args = dict(said.target)
        if tool == call.tool_name:
            return call
        LOGGER.debug("%s made %s: the user said %s", call.tool_name, tool, direction)
        return llm.ToolInput(tool, args, id=call.id)

    def _retooled(self, call: llm.ToolInput) -> llm.ToolInput:
        """Return the call on a tool that can act on what the user named.

        tool_choice.py says how the tool is chosen. A timer tool is left alone
        when the user speaks of a timer, and so is any call when no other tool
        clearly fits.
        """
        if "timer" in self.utterance.words or (
            call.tool_name in self.tools and not self.tools.is_action(call.tool_name)
        ):
            return call  # a look-up stays; a tool the model made up is replaced
        target = self.said() or self.target.said_known()
        if target is None:
            return call
        instead = self.tools.instead_of(
            call.tool_name,
            target,
            self.utterance,
            switching=bool(self.utterance.direction),
        )
        if instead is None:
            return call
        LOGGER.debug("%s made %s%s: it acts on %s", call.tool_name, *instead, target)
        return llm.ToolInput(*instead, id=call.id)

    def is_action(self, call: llm.ToolInput) -> bool:
        """Return True when the call changes something."""
        return self.tools.is_action(call.tool_name)

    async def async_guard(self, calls: list[llm.ToolInput]) -> Guarded:
        """Check a round's calls before they run."""
        if not calls or not self.active:
            return Guarded(calls=calls)
        if self.utterance.is_question:
            return await self._async_question(calls)
        guarded = Guarded()
        for call in map(self._switched, map(self._retooled, map(self._timed, calls))):
            if not self.is_action(call) or not self.tools.takes_target(call.tool_name):
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

    def _intended(self, call: llm.ToolInput) -> Fit | Ambiguous | None:
        """Return the target the user meant, when the call's differs from it."""
        found = self.target.said_match()
        if domains := self.tools.domains(call.tool_name):
            found = self._within(found, domains)
            if isinstance(found, NotFound):
                words = said_words(self.utterance, self.everything)
                found = match_for(words, self.everything, domains)
                if isinstance(found, Ambiguous):
                    found = found.in_area(self.area) or found
        said: Fit | Ambiguous | None = found if isinstance(found, Fit) else None
        if (
            isinstance(found, Ambiguous)
            and not self.utterance.wants_several
            and not self._names_one_of(call, found)
        ):
            return found  # "the lamp": which one, not whatever the model picked
        if said is None and self.utterance.refers_back:
            said = self.target.referred()
        if not isinstance(said, Fit):
            return said
        name = call.tool_args.get("name")
        if "name" not in said.target:  # the user named an area (and a kind)
            if not isinstance(name, str) and same_place(call.tool_args, said.target):
                return None  # so does the call: the intent matches it itself
            if not isinstance(name, str):
                return said  # another area, or no kind: not what the user said
            if self.utterance.wants_several:
                return said  # "the bedroom lights": all of them, not one
        names = {n.casefold() for e in said.entities for n in e.names}
        if isinstance(name, str) and name.casefold() in names:
            return None
        return said

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
        domains = self.tools.domains(call.tool_name)
        found = ground(self.hass, call.tool_args, self.utterance, domains)
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
