"""Commands in a messy home, on the real Qwen 0.5B server: judged by the states.

The home has what real ones have and the model gets wrong: a light in no area, two
lights that share a word, two lamps, a switch that is not exposed, a garage door to
ask about. Its entities are real template entities on input booleans, so an action
really changes a state, and each test checks that the right entity changed and
nothing else did. Every test builds the same home, so the prompt prefix is read
once per slot for the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from custom_components.local_voice.const import CONF_MAX_TOKENS, CONF_TEMPERATURE
from custom_components.local_voice.grounding import (
    Ambiguous,
    Exposed,
    Fit,
    NotFound,
    exposed_entities,
    match,
    said_words,
)
from custom_components.local_voice.utterance import Utterance, words
from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import (
    async_expose_entity,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar, entity_registry as er
from homeassistant.setup import async_setup_component

from .backends import Backend
from .common import llama_entry, setup_entry
from .conversation_support import RecordingProxy, converse, speech

# (object id, name, area, initially on)
LIGHTS = [
    ("kitchen_ceiling", "Kitchen ceiling", "Kitchen", False),
    ("kitchen_counter", "Kitchen counter", "Kitchen", False),
    ("desk_lamp", "Desk lamp", None, False),
    ("reading_lamp", "Reading lamp", "Bedroom", False),
]
SWITCHES = [("heater", "Heater", "Bedroom", False)]  # not exposed
GARAGE = ("garage_door", "Garage door", None, False)  # closed
OPTIONS = {CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 64}


def _template(domain: str, object_id: str, name: str) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "name": name,
        "unique_id": object_id,
        "state": f"{{{{ is_state('input_boolean.{object_id}', 'on') }}}}",
    }
    actions = (
        ("open_cover", "close_cover") if domain == "cover" else ("turn_on", "turn_off")
    )
    for action, service in zip(actions, ("turn_on", "turn_off"), strict=True):
        entity[action] = {
            "action": f"input_boolean.{service}",
            "target": {"entity_id": f"input_boolean.{object_id}"},
        }
    return entity


async def _setup_home(hass: HomeAssistant) -> None:
    """Real entities whose state changes when Assist's intents call them."""
    everything = [("light", *row) for row in LIGHTS]
    everything += [("switch", *row) for row in SWITCHES] + [("cover", *GARAGE)]
    for component in ("conversation", "intent", "llm", "homeassistant"):
        assert await async_setup_component(hass, component, {})
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {oid: {"initial": on} for _, oid, _, _, on in everything}},
    )
    templates: dict[str, list[dict[str, Any]]] = {}
    for domain, object_id, name, _, _ in everything:
        templates.setdefault(domain, []).append(_template(domain, object_id, name))
    config = {"template": [{domain: items} for domain, items in templates.items()]}
    assert await async_setup_component(hass, "template", config)
    await hass.async_block_till_done()
    areas, entities = ar.async_get(hass), er.async_get(hass)
    for state in hass.states.async_all("input_boolean"):
        async_expose_entity(hass, conversation.DOMAIN, state.entity_id, False)
    for domain, object_id, _, area, _ in everything:
        entity_id = f"{domain}.{object_id}"
        if area:
            found = areas.async_get_area_by_name(area) or areas.async_create(area)
            entities.async_update_entity(entity_id, area_id=found.id)
        async_expose_entity(hass, conversation.DOMAIN, entity_id, domain != "switch")


def _states(hass: HomeAssistant) -> dict[str, str]:
    return {
        state.entity_id: state.state
        for state in hass.states.async_all(("light", "switch", "cover"))
    }


def _changed(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in after.items() if before.get(k) != v}


def _chats(proxy: RecordingProxy) -> list[dict[str, Any]]:
    """The chat requests (the slot warm-ups ask for one token)."""
    return [r for r in proxy.requests if r["max_tokens"] != 1]


@pytest.fixture
async def proxy(
    hass: HomeAssistant, llama_tools_server: Backend
) -> AsyncIterator[RecordingProxy]:
    """The home, and the agent on the real Qwen server behind a recording proxy."""
    await _setup_home(hass)
    recording = await RecordingProxy(llama_tools_server.url).start()
    await setup_entry(hass, llama_entry(recording.url, OPTIONS))
    await hass.async_block_till_done()
    yield recording
    await recording.stop()


@pytest.mark.parametrize(
    ("said", "changed"),
    [
        pytest.param(
            "Turn on the counter light",
            {"light.kitchen_counter": "on"},
            id="shortened-name",
        ),
        pytest.param(
            "Turn on the desk lamp in the office",
            {"light.desk_lamp": "on"},
            id="guessed-area",
        ),
    ],
)
async def test_command_reaches_the_exposed_target(
    hass: HomeAssistant, proxy: RecordingProxy, said: str, changed: dict[str, str]
) -> None:
    """The right entity changes, nothing else; a done action ends the turn."""
    before = _states(hass)
    result = await converse(hass, said)
    assert _changed(before, _states(hass)) == changed, speech(result)
    assert speech(result).startswith("Done: ")
    assert len(_chats(proxy)) == 1  # the single-round ending


async def test_unexposed_entity_is_never_acted_on(
    hass: HomeAssistant, proxy: RecordingProxy
) -> None:
    """The heater is not exposed: nothing changes, one short sentence says so."""
    before = _states(hass)
    result = await converse(hass, "Turn on the heater")
    assert _changed(before, _states(hass)) == {}
    said = speech(result)
    assert said and len(said) < 80, said
    assert "does not match" not in said


