"""What people say to the home of home.py, and how each turn is judged.

A conversation is one or more turns from one source (a satellite's area, or None:
the app). Each turn has a category and a judge. A judge reads the `Outcome` of the
turn (the home's snapshot before and after it, the answer, the timers started, the
tool rounds) and returns None when the turn was done, else why not. Commands are
judged from the state machine: the expected devices reached their expected states
and nothing else in the home changed. Questions are judged from the answer holding
the true state, and must change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import re
from typing import Any

from home import ITEMS, Snapshot

from homeassistant.components.intent import TimerEventType, TimerInfo


@dataclass
class Outcome:
    """What one turn did."""

    before: Snapshot
    after: Snapshot
    answer: str = ""
    rounds: int = 0
    timers: list[tuple[TimerEventType, TimerInfo]] = field(default_factory=list)
    error: str | None = None
    failed: bool = False  # the agent answered with an error response


Judge = Callable[[Outcome], str | None]
# An expectation for one device: its state, or a test of its (state, attributes).
Expected = str | Callable[[str, dict[str, Any]], bool]


def changed(before: Snapshot, after: Snapshot, allowed: set[str]) -> list[str]:
    """The devices (and list items) that changed, except those allowed to."""
    return [key for key in after if key not in allowed and after[key] != before[key]]


def nothing_else(outcome: Outcome, allowed: set[str]) -> str | None:
    """None when nothing but `allowed` changed, else what did."""
    if others := changed(outcome.before, outcome.after, allowed):
        return "also changed: " + ", ".join(sorted(others))
    return None


def becomes(expected: dict[str, Expected]) -> Judge:
    """The devices reach these states (or pass these tests); nothing else changes.

    At least one of them must change: a follow-up after a turn that did nothing
    ("switch that one off again") finds its device as it wants it already.
    """

    def judge(outcome: Outcome) -> str | None:
        for entity_id, want in expected.items():
            state, attributes = outcome.after[entity_id]
            ok = state == want if isinstance(want, str) else want(state, attributes)
            if not ok:
                return f"{entity_id} is {state}"
        if expected and not any(
            outcome.before[e] != outcome.after[e] for e in expected
        ):
            return "nothing changed"
        return nothing_else(outcome, set(expected))

    return judge


def attribute(state: str, name: str, low: float, high: float) -> Expected:
    """A device in `state` whose numeric attribute `name` is within [low, high]."""

    def test(actual: str, attributes: dict[str, Any]) -> bool:
        value = attributes.get(name)
        return actual == state and value is not None and low <= float(value) <= high

    return test


def _words(text: str) -> str:
    # A full stop ends a word ("closed."); a decimal point stays ("18.6").
    return " " + re.sub(r"[^a-z0-9.]+|\.(?!\d)", " ", text.lower()) + " "


def says(any_of: list[str], none_of: tuple[str, ...] = ()) -> Judge:
    """A question: the answer holds one of the words, none of the others; no change."""

    def judge(outcome: Outcome) -> str | None:
        text = _words(outcome.answer)
        if not any(f" {word} " in text for word in any_of):
            return "answer lacks " + "/".join(any_of)
        if wrong := [word for word in none_of if f" {word} " in text]:
            return "answer says " + "/".join(wrong)
        return nothing_else(outcome, set())

    return judge


def says_number(value: float, tolerance: float = 0.5) -> Judge:
    """A question: the answer holds a number within `tolerance` of value; no change."""

    def judge(outcome: Outcome) -> str | None:
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", outcome.answer)]
        if not any(abs(n - value) <= tolerance for n in numbers):
            return f"answer lacks {value:g}"
        return nothing_else(outcome, set())

    return judge


def answers(max_rounds: int = 2) -> Judge:
    """An open question: an answer, not an error, within max_rounds; no change."""

    def judge(outcome: Outcome) -> str | None:
        if outcome.failed:
            return f"an error: {outcome.answer!r}"
        if not re.search(r"[A-Za-z]{2}", outcome.answer):
            return "no answer"
        if outcome.rounds + 1 > max_rounds:
            return f"{outcome.rounds} tool rounds"
        return nothing_else(outcome, set())

    return judge


def timer_started(seconds: int) -> Judge:
    """A timer of this length started on the satellite; nothing changed."""

    def judge(outcome: Outcome) -> str | None:
        started = [
            info for kind, info in outcome.timers if kind == TimerEventType.STARTED
        ]
        if not any(info.seconds == seconds for info in started):
            return f"no {seconds} s timer ({[i.seconds for i in started]})"
        return nothing_else(outcome, set())

    return judge


def added(item: str) -> Judge:
    """The shopping list gained the item (and nothing else changed)."""

    def judge(outcome: Outcome) -> str | None:
        old = outcome.before[ITEMS][1]["items"]
        new = outcome.after[ITEMS][1]["items"]
        gained = [i for i in new if i not in old]
        if not any(item in i.lower() for i in gained):
            return f"list is {new}"
        return nothing_else(outcome, {ITEMS, "todo.shopping_list"})

    return judge


@dataclass(frozen=True)
class Turn:
    """One thing said, its category and its judge."""

    text: str
    category: str
    judge: Judge


@dataclass(frozen=True)
class Conversation:
    """Turns said one after the other in one conversation, from one source."""

    turns: tuple[Turn, ...]
    source: str | None = None  # a satellite's area key; None: the app


def one(
    text: str, category: str, judge: Judge, source: str | None = None
) -> Conversation:
    """A conversation of one turn."""
    return Conversation((Turn(text, category, judge),), source)


OFF_LIGHTS = {
    "light.floor_lamp": "off",
    "light.hallway_light": "off",
    "light.desk_lamp": "off",
}
CATEGORIES = (
    "name",
    "short name",
    "area",
    "area and domain",
    "all of a kind",
    "no area",
    "question",
    "follow-up",
    "timer",
    "todo",
    "open question",
)

CONVERSATIONS: list[Conversation] = [
    # By the full name.
    one(
        "Turn on the kitchen counter", "name", becomes({"light.kitchen_counter": "on"})
    ),
    one("Turn off the desk lamp", "name", becomes({"light.desk_lamp": "off"})),
    one(
        "Switch on the coffee machine", "name", becomes({"switch.coffee_machine": "on"})
    ),
    one("Turn on the bedroom fan", "name", becomes({"fan.bedroom_fan": "on"})),
    one(
        "Close the living room blinds",
        "name",
        becomes({"cover.living_room_blinds": "closed"}),
    ),
    one("Lock the back door", "name", becomes({"lock.back_door": "locked"})),
    one(
        "Set the thermostat to 22 degrees",
        "name",
        becomes({"climate.thermostat": attribute("heat", "temperature", 22, 22)}),
    ),
    one("Pause the TV", "name", becomes({"media_player.tv": "paused"})),
    one(
        "Set the TV volume to 50 percent",
        "name",
        becomes({"media_player.tv": attribute("playing", "volume_level", 0.49, 0.51)}),
    ),
    # By a shortened name.
    one(
        "Turn on the counter light",
        "short name",
        becomes({"light.kitchen_counter": "on"}),
    ),
    one(
        "Switch off the extractor", "short name", becomes({"fan.extractor_fan": "off"})
    ),
    one("Turn on the mirror", "short name", becomes({"light.mirror_light": "on"})),
    one(
        "Turn on the blanket", "short name", becomes({"switch.electric_blanket": "on"})
    ),
    one("Open the garage", "short name", becomes({"cover.garage_door": "open"})),
    one("Turn on the tree", "short name", becomes({"switch.christmas_tree": "on"})),
    # By area: named, or the satellite's own.
    one(
        "Turn off the lights in the living room",
        "area",
        becomes({"light.floor_lamp": "off", "light.living_room_ceiling": "off"}),
    ),
    one(
        "Turn on the bedroom lights",
        "area",
        becomes({"light.bedroom_light": "on", "light.bedside_lamp": "on"}),
    ),
    one(
        "Turn off everything in the office",
        "area",
        becomes({"light.desk_lamp": "off", "switch.monitor": "off"}),
    ),
    one(
        "Turn on the lights",
        "area",
        becomes({"light.kitchen_ceiling": "on", "light.kitchen_counter": "on"}),
        source="kitchen",
    ),
    one(
        "Close the blinds",
        "area",
        becomes({"cover.bedroom_blinds": "closed"}),
        source="bedroom",
    ),
    # By area and domain.
    one(
        "Turn on the fan in the living room",
        "area and domain",
        becomes({"fan.ceiling_fan": "on"}),
    ),
    one(
        "Turn off the light in the hallway",
        "area and domain",
        becomes({"light.hallway_light": "off"}),
    ),
    one(
        "Dim the living room lights to 30 percent",
        "area and domain",
        becomes(
            {
                "light.floor_lamp": attribute("on", "brightness", 70, 84),
                "light.living_room_ceiling": attribute("on", "brightness", 70, 84),
            }
        ),
    ),
    one(
        "Set the bedroom temperature to 20 degrees",
        "area and domain",
        becomes({"climate.bedroom_heater": attribute("heat", "temperature", 20, 20)}),
    ),
    # All of a kind.
    one("Turn off all the lights", "all of a kind", becomes(OFF_LIGHTS)),
    one(
        "Close all the blinds",
        "all of a kind",
        becomes(
            {"cover.living_room_blinds": "closed", "cover.bedroom_blinds": "closed"}
        ),
    ),
    one("Lock all the doors", "all of a kind", becomes({"lock.back_door": "locked"})),
    one(
        "Turn off all the fans", "all of a kind", becomes({"fan.extractor_fan": "off"})
    ),
    # Devices in no area, by name.
    one("Turn on the porch light", "no area", becomes({"light.porch_light": "on"})),
    one("Unlock the front door", "no area", becomes({"lock.front_door": "unlocked"})),
    one("Turn on the garden pump", "no area", becomes({"switch.garden_pump": "on"})),
    one(
        "Turn on vacation mode",
        "no area",
        becomes({"input_boolean.vacation_mode": "on"}),
    ),
    # State questions.
    one("Is the garage door open?", "question", says(["closed", "not open", "no"])),
    one("What's the temperature in the bedroom?", "question", says_number(18.6)),
    one(
        "Is the front door locked?",
        "question",
        says(["locked", "yes"], ("unlocked", "not locked")),
    ),
    one(
        "Is the kitchen ceiling light on?",
        "question",
        says(["off", "not on", "no"], ("is on",)),
    ),
    one("What's the temperature outside?", "question", says_number(7.5)),
    one("How humid is the bathroom?", "question", says_number(68, 1)),
    one(
        "Is the TV playing?",
        "question",
        says(["playing", "yes"], ("paused", "not playing")),
    ),
    one("What is the thermostat set to?", "question", says_number(21)),
    # Follow-ups in the same conversation.
    Conversation(
        (
            Turn(
                "Turn on the kitchen ceiling light",
                "name",
                becomes({"light.kitchen_ceiling": "on"}),
            ),
            Turn(
                "And the other one",
                "follow-up",
                becomes({"light.kitchen_counter": "on"}),
            ),
        ),
        source="kitchen",
    ),
    Conversation(
        (
            Turn(
                "Turn on the bedside lamp",
                "name",
                becomes({"light.bedside_lamp": "on"}),
            ),
            Turn(
                "Switch that one off again",
                "follow-up",
                becomes({"light.bedside_lamp": "off"}),
            ),
        )
    ),
    Conversation(
        (
            Turn(
                "Open the garage door", "name", becomes({"cover.garage_door": "open"})
            ),
            Turn("Now close it", "follow-up", becomes({"cover.garage_door": "closed"})),
        )
    ),
    Conversation(
        (
            Turn(
                "Is the back door locked?",
                "question",
                says(["unlocked", "not locked", "no"], ("is locked",)),
            ),
            Turn("Lock it", "follow-up", becomes({"lock.back_door": "locked"})),
        )
    ),
    # Timers, on the satellite that can run them.
    one("Set a timer for 5 minutes", "timer", timer_started(300), source="kitchen"),
    one("Start a 30 second timer", "timer", timer_started(30), source="kitchen"),
    # The shopping list.
    one("Add milk to the shopping list", "todo", added("milk")),
    one("Put eggs on my shopping list", "todo", added("eggs"), source="kitchen"),
    # Questions no tool answers.
    one("What's the capital of France?", "open question", answers()),
    one("Tell me a joke", "open question", answers(), source="living_room"),
]
