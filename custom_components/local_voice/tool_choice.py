"""The tool that does what the user asked, when the model's tool cannot.

A small model picks a tool by a word it saw: the thermostat's tool for "dim the
living room lights to 30 percent" (the 30), a timer tool for "pause the TV", turn-on
for "add milk to the shopping list". When the model's tool cannot act on what the
user named (turn_guards.py decides that), the tool that can is chosen here by the
user's own words against each tool's name, description and argument names, and its
value arguments come from the words: the number said for a number argument, the
words left over for a text one ("milk"). Nothing is chosen on a tie or without a
word in common: the model's call then runs as it was made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import re
from typing import Any

import probatio

from homeassistant.helpers import llm

from .grounding import TARGET_ARGUMENTS, Fit
from .utterance import ACTION_VERBS, Utterance, words
from .vocabulary import GLUE_WORDS, domain_of, related, stem

_CAMEL = re.compile(r"[A-Z][a-z]+")
# Which way a switch goes: turn_guards.py reads it; it chooses no other tool.
_DIRECTIONS = frozenset(("on", "off"))
# What a slot's validator raises for a value of the wrong kind: probatio's error, or
# the error of a converter given a number (the colour of a light).
_REFUSED = (probatio.Invalid, AttributeError, TypeError, ValueError)
# Arguments Assist fills in itself, never from the user's words.
_CONTEXT_ARGUMENTS = frozenset(("preferred_area_id", "preferred_floor_id"))


def tool_words(tool: llm.Tool) -> set[str]:
    """Return the words a tool is known by: its intent's, description's, arguments'."""
    name = tool.name.rsplit("__", 1)[-1]
    found = {word.casefold() for word in _CAMEL.findall(name)} - {"hass"}
    found |= set(words(tool.description or ""))
    for key in _keys(tool):
        found |= set(words(str(key).replace("_", " ")))
        found |= set(words(getattr(key, "description", None) or ""))
    return found - GLUE_WORDS


def _keys(tool: llm.Tool) -> list[Any]:
    schema = tool.parameters.schema
    return list(schema) if isinstance(schema, Mapping) else []


def asked_words(utterance: Utterance, target: Fit) -> list[str]:
    """Return the words that say what to do: not glue, numbers or the target's words."""
    named = {w for e in target.entities for w in e.name_words | e.place_words}
    return [
        word
        for word in dict.fromkeys(utterance.words)
        if word not in GLUE_WORDS
        and word not in _DIRECTIONS
        and not word.isdigit()
        and not domain_of(word)
        and not any(stem(word) == stem(n) for n in named)
    ]


def best_tool(asked: list[str], tools: Mapping[str, llm.Tool]) -> str | None:
    """Return the one tool sharing the most of the asked words (none on a tie)."""
    scores = {
        name: sum(any(related(w, t) for t in tool_words(tool)) for w in asked)
        for name, tool in tools.items()
    }
    top = max(scores.values(), default=0)
    best = [name for name, score in scores.items() if score == top]
    return best[0] if top > 0 and len(best) == 1 else None


def _accepts(tool: llm.Tool, target: Mapping[str, Any], key: str, value: Any) -> bool:
    """Return True when the argument takes the value as it is (no text for a number)."""
    try:
        checked = tool.parameters({**target, key: value})
    except _REFUSED:
        return False
    found = checked.get(key)
    if isinstance(value, str):
        return isinstance(found, str)
    # 50 may come back as 0.5 (a volume); Boolean(30) is no number.
    return isinstance(found, int | float) and not isinstance(found, bool)


def value_arguments(
    tool: llm.Tool, target: Fit, utterance: Utterance
) -> dict[str, Any] | None:
    """Return the new call's arguments: the target, then values from the words.

    A number argument takes the number said (the one whose name or description
    shares a word with the request, when several take it); a required text
    argument takes the words no tool and no device explains. None when a
    required argument is left without a value.
    """
    args: dict[str, Any] = dict(target.target)
    numbers = [int(word) for word in utterance.words if word.isdigit()]
    asked = asked_words(utterance, target)
    mine = tool_words(tool)
    leftover = [w for w in asked if w not in ACTION_VERBS and not _said_in(w, mine)]
    for key in _keys(tool):
        name = str(key)
        if name in TARGET_ARGUMENTS or name in _CONTEXT_ARGUMENTS:
            continue
        if numbers and _accepts(tool, args, name, numbers[0]):
            args[name] = numbers[0]
        elif leftover and _accepts(tool, args, name, " ".join(leftover)):
            args[name] = " ".join(leftover)
    numeric = [k for k, v in args.items() if k not in target.target and v in numbers]
    if len(numeric) > 1:  # "30" for brightness or colour temperature: the one asked
        for key in numeric:
            if not _said_in_any(asked, _key_words(tool, key)):
                del args[key]
    try:
        tool.parameters(args)
    except _REFUSED:
        return None
    return args


def _key_words(tool: llm.Tool, name: str) -> set[str]:
    key = next(k for k in _keys(tool) if str(k) == name)
    return set(words(name.replace("_", " "))) | set(
        words(getattr(key, "description", None) or "")
    )


def _said_in(word: str, known: Iterable[str]) -> bool:
    return any(related(word, other) for other in known)


def _said_in_any(asked: list[str], known: set[str]) -> bool:
    return any(_said_in(word, known) for word in asked)
