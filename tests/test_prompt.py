"""The cache-stable prompt: static system and tools, volatile context last."""

from __future__ import annotations

from datetime import datetime
import json

from freezegun.api import FrozenDateTimeFactory
import pytest

from custom_components.local_voice.const import DOMAIN
from custom_components.local_voice.messages import (
    CONTEXT_OPEN,
    build_messages,
    turns,
)
from custom_components.local_voice.prompt import (
    PromptParts,
    async_build_prompt_parts,
    async_static_prompt_parts,
    canonical,
    is_device_line,
    render_instructions,
    split_api_prompt,
)
from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import chat_session, llm
from homeassistant.util import dt as dt_util

from .conversation_support import Home, async_setup_home

AREA_KITCHEN = (
    "You are in area Kitchen (floor Ground floor) and all generic commands like"
    " 'turn on the lights' should target this area."
)
NO_TIMERS = "This device is not able to start timers."


def _llm_context(
    device_id: str | None, context: Context | None = None, language: str = "en"
) -> llm.LLMContext:
    return llm.LLMContext(
        platform=DOMAIN,
        context=context or Context(),
        language=language,
        assistant=conversation.DOMAIN,
        device_id=device_id,
    )


async def _parts(
    hass: HomeAssistant,
    device_id: str | None,
    *,
    api: list[str] | None = None,
    prompt: str | None = None,
    extra: str | None = None,
    context: Context | None = None,
    language: str = "en",
) -> tuple[PromptParts, str]:
    """Build our parts and Home Assistant's own system prompt for one new chat."""
    llm_context = _llm_context(device_id, context, language)
    with (
        chat_session.async_get_chat_session(hass) as session,
        conversation.async_get_chat_log(hass, session) as chat_log,
    ):
        await chat_log.async_provide_llm_data(
            llm_context,
            [llm.LLM_API_ASSIST] if api is None else api,
            prompt,
            extra,
        )
        parts = await async_build_prompt_parts(
            hass, chat_log.llm_api, chat_log.extra_system_prompt, llm_context, prompt
        )
        return parts, chat_log.content[0].content or ""