async def test_two_fits_are_asked_about(
    hass: HomeAssistant, proxy: RecordingProxy
) -> None:
    """Two lamps: the user is asked which one, and nothing changes."""
    before = _states(hass)
    result = await converse(hass, "Turn on the lamp")
    assert _changed(before, _states(hass)) == {}
    said = speech(result)
    assert "Desk lamp" in said and "Reading lamp" in said and said.endswith("?")
    assert result.continue_conversation


async def test_state_question_is_answered_not_acted_on(
    hass: HomeAssistant, proxy: RecordingProxy
) -> None:
    """A question gets the true state; no device is switched."""
    before = _states(hass)
    result = await converse(hass, "Is the garage door open?")
    assert _changed(before, _states(hass)) == {}
    assert "closed" in speech(result).lower(), speech(result)


async def test_follow_ups_keep_their_target(
    hass: HomeAssistant, proxy: RecordingProxy
) -> None:
    """ "The other one" and "that one" point back within the conversation."""
    before = _states(hass)
    first = await converse(hass, "Turn on the kitchen ceiling light")
    assert _changed(before, _states(hass)) == {"light.kitchen_ceiling": "on"}
    other = await converse(
        hass, "And the other one", conversation_id=first.conversation_id
    )
    assert _changed(before, _states(hass)) == {
        "light.kitchen_ceiling": "on",
        "light.kitchen_counter": "on",
    }, speech(other)
    await converse(
        hass, "Switch that one off again", conversation_id=first.conversation_id
    )
    assert _changed(before, _states(hass)) == {"light.kitchen_ceiling": "on"}


async def test_two_requests_get_a_second_round(
    hass: HomeAssistant, proxy: RecordingProxy
) -> None:
    """With something else asked alongside, the action does not end the turn."""
    await converse(hass, "Turn on the desk lamp and then say hello")
    assert hass.states.get("light.desk_lamp").state == "on"
    assert len(_chats(proxy)) >= 2


async def test_words_are_matched_to_the_home(hass: HomeAssistant) -> None:
    """The matching itself: exact names, areas, short names, two fits, none."""
    await _setup_home(hass)
    home = exposed_entities(hass)
    assert "switch.heater" not in {e.entity_id for e in home}

    def found(text: str) -> Any:
        return match(words(text), home, None)

    assert found("kitchen counter") == Fit(
        {"name": "Kitchen counter"}, found("kitchen counter").entities
    )
    assert found("the kitchen lights").target == {"area": "Kitchen", "domain": "light"}
    assert found("counter").target == {"name": "Kitchen counter"}
    assert found("kitchen countr light").target == {"name": "Kitchen counter"}
    assert found("lamp").names == ("Desk lamp", "Reading lamp")
    assert found("lamp").in_area("Bedroom").target == {
        "name": "Reading lamp",
        "area": "Bedroom",
    }
    assert found("heater") == NotFound("heater")
    assert isinstance(found("lamp please"), Ambiguous)
    assert Utterance("Is the garage door open?").is_question
    assert not Utterance("Can you turn on the lamp?").is_question
    assert not Utterance("Turn on the lamp and tell me a joke").is_single_request
    bedroom = [
        Exposed(
            "light.a",
            "Bedroom light",
            ("Bedroom light",),
            "Bedroom",
            ("Bedroom",),
            "light",
        ),
        Exposed(
            "light.b",
            "Bedside lamp",
            ("Bedside lamp",),
            "Bedroom",
            ("Bedroom",),
            "light",
        ),
    ]
    assert match(["bedroom", "lights"], bedroom, None).target == {
        "area": "Bedroom",
        "domain": "light",
    }
    assert match(["bedroom", "light"], bedroom, None).target == {
        "name": "Bedroom light"
    }
    assert Utterance("Set a timer for 5 minutes").duration == {"minutes": 5}
    assert Utterance("Start a 30 second timer").duration == {"seconds": 30}
    assert Utterance("Turn on the lamp").duration is None
    assert Utterance("Switch that one off again").refers_back
    assert Utterance("Turn off all the lights").wants_several
    assert Utterance("Lock the back door").direction == "on"  # as HassTurnOn takes it
    assert Utterance("Close the blinds").direction == "off"
    assert Utterance("Turn the fan on and the light off").direction is None
    assert Utterance("Turn on the TV").direction == "on"
    assert Utterance("Switch off the kitchen light").direction == "off"
    assert Utterance("Turn the volume up on the TV").direction is None  # a place
    assert Utterance("Put eggs on my shopping list").direction is None
    assert not Utterance("Turn on the lamp").wants_several
    assert Utterance("Turn on the desk lamp in the office").place_words == {"office"}


def test_japanese_words_are_read_as_the_homes_words() -> None:
    """Text without spaces names the home's devices inside it, kana either way.

    Whisper wrote "きちん" (hiragana, one kana short) for the area "キッチン".
    """
    home = [
        Exposed("light.k", "ライト", ("ライト",), "キッチン", ("キッチン",), "light"),
        Exposed("fan.l", "扇風機", ("扇風機",), "リビング", ("リビング",), "fan"),
        Exposed("light.h", "Hall light", ("Hall light",), None, (), "light"),
    ]
    for said in ("キッチンのライトをオンにして", "きちんのらいとをオンにして"):
        heard = said_words(Utterance(said), home)
        assert heard == ["キッチン", "ライト"], said
        assert match(heard, home, None).target == {"name": "ライト"}
    assert said_words(Utterance("リビングの扇風機を消して"), home) == [
        "リビング",
        "扇風機",
    ]
    assert said_words(Utterance("Hall lightを消して"), home)[:2] == ["hall", "light"]
    assert match(said_words(Utterance("テレビをつけて"), home), home, None) == NotFound(
        ""
    )
