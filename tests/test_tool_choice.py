"""A wrong tool or no readable call from the model, on the benchmark's real home.

A small model sometimes picks a tool by a word it saw (the thermostat's tool for
"dim the lights to 30 percent") or writes no call that can be read. A real server
cannot be made to do that on demand, so the loopback fake serves those calls;
everything else is real: Home Assistant's Assist API and intents, and the home of
benchmarks/home.py, whose devices change state when an intent calls them. Each test
checks that the right device changed and nothing else did (the benchmark's judges).
"""

from __future__ import annotations

import json
from pathlib import Path
import sys
from typing import Any

import pytest

from custom_components.local_voice.const import CONF_TEMPERATURE
from custom_components.local_voice.turn import NUDGE, ORDER_MAX_TOKENS
from custom_components.local_voice.vocabulary import related, similar

from .common import llama_entry, setup_entry
from .conversation_support import (
    FakeLlama,
    answer_events,
    converse,
    replay,
    speech,
    tool_call_events,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from home import TIMER_SATELLITE, Home
from home_utterances import Judge, Outcome, added, attribute, becomes, timer_started

from .test_small_models import PARSER_IN_STREAM


async def _say(
    home: Home,
    fake: list[FakeLlama],
    text: str,
    *answers: list[bytes],
    satellite: str | None = None,
) -> tuple[Outcome, FakeLlama]:
    """Say `text` to local_voice on a fake serving `answers`; return what it did."""
    server = await FakeLlama(home.hass, [replay(a) for a in answers]).start()
    fake.append(server)
    await setup_entry(home.hass, llama_entry(server.url, {CONF_TEMPERATURE: 0.0}))
    before, timers = await home.snapshot(), len(home.timers)
    device_id = home.satellites[satellite] if satellite else None
    result = await converse(home.hass, text, device_id=device_id)
    await home.hass.async_block_till_done()
    outcome = Outcome(
        before, await home.snapshot(), speech(result), timers=home.timers[timers:]
    )
    return outcome, server


def _call(tool: str, **args: Any) -> list[bytes]:
    return tool_call_events(json.dumps(args), tool)


def _judged(judge: Judge, outcome: Outcome) -> None:
    assert judge(outcome) is None, (judge(outcome), outcome.answer)


async def test_a_tool_that_cannot_act_on_the_lights_becomes_the_one_that_can(
    home: Home, fake: list[FakeLlama]
) -> None:
    """The thermostat's tool for "dim ... 30 percent" becomes the light tool, at 30."""
    call = _call(
        "climate__HassClimateSetTemperature", area="Living Room", temperature=30
    )
    outcome, server = await _say(
        home, fake, "Dim the living room lights to 30 percent", call
    )
    at_30 = attribute("on", "brightness", 74, 80)  # 30 % of 255
    lights = {"light.floor_lamp": at_30, "light.living_room_ceiling": at_30}
    _judged(becomes(lights), outcome)
    assert len(server.requests) == 1  # a done action ends the turn


@pytest.mark.parametrize("said", ["30 percent", "30%"])
async def test_turn_on_for_a_brightness_becomes_the_light_tool(
    home: Home, fake: list[FakeLlama], said: str
) -> None:
    """Turn-on for "dim ... to 30%" (whisper writes the sign): the light tool, at 30."""
    call = _call("intent__HassTurnOn", area="Living Room", domain=["light"])
    outcome, _ = await _say(home, fake, f"Dim the living room lights to {said}", call)
    at_30 = attribute("on", "brightness", 74, 80)  # 30 % of 255
    lights = {"light.floor_lamp": at_30, "light.living_room_ceiling": at_30}
    _judged(becomes(lights), outcome)


async def test_a_timer_tool_for_a_device_becomes_the_device_tool(
    home: Home, fake: list[FakeLlama]
) -> None:
    outcome, _ = await _say(home, fake, "Pause the TV", _call("intent__HassPauseTimer"))
    _judged(becomes({"media_player.tv": "paused"}), outcome)


async def test_a_list_item_goes_on_the_list_with_the_words_left_over(
    home: Home, fake: list[FakeLlama]
) -> None:
    """Turn-on cannot act on a list: the list's add tool takes the item said."""
    outcome, _ = await _say(
        home, fake, "Put eggs on my shopping list", _call("intent__HassTurnOn")
    )
    _judged(added("eggs"), outcome)


async def test_a_thermostat_is_found_by_its_room(
    home: Home, fake: list[FakeLlama]
) -> None:
    """A sensor is "the bedroom temperature"; the thermostat tool takes the room's."""
    call = _call(
        "climate__HassClimateSetTemperature",
        name="Bedroom temperature",
        temperature=20,
    )
    outcome, _ = await _say(home, fake, "Set the bedroom temperature to 20", call)
    heater = attribute("heat", "temperature", 19.9, 20.1)
    _judged(becomes({"climate.bedroom_heater": heater}), outcome)


async def test_a_timer_is_started_from_the_words_when_no_call_can_be_read(
    home: Home, fake: list[FakeLlama]
) -> None:
    """Twice no readable call: llama-server's parser fails, then the raw text."""
    outcome, server = await _say(
        home,
        fake,
        "Set a timer for 5 minutes",
        PARSER_IN_STREAM,
        answer_events("{{timer"),
        satellite=TIMER_SATELLITE,
    )
    _judged(timer_started(300), outcome)
    assert outcome.answer == "Done."  # no device to name, and no intent's name
    assert server.requests[-1]["tool_choice"] == "none"


async def test_a_switch_request_on_a_tool_that_cannot_switch_it_switches_it(
    home: Home, fake: list[FakeLlama]
) -> None:
    """The thermostat's tool for "lock the back door": the lock is locked."""
    call = _call(
        "climate__HassClimateSetTemperature",
        name="lock",
        area="Back door",
        temperature=30,
    )
    outcome, _ = await _say(home, fake, "Lock the back door", call)
    _judged(becomes({"lock.back_door": "locked"}), outcome)


async def test_turn_on_for_words_that_switch_nothing_gives_way(
    home: Home, fake: list[FakeLlama]
) -> None:
    """Turn-on for "set the TV volume to 50 percent": the volume tool, at 50."""
    outcome, _ = await _say(
        home,
        fake,
        "Set the TV volume to 50 percent",
        _call("intent__HassTurnOn", name="TV"),
    )
    half = attribute("playing", "volume_level", 0.49, 0.51)
    _judged(becomes({"media_player.tv": half}), outcome)


async def test_a_timer_is_a_timer_not_a_delayed_command(
    home: Home, fake: list[FakeLlama]
) -> None:
    """A made-up command to run at its end would make a silent delayed command."""
    call = _call(
        "intent__HassStartTimer", seconds=30, conversation_command="start timer"
    )
    outcome, _ = await _say(
        home, fake, "Start a 30 second timer", call, satellite=TIMER_SATELLITE
    )
    _judged(timer_started(30), outcome)


async def test_no_other_tool_is_chosen_without_a_word_for_it(
    home: Home, fake: list[FakeLlama]
) -> None:
    """No word of "make it nice" fits a light's tool: the light is left alone."""
    call = _call("climate__HassClimateSetTemperature", temperature=21)
    outcome, _ = await _say(
        home, fake, "Make the kitchen ceiling light nice", call, answer_events("OK.")
    )
    light = "light.kitchen_ceiling"
    assert outcome.after[light] == outcome.before[light]


def test_words_of_one_meaning_match_and_typos_choose_no_tool() -> None:
    """ "Outside" finds "Outdoor temperature"; a tool is chosen by words, not typos."""
    assert similar("outside", "outdoor")
    assert related("pauses", "pause")
    assert related("percent", "percentage")
    assert related("put", "add")
    assert similar("pause", "unpause")  # a typo's tolerance for device names...
    assert not related("pause", "unpause")  # ...but not for which tool to run


async def test_a_question_whose_answer_cannot_be_read_is_asked_in_words(
    home: Home, fake: list[FakeLlama]
) -> None:
    """The parser fails, then the raw text is no sentence: asked once, in words."""
    outcome, server = await _say(
        home,
        fake,
        "Tell me a joke",
        PARSER_IN_STREAM,
        answer_events("{{joke"),
        answer_events("Why did the lamp go to school? To get brighter."),
    )
    assert outcome.answer == "Why did the lamp go to school? To get brighter."
    last = server.requests[-1]
    assert last["tool_choice"] == "none"
    assert last["messages"][-1] == {"role": "user", "content": NUDGE}
    assert last["messages"][:-1] == server.requests[0]["messages"]  # same prefix
    assert outcome.after == outcome.before


async def test_all_of_a_kind_the_verb_names_and_no_other_room(
    home: Home, fake: list[FakeLlama]
) -> None:
    """ "Lock all the doors" on a call for a whole room: the locks, nothing else."""
    call = _call("intent__HassTurnOn", area="Living Room")
    outcome, _ = await _say(home, fake, "Lock all the doors", call)
    locked = {"lock.front_door": "locked", "lock.back_door": "locked"}
    _judged(becomes(locked), outcome)


async def test_a_command_the_model_only_talks_about_is_done_from_the_words(
    home: Home, fake: list[FakeLlama]
) -> None:
    """ "You need to specify an area" for the bedroom lights: they are turned on."""
    outcome, server = await _say(
        home,
        fake,
        "Turn on the bedroom lights",
        answer_events("You need to specify an area."),
    )
    lights = {"light.bedroom_light": "on", "light.bedside_lamp": "on"}
    _judged(becomes(lights), outcome)
    assert "specify" not in outcome.answer
    assert len(server.requests) == 1
    # A call or a sentence: the round may not ramble for a thousand tokens.
    assert server.requests[0]["max_tokens"] == ORDER_MAX_TOKENS


async def test_a_timer_the_model_only_promises_is_started(
    home: Home, fake: list[FakeLlama]
) -> None:
    """ "Timer set!" with no call: the timer is started from the words."""
    outcome, _ = await _say(
        home,
        fake,
        "Set a timer for 5 minutes",
        answer_events("Sure, your timer is set!"),
        satellite=TIMER_SATELLITE,
    )
    _judged(timer_started(300), outcome)


async def test_words_that_order_nothing_are_not_done_from_the_words(
    home: Home, fake: list[FakeLlama]
) -> None:
    """ "Don't turn on ..." answered in words: nothing is switched."""
    outcome, server = await _say(
        home,
        fake,
        "Don't turn on the bedroom lights",
        answer_events("OK, I will leave them off."),
    )
    assert outcome.after == outcome.before
    assert outcome.answer == "OK, I will leave them off."
    assert server.requests[0]["max_tokens"] > ORDER_MAX_TOKENS
