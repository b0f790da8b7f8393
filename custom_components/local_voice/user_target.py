"""What the user's words name in the home: a device, a kind in a room, "it".

The guards (turn_guards.py) compare the model's target with what the user said.
That is read here once a turn: the user's words matched against what is exposed
(grounding.py), a kind alone ("the lights") taken in the satellite's area, two fits
settled by that area, and what "it" or "the other one" points back to in the
conversation.
"""

from __future__ import annotations

from functools import cached_property

from homeassistant.components import conversation
from homeassistant.core import HomeAssistant

from .grounding import (
    Ambiguous,
    Exposed,
    Fit,
    Grounding,
    NotFound,
    exposed_entities,
    kind_named,
    known,
    match,
    others_like,
    said_words,
)
from .turn_history import earlier_targets, earlier_utterance
from .utterance import ACTION_VERBS, Utterance
from .vocabulary import domain_of


def kind_done(words: list[str]) -> dict[str, str] | None:
    """Return the kind a verb acts on when it names one ("lock all the doors")."""
    domains = {d for word in words if word in ACTION_VERBS and (d := domain_of(word))}
    return {"domain": domains.pop()} if len(domains) == 1 else None


class UserTarget:
    """What the newest message names, for one turn."""

    def __init__(
        self,
        hass: HomeAssistant,
        chat_log: conversation.ChatLog,
        utterance: Utterance,
        area: str | None,
    ) -> None:
        """Keep the turn's message and the satellite's area (None: the app)."""
        self.hass = hass
        self.chat_log = chat_log
        self.utterance = utterance
        self.area = area

    def said_known(self) -> Fit | None:
        """Return what the user's words name once words the home lacks are left out.

        "Put eggs on my shopping list": "eggs" names nothing, the list is named.
        Only for choosing a tool whose text argument then takes those words.
        """
        everything = self.everything
        found = [
            w for w in said_words(self.utterance, everything) if known(w, everything)
        ]
        fit = match(found, everything, None)
        return fit if isinstance(fit, Fit) else None

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
        found = self.said_match()
        return found if isinstance(found, Fit) else None

    def said_match(self) -> Grounding:
        """Match the user's words; the satellite's area settles two fits.

        Words that name only a kind ("the lights") mean that kind in the
        satellite's area, or everywhere ("all the lights", or from the app).
        """
        everything = self.everything
        words = said_words(self.utterance, everything)
        if self.utterance.wants_several and (
            kind := kind_named(words) or kind_done(self.utterance.words)
        ):
            if self.area and "all" not in words:
                kind["area"] = self.area
            return self._kind_fit(kind, everything)
        found = match(words, everything, None)
        if isinstance(found, Ambiguous):
            return found.in_area(self.area) or found
        return found

    def referred(self) -> Fit | Ambiguous | None:
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