def test_canonical_sorts_keys_enums_and_required() -> None:
    """Set-ordered enums and key order do not change the bytes; other lists do."""
    value = {
        "type": "object",
        "required": ["name", "area"],
        "properties": {
            "domain": {"type": "string", "enum": ["light", "cover", "fan"]},
            "area": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    assert json.dumps(canonical(value)) == json.dumps(
        {
            "properties": {
                "area": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "domain": {"enum": ["cover", "fan", "light"], "type": "string"},
            },
            "required": ["area", "name"],
            "type": "object",
        }
    )


def test_split_api_prompt() -> None:
    """Per-device sentences and lines the device-less prompt lacks are volatile."""
    reference = "Static line\nYAML: x\nWhen a user asks to turn on all devices of a"
    reference += " specific type, ask the user to specify an area, unless there is only"
    reference += f" one device of that type.\n{NO_TIMERS}"
    actual = f"Static line\nYAML: x\n{AREA_KITCHEN}\nSomething only for this device"
    static, volatile = split_api_prompt(actual, reference)
    assert static == "Static line\nYAML: x"
    assert volatile == [AREA_KITCHEN, "Something only for this device"]
    static, volatile = split_api_prompt(reference, reference)
    assert static == "Static line\nYAML: x"
    assert len(volatile) == 2
    assert all(is_device_line(line) for line in volatile)


async def test_render_instructions_static_or_volatile(hass: HomeAssistant) -> None:
    """A template that reads time, state, user or device goes to the context block."""
    hass.states.async_set("sensor.mood", "happy")
    ctx = _llm_context("device-1")
    static = "You are the assistant of {{ ha_name }}. Be brief."
    assert render_instructions(hass, static, ctx, "Alice") == (
        f"You are the assistant of {hass.config.location_name}. Be brief.",
        "",
    )
    for volatile in (
        "Talk to {{ user_name }}.",
        "It is {{ now().hour }} o'clock.",
        "The mood is {{ states('sensor.mood') }}.",
        "Device {{ llm_context.device_id }}.",
    ):
        static_part, volatile_part = render_instructions(hass, volatile, ctx, "Alice")
        assert static_part == ""
        assert volatile_part
    assert render_instructions(hass, "Plain text.", ctx, None) == ("Plain text.", "")
    # Decided by the template, not by one request: a chat without a user (and the
    # slot warm-up) must not make the user's name part of the shared prefix.
    assert render_instructions(hass, "Talk to {{ user_name }}.", ctx, None) == (
        "",
        "Talk to None.",
    )


async def test_satellites_share_system_and_tools(hass: HomeAssistant) -> None:
    """Different satellites (with and without timers, areas, floors): same prefix.

    Home Assistant's own system prompt differs between them, which is what makes the
    baseline re-read the tool block.
    """
    home: Home = await async_setup_home(hass, timer_areas=("kitchen",))
    kitchen, ha_kitchen = await _parts(hass, home.satellites["kitchen"])
    bedroom, ha_bedroom = await _parts(hass, home.satellites["bedroom"])
    no_device, ha_no_device = await _parts(hass, None)
    # What the slot warm-up sends, built without any chat.
    warm_up = await async_static_prompt_parts(hass, [llm.LLM_API_ASSIST], None)
    assert warm_up.key == kitchen.key == bedroom.key == no_device.key

    assert ha_kitchen != ha_bedroom != ha_no_device
    assert kitchen.system == bedroom.system == no_device.system == warm_up.system
    assert json.dumps(kitchen.tools) == json.dumps(warm_up.tools)
    assert json.dumps(kitchen.tools) == json.dumps(bedroom.tools)
    assert json.dumps(kitchen.tools) == json.dumps(no_device.tools)
    names = [tool["function"]["name"] for tool in kitchen.tools]
    assert names == sorted(names)
    assert "intent__HassStartTimer" in names  # offered to every device: same bytes
    assert "homeassistant__GetLiveContext" in names

    assert AREA_KITCHEN in kitchen.context
    assert NO_TIMERS not in kitchen.context
    assert "You are in area Bedroom and" in bedroom.context
    assert NO_TIMERS in bedroom.context
    assert "specify an area" in no_device.context
    for parts in (kitchen, bedroom, no_device):
        assert "You are in area" not in parts.system
        assert NO_TIMERS not in parts.system
        # The static parts Home Assistant writes are all there.
        assert "Static Context: An overview of the areas" in parts.system
        assert "When controlling Home Assistant always call the intent tools" in (
            parts.system
        )


async def test_the_language_is_asked_for_after_the_prefix(hass: HomeAssistant) -> None:
    """A Japanese or German chat asks for its language in the context block only.

    One agent's prefix is the same in every language, so pipelines in different
    languages share its cached prefix; English (the instructions' own) adds nothing.
    """
    home: Home = await async_setup_home(hass)
    device = home.satellites["kitchen"]
    english, _ = await _parts(hass, device)
    for language in ("ja", "de-CH", "en-GB", "*"):
        parts, _ = await _parts(hass, device, language=language)
        assert (parts.key, parts.system) == (english.key, english.system)
        line = f"Answer in the user's language (language code {language})."
        assert (line in parts.context) == (language in ("ja", "de-CH")), language
        others = [other for other in parts.context.split("\n") if other != line]
        assert others == english.context.split("\n")


async def test_time_user_and_extra_prompt_are_volatile(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory
) -> None:
    """Without a GetDateTime tool the time is in the context; so are the rest."""
    user = await hass.auth.async_create_user("Alice")
    freezer.move_to(datetime(2026, 1, 2, 8, 15, tzinfo=dt_util.UTC))
    morning, ha_morning = await _parts(
        hass,
        None,
        api=[],
        prompt="You help {{ user_name }}.",
        extra="The user just came home.",
        context=Context(user_id=user.id),
    )
    freezer.move_to(datetime(2026, 1, 2, 21, 40, tzinfo=dt_util.UTC))
    evening, ha_evening = await _parts(hass, None, api=[], prompt="Be brief.")
    assert ha_morning != ha_evening
    assert morning.tools == evening.tools == []
    assert "Current time is" in morning.context
    assert "Current time is" not in morning.system
    assert morning.context.split("\n")[0] == "You help Alice."
    assert morning.context.endswith("The user just came home.")
    # The date, then the time to the minute: a warm-up a few seconds earlier matches.
    assert morning.context.split("\n")[1] == (
        "Today's date is 2026-01-02. Current time is 00:15."  # local time
    )
    assert evening.system == "Be brief."
    assert morning.context != evening.context


def _turn_log() -> list[conversation.Content]:
    return [
        conversation.SystemContent("HA's own system prompt (not sent)"),
        conversation.UserContent("turn on the kitchen light"),
        conversation.AssistantContent(
            agent_id="conversation.x",
            thinking_content="The user wants the light on.",
            tool_calls=[
                llm.ToolInput(
                    "intent__HassTurnOn", {"name": "Kitchen light"}, id="call-1"
                )
            ],
        ),
        conversation.ToolResultContent(
            agent_id="conversation.x",
            tool_call_id="call-1",
            tool_name="intent__HassTurnOn",
            result=llm.ToolResult({"success": True}),
        ),
        conversation.AssistantContent(agent_id="conversation.x", content="Done."),
        conversation.UserContent("and the bedroom?"),
    ]


@pytest.mark.parametrize("send_reasoning", [False, True])
def test_build_messages(send_reasoning: bool) -> None:
    """Context only on the newest user message; tool calls and results in order."""
    history = turns(_turn_log())
    assert len(history) == 2
    messages = build_messages(
        "STATIC", "You are in area Bedroom.", history, send_reasoning=send_reasoning
    )
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[0] == {"role": "system", "content": "STATIC"}
    assert messages[1]["content"] == "turn on the kitchen light"
    assert messages[2]["tool_calls"][0]["function"] == {
        "name": "intent__HassTurnOn",
        "arguments": '{"name":"Kitchen light"}',
    }
    assert ("reasoning_content" in messages[2]) is send_reasoning
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "call-1",
        "content": '{"success":true}',
    }
    assert messages[5]["content"] == (
        f"{CONTEXT_OPEN}\nYou are in area Bedroom.\n</context>\nand the bedroom?"
    )
    # The turn before is re-sent exactly as in the request that had it newest...
    # ...minus its context block, so it is the same in every later request.
    first = build_messages("STATIC", "ctx", history[:1])
    assert first[1]["content"].endswith("turn on the kitchen light")
    assert first[1]["content"].startswith(CONTEXT_OPEN)


def test_attachments_go_with_the_newest_user_message() -> None:
    """Image parts are added to the newest user message only."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    messages = build_messages("S", "", turns(_turn_log()), attachments=[image])
    assert messages[1]["content"] == "turn on the kitchen light"
    assert messages[-1]["content"] == [
        {"type": "text", "text": "and the bedroom?"},
        image,
    ]
