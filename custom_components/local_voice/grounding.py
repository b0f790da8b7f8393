"""One grounding step: what the user or the model named, found among exposed entities.

A small model names a target the way a person shortens or guesses it: "counter
light" for "Kitchen counter", an area the device is not in, a domain that holds
nothing. Home Assistant's intents match names exactly, so such a call fails.
Instead of one repair per guess, the words (of the user's message, then of the
call's target arguments) are matched against what is exposed to Assist: each
entity's names and aliases, its area and floor, its domain. Every word must be
explained by one entity and at least one by its name; a misspelt or plural word
still matches (difflib's ratio), and text without spaces is read as the home's
words in it. One clear fit gives the call's new target; several equal fits are a
question back; none is said plainly. Only exposed entities are ever candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import (
    async_should_expose,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
    intent,
)

from .utterance import ACTION_VERBS, Utterance, words
from .vocabulary import DEVICE_CLASSES, FILLERS, domain_of, segment, similar, stem

# Arguments of Assist's intents that pick the target, not what to do with it.
TARGET_ARGUMENTS = frozenset(("name", "area", "floor", "domain", "device_class"))


@dataclass(frozen=True, slots=True)
class Exposed:
    """An entity exposed to Assist, with every word a person may use for it."""

    entity_id: str
    name: str
    names: tuple[str, ...]
    area: str | None
    places: tuple[str, ...]
    domain: str

    @property
    def name_words(self) -> set[str]:
        """Words of its names and aliases."""
        return {word for name in self.names for word in words(name)}

    @property
    def place_words(self) -> set[str]:
        """Words of its area's and floor's names and aliases."""
        return {word for place in self.places for word in words(place)}


def exposed_entities(hass: HomeAssistant) -> list[Exposed]:
    """Return the entities exposed to Assist, with their names, area and floor."""
    entities, devices = er.async_get(hass), dr.async_get(hass)
    areas, floors = ar.async_get(hass), fr.async_get(hass)
    found: list[Exposed] = []
    for state in hass.states.async_all():
        if not async_should_expose(hass, conversation.DOMAIN, state.entity_id):
            continue
        entry = entities.async_get(state.entity_id)
        names = tuple(intent.async_get_entity_aliases(hass, entry, state=state))
        area_id = entry.area_id if entry else None
        if area_id is None and entry and entry.device_id:
            device = devices.async_get(entry.device_id)
            area_id = device.area_id if device else None
        area = areas.async_get_area(area_id) if area_id else None
        places: list[str] = []
        if area:
            places += [area.name, *sorted(area.aliases)]
            if area.floor_id and (floor := floors.async_get_floor(area.floor_id)):
                places += [floor.name, *sorted(floor.aliases)]
        found.append(
            Exposed(
                state.entity_id,
                state.name,
                names or (state.name,),
                area.name if area else None,
                tuple(places),
                state.domain,
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Fit:
    """One clear target: the call's new target arguments and what they pick."""

    target: dict[str, Any]
    entities: tuple[Exposed, ...]


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """Several equally good targets: the user is asked which one."""

    entities: tuple[Exposed, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """What the user is asked to choose from."""
        return labels(self.entities)

    def in_area(self, area: str | None) -> Fit | None:
        """Return the one candidate in the satellite's area, if only one is there."""
        inside = [
            entity
            for entity in self.entities
            if area and entity.area and entity.area.casefold() == area.casefold()
        ]
        if len(inside) != 1 or inside[0].area is None:
            return None
        return Fit({"name": inside[0].name, "area": inside[0].area}, (inside[0],))


@dataclass(frozen=True, slots=True)
class NotFound:
    """Nothing exposed fits the words."""

    words: str


type Grounding = Fit | Ambiguous | NotFound


def _distinctive(found: Iterable[str]) -> list[str]:
    """Words that may name a device: no fillers, verbs or numbers."""
    return [
        word
        for word in dict.fromkeys(found)
        if word not in FILLERS and word not in ACTION_VERBS and not word.isdigit()
    ]


def _score(query: list[str], entity: Exposed) -> tuple[int, int] | None:
    """Rank an entity for the words; None unless it explains every one of them."""
    names, places = entity.name_words, entity.place_words
    by_name = [w for w in query if any(similar(w, n) for n in names)]
    for word in query:
        if word in by_name or domain_of(word) == entity.domain:
            continue
        if not any(similar(word, place) for place in places):
            return None
    if not by_name:
        return None
    return len(query), len(by_name) - len(names)


def labels(entities: Iterable[Exposed]) -> tuple[str, ...]:
    """Name each entity apart, (the area where names repeat)."""
    found = list(entities)
    counts = {e.name.casefold(): 0 for e in found}
    for entity in found:
        counts[entity.name.casefold()] += 1
    return tuple(
        dict.fromkeys(
            f"{e.name} ({e.area})"
            if counts[e.name.casefold()] > 1 and e.area
            else e.name
            for e in found
        )
    )


def _fit_of(
    best: list[Exposed], query: list[str], everything: list[Exposed]
) -> Grounding:
    """Turn the best-ranked entities into a target, or a question back."""
    if len(best) == 1:
        entity = best[0]
        target: dict[str, Any] = {"name": entity.name}
        shared = [e for e in everything if e.name.casefold() == entity.name.casefold()]
        if len(shared) > 1 and entity.area:
            target["area"] = entity.area
        return Fit(target, (entity,))
    areas = {entity.area for entity in best}
    domains = {entity.domain for entity in best}
    area = next(iter(areas))
    if (
        len(areas) == 1
        and area is not None
        and len(domains) == 1
        and any(similar(word, place) for word in query for place in words(area))
    ):
        return Fit({"area": area, "domain": next(iter(domains))}, tuple(best))
    return Ambiguous(tuple(best))


def _named_exactly(query: list[str], everything: list[Exposed]) -> list[Exposed]:
    """Return the entities one of whose names is exactly the words (up to plurals)."""
    said = {stem(word) for word in query}
    return [
        entity
        for entity in everything
        if any({stem(word) for word in words(name)} == said for name in entity.names)
    ]


def _area_named(query: list[str], everything: list[Exposed]) -> Grounding | None:
    """Return an area (with a kind of device) when the words name nothing else."""
    domains = {d for word in query if (d := domain_of(word))}
    rest = [word for word in query if not domain_of(word)]
    if not rest or len(domains) > 1:
        return None
    for entity in everything:
        if entity.area and {stem(w) for w in words(entity.area)} == {
            stem(w) for w in rest
        }:
            inside = [
                e
                for e in everything
                if e.area == entity.area and (not domains or e.domain in domains)
            ]
            target: dict[str, Any] = {"area": entity.area}
            if domains:
                target["domain"] = next(iter(domains))
            return Fit(target, tuple(inside)) if inside else None
    return None


def kind_named(query: list[str]) -> dict[str, str] | None:
    """Return the target of words that name a kind of device alone ("the blinds")."""
    query = _distinctive(query)
    domains = {domain_of(word) for word in query}
    if not query or None in domains or len(domains) != 1:
        return None
    target = {"domain": str(domains.pop())}
    classes = {c for word in query if (c := DEVICE_CLASSES.get(stem(word)))}
    if len(classes) == 1:
        target["device_class"] = classes.pop()
    return target


def match(query: list[str], everything: list[Exposed], domain: str | None) -> Grounding:
    """Find what the words name among the exposed entities."""
    query = _distinctive(query)
    if not query:
        return NotFound("")
    area = _area_named(query, everything)
    plural = any(domain_of(word) and word != stem(word) for word in query)
    if isinstance(area, Fit) and plural and len(area.entities) > 1:
        return area  # "the bedroom lights": every light there, not "Bedroom light"
    if exact := _named_exactly(query, everything):
        return _fit_of(exact, query, everything)
    if area:
        return area
    scored = [(score, e) for e in everything if (score := _score(query, e))]
    if domain and any(e.domain == domain for _, e in scored):
        scored = [(score, e) for score, e in scored if e.domain == domain]
    if not scored:
        return NotFound(" ".join(query))
    top = max(score for score, _ in scored)
    return _fit_of([e for score, e in scored if score == top], query, everything)


def match_for(
    query: list[str],
    everything: list[Exposed],
    domains: set[str] | None,
    domain: str | None = None,
) -> Grounding:
    """Match among what a tool acts on; words that name nothing of it name a place.

    "Set the bedroom temperature to 20 degrees" names the bedroom's temperature
    sensor; for the thermostat's tool it means the thermostat in the bedroom.
    """
    if not domains:
        return match(query, everything, domain)
    candidates = [e for e in everything if e.domain in domains]
    found = match(query, candidates, domain)
    if not isinstance(found, NotFound):
        return found
    query = _distinctive(query)
    areas = {
        e.area
        for e in candidates
        if e.area and any(similar(w, p) for w in query for p in words(e.area))
    }
    if len(areas) != 1:
        return found
    area = areas.pop()
    return _fit_of([e for e in candidates if e.area == area], query, everything)


def known(word: str, everything: list[Exposed]) -> bool:
    """Return True when some exposed entity's name, place or kind has the word."""
    vocabulary = _vocabulary(everything)
    return domain_of(word) is not None or any(similar(word, w) for w in vocabulary)


def _call_words(args: Mapping[str, Any], everything: list[Exposed]) -> list[str]:
    """Words of a call's target: a place it guessed is left out, unless a name."""
    found: list[str] = []
    for key in ("name", "area", "floor"):
        value = args.get(key)
        if not isinstance(value, str):
            continue
        said = segment(words(value), lambda: _vocabulary(everything))
        if key != "name" and not any(
            any(similar(w, n) for n in e.name_words) for w in said for e in everything
        ):
            continue  # a real place only narrows; a guessed one names nothing
        found += said
    return found


def said_words(utterance: Utterance, everything: list[Exposed]) -> list[str]:
    """Return the user's words, less a place they named that the home lacks."""
    guessed = {w for w in utterance.place_words if not known(w, everything)}
    said = segment(utterance.words, lambda: _vocabulary(everything))
    return [word for word in said if word not in guessed]


def _vocabulary(everything: list[Exposed]) -> set[str]:
    """Every word of the exposed entities' names and places."""
    return {word for e in everything for word in e.name_words | e.place_words}


def same_place(args: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    """Return True when a call's area and kind are the target's (case aside)."""

    def folded(value: Any) -> str | None:
        return value.casefold() if isinstance(value, str) else None

    return folded(args.get("area")) == folded(target.get("area")) and folded(
        _call_domain(args)
    ) == folded(target.get("domain"))


def _call_domain(args: Mapping[str, Any]) -> str | None:
    domain = args.get("domain")
    if isinstance(domain, list) and len(domain) == 1:
        domain = domain[0]
    return domain if isinstance(domain, str) else None


def ground(
    hass: HomeAssistant,
    args: Mapping[str, Any],
    utterance: Utterance,
    domains: set[str] | None = None,
) -> Grounding:
    """Find the target the user meant: from their own words first, then the call's.

    The user's words are what they said; the call's are the model's reading of
    them. A clear fit of the user's words wins; otherwise the call's target words
    are grounded (and when both are unclear, the user is asked about theirs).
    Only what the tool acts on (`domains`, None: anything) is a candidate.
    """
    everything = exposed_entities(hass)
    domain = _call_domain(args)
    said = match_for(said_words(utterance, everything), everything, domains, domain)
    if isinstance(said, Fit):
        return said
    called = match_for(_call_words(args, everything), everything, domains, domain)
    if isinstance(called, Fit) or isinstance(said, NotFound):
        return called
    return said


def with_target(args: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """Return a call's arguments with its target replaced."""
    kept = {k: v for k, v in args.items() if k not in TARGET_ARGUMENTS}
    return {**kept, **target}


def others_like(hass: HomeAssistant, entity_ids: Iterable[str]) -> list[Exposed]:
    """Return exposed entities like the given ones (a shared name word, the domain).

    "The other one" after "turn on the kitchen ceiling light" is the other
    kitchen light, not the ceiling light again.
    """
    everything = exposed_entities(hass)
    last = [e for e in everything if e.entity_id in set(entity_ids)]
    rest = [e for e in everything if e not in last]
    named = [
        e
        for e in rest
        if any(e.domain == p.domain and e.name_words & p.name_words for p in last)
    ]
    near = [e for e in named if any(p.area and e.area == p.area for p in last)]
    if len(near) == 1:
        return near  # the other kitchen light, not the living room's ceiling
    return named or [
        e
        for e in rest
        if any(e.domain == p.domain and p.area and e.area == p.area for p in last)
    ]
