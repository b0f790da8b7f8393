"""The home_commands benchmark's home and judges, without a model.

Assist's intents are called directly on the benchmark's home: a judge must see the
real state change (template devices on their helpers, the thermostat, the shopping
list, the satellite's timer), and the "nothing else changed" part must fail when
another device changed too. An unexposed device must be out of Assist's reach.
"""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Any

import pytest

from homeassistant.helpers import intent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from home import BY_ID, ITEMS, TIMER_SATELLITE, Home
from home_utterances import (
    CONVERSATIONS,
    Outcome,
    added,
    answers,
    attribute,
    becomes,
    says,
    says_number,
    timer_started,
)


async def act(home: Home, name: str, slots: dict[str, Any], **kw: Any) -> None:
    await intent.async_handle(
        home.hass,
        "test",
        name,
        {key: {"value": value} for key, value in slots.items()},
        assistant="conversation",
        **kw,
    )
    await home.hass.async_block_till_done()


async def test_turn_on_by_name_is_seen(home: Home) -> None:
    before = await home.snapshot()
    await act(home, "HassTurnOn", {"name": "Kitchen ceiling"})
    outcome = Outcome(before, await home.snapshot())
    assert becomes({"light.kitchen_ceiling": "on"})(outcome) is None
    assert becomes({"light.kitchen_counter": "on"})(outcome) is not None
    # A device found as wanted, with nothing done: a follow-up after a failed turn.
    unchanged = Outcome(outcome.after, outcome.after)
    assert becomes({"light.kitchen_ceiling": "on"})(unchanged) == "nothing changed"


async def test_something_else_changed_fails(home: Home) -> None:
    before = await home.snapshot()
    await act(home, "HassTurnOn", {"name": "Kitchen ceiling"})
    await act(home, "HassTurnOn", {"name": "Coffee machine"})
    why = becomes({"light.kitchen_ceiling": "on"})(
        Outcome(before, await home.snapshot())
    )
    assert why == "also changed: switch.coffee_machine"


async def test_area_brightness_lock_and_thermostat(home: Home) -> None:
    before = await home.snapshot()
    await act(
        home,
        "HassLightSet",
        {"area": "Living Room", "domain": "light", "brightness": 30},
    )
    dimmed = attribute("on", "brightness", 70, 84)
    outcome = Outcome(before, await home.snapshot())
    assert (
        becomes({"light.floor_lamp": dimmed, "light.living_room_ceiling": dimmed})(
            outcome
        )
        is None
    )
    before = await home.snapshot()
    await act(home, "HassTurnOn", {"name": "Back door", "domain": "lock"})
    await act(
        home, "HassClimateSetTemperature", {"name": "Thermostat", "temperature": 22}
    )
    outcome = Outcome(before, await home.snapshot())
    warmer = attribute("heat", "temperature", 22, 22)
    judge = becomes({"lock.back_door": "locked", "climate.thermostat": warmer})
    assert judge(outcome) is None


async def test_media_player_pauses_and_sets_volume(home: Home) -> None:
    before = await home.snapshot()
    await act(home, "HassTurnOn", {"name": "TV"})  # on already: it keeps playing
    assert becomes({})(Outcome(before, await home.snapshot())) is None
    await act(home, "HassTurnOn", {"name": "Kids speaker"})  # off: it goes idle
    outcome = Outcome(before, await home.snapshot())
    assert becomes({"media_player.kids_speaker": "idle"})(outcome) is None
    await home.reset()
    await act(home, "HassMediaPause", {"name": "TV"})
    await act(home, "HassSetVolume", {"name": "TV", "volume_level": 50})
    outcome = Outcome(before, await home.snapshot())
    quiet = attribute("paused", "volume_level", 0.49, 0.51)
    assert becomes({"media_player.tv": quiet})(outcome) is None


async def test_timer_and_shopping_list(home: Home) -> None:
    before = await home.snapshot()
    satellite = home.satellites[TIMER_SATELLITE]
    await act(home, "HassStartTimer", {"minutes": 5}, device_id=satellite)
    outcome = Outcome(before, await home.snapshot(), timers=list(home.timers))
    assert timer_started(300)(outcome) is None
    assert timer_started(30)(outcome) is not None

    await act(home, "HassListAddItem", {"name": "Shopping list", "item": "milk"})
    outcome = Outcome(before, await home.snapshot())
    assert added("milk")(outcome) is None
    assert added("eggs")(outcome) is not None
    for _ in range(2):  # the same item twice more: the reset takes every one away
        await act(home, "HassListAddItem", {"name": "Shopping list", "item": "milk"})
    await home.reset()
    assert (await home.snapshot())[ITEMS] == before[ITEMS]


async def test_unexposed_device_is_out_of_reach(home: Home) -> None:
    assert not BY_ID["switch.server_rack"].exposed
    with pytest.raises(intent.MatchFailedError):
        await act(home, "HassTurnOff", {"name": "Server rack"})
    assert home.hass.states.get("switch.server_rack").state == "on"  # type: ignore[union-attr]


async def test_questions_and_reset(home: Home) -> None:
    shot = await home.snapshot()
    assert says_number(18.6)(Outcome(shot, shot, "It is 18.6 °C.")) is None
    assert says_number(18.6)(Outcome(shot, shot, "It is 21 degrees.")) is not None
    locked = says(["locked", "yes"], ("unlocked",))
    assert locked(Outcome(shot, shot, "Yes, the front door is locked.")) is None
    assert locked(Outcome(shot, shot, "The front door is unlocked.")) is not None
    assert answers()(Outcome(shot, shot, "Paris.", rounds=1)) is None
    assert answers()(Outcome(shot, shot, "Paris.", rounds=2)) is not None
    error = Outcome(shot, shot, "I could not understand that.", failed=True)
    assert answers()(error) is not None

    await act(home, "HassTurnOff", {"name": "Desk lamp"})
    assert says(["off"])(Outcome(shot, await home.snapshot(), "off")) is not None
    await home.reset()
    assert await home.snapshot() == shot


def test_enough_utterances() -> None:
    turns = [turn for chat in CONVERSATIONS for turn in chat.turns]
    assert len(turns) >= 40
    assert 30 <= len([d for d in BY_ID.values() if d.exposed]) <= 60
