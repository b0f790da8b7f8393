"""A question about what the user named, answered from its state.

A small model guesses states; the state machine knows them. Each state is said
the way Home Assistant words it in the UI (its translation), with a sensor's
unit, and a thermostat's temperature set and measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import translation

from .agent_text import AgentError, async_agent_text
from .grounding import Exposed

_STATES_SAID = 4


async def async_state_answer(
    hass: HomeAssistant, entities: Sequence[Exposed], language: str
) -> str:
    """Say the entities' states, each as Home Assistant words it in the UI."""
    domains = {entity.domain for entity in entities}
    words = await translation.async_get_translations(
        hass, language, "entity_component", domains
    )
    sentences: list[str] = []
    for entity in entities[:_STATES_SAID]:
        if (state := hass.states.get(entity.entity_id)) is None:
            continue
        key = f"component.{entity.domain}.entity_component._.state.{state.state}"
        text = words.get(key, state.state)
        text = text.lower() if key in words else text
        if unit := state.attributes.get("unit_of_measurement"):
            text = f"{text} {unit}"
        if entity.domain == "climate":
            text = _climate_text(text, state.attributes)
        said = AgentError("llm_state", name=entity.name, state=text)
        sentences.append(await async_agent_text(hass, said, language))
    return " ".join(sentences)


def _climate_text(mode: str, attributes: Mapping[str, Any]) -> str:
    """Word a thermostat's state: its mode, the temperature set, the one measured."""
    parts = [mode]
    if (target := attributes.get("temperature")) is not None:
        parts.append(f"set to {target}°")
    if (current := attributes.get("current_temperature")) is not None:
        parts.append(f"now {current}°")
    return ", ".join(parts)
