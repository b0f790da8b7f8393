"""Cache-stable prompts: what never changes first, what changes last.

llama-server keeps each slot's KV cache and, for the next request on that slot, only
evaluates the tokens after the longest common prefix. Home Assistant assembles one
system prompt per chat that mixes the static (instructions, the exposed devices, the
tool usage rules) with the volatile (which area the satellite is in, whether it can
start timers, the current time, an automation's extra prompt). With the tools rendered
*after* the system message by most chat templates, one changed sentence there makes
the server re-read the whole tool block for every new chat.

This module rebuilds the same pieces Home Assistant produces, in a different order:

* system message: the user's instructions (when they render the same for every request)
  and the lines of the LLM API prompt that do not depend on the request;
* tools: the union of what the API offers any device, serialized canonically (sorted
  keys and enums) and sorted by name, so satellites with and without timer support, and
  Home Assistant restarts (set ordering), all produce the same bytes;
* a `<context>` block with everything volatile, prepended to the newest user message.

Why the newest user message and not a late system message: many chat templates
(Gemma, Mistral, Llama 2) reject a system message that is not first, or roles that do
not alternate user/assistant; text inside the user turn works with every template, and
earlier turns are re-sent without their block so they stay byte-stable within a
conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
import hashlib
import re
from typing import Any

import jinja2
from jinja2 import meta as jinja2_meta
import probatio

from homeassistant.components import conversation
from homeassistant.components.intent import async_device_supports_timers
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, TemplateError
from homeassistant.helpers import device_registry as dr, llm, template
from homeassistant.helpers.json import json_dumps
from homeassistant.helpers.template.render_info import RenderInfo
from homeassistant.util import dt as dt_util

from .const import DOMAIN

# Home Assistant's own line gives the seconds. To the minute and the date first,
# the context a voice turn's warm-up reads while the user speaks is still the
# chat's when the words come (conversation.py).
_DATE_TIME = "Today's date is %Y-%m-%d. Current time is %H:%M."
# Home Assistant's instructions are English; a user who speaks another language
# hears that language. The line goes in the context block, so one agent's prefix
# is the same whatever language its pipelines speak.
_LANGUAGE = "Answer in the user's language (language code {language})."
# Template variables Home Assistant fills per request (see ChatLog's prompt rendering).
_REQUEST_VARIABLES = frozenset({"user_name", "llm_context"})
# Parses templates only (never renders), with the extensions Home Assistant enables.
_PARSER = jinja2.Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do"])

# Sentences Home Assistant's intent LLM platform writes per requesting device
# (homeassistant/components/intent/llm.py): they differ between satellites.
_DEVICE_LINES = (
    re.compile(r"^You are in area .+ should target this area\.$"),
    re.compile(
        r"^When a user asks to turn on all devices of a specific type, ask the user"
        r" to specify an area, unless there is only one device of that type\.$"
    ),
    re.compile(r"^This device is not able to start timers\.$"),
)


@dataclass(frozen=True, slots=True)
class PromptParts:
    """The static system prompt, the volatile context block and the tools."""

    system: str
    context: str
    tools: list[dict[str, Any]]

    @property
    def key(self) -> str:
        """Identify the static prefix (system message and tools) a slot can hold."""
        prefix = json_dumps([self.system, self.tools]).encode()
        return hashlib.sha256(prefix).hexdigest()[:16]

    @property
    def tool_names(self) -> set[str]:
        """Names of the tools offered."""
        return {tool["function"]["name"] for tool in self.tools}

    def tool_parameters(self, name: str) -> dict[str, Any] | None:
        """Return the JSON schema of a tool's parameters."""
        for tool in self.tools:
            if tool["function"]["name"] == name:
                parameters: dict[str, Any] = tool["function"].get("parameters") or {}
                return parameters
        return None


def canonical(value: Any, key: str | None = None) -> Any:
    """Return a JSON value with sorted keys, and sorted `enum`/`required` lists.

    Schemas built from Python sets list their enums in hash order, which changes from
    one Home Assistant start to the next; sorting makes the bytes reproducible.
    """
    if isinstance(value, dict):
        return {k: canonical(value[k], k) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        items = [canonical(item) for item in value]
        if key in ("enum", "required") and all(
            isinstance(item, (str, int, float, bool)) or item is None for item in items
        ):
            return sorted(items, key=lambda item: (str(type(item)), str(item)))
        return items
    return value


def format_tool(
    tool: llm.Tool, custom_serializer: Callable[[Any], Any] | None
) -> dict[str, Any]:
    """Return a tool as an OpenAI function tool, canonically serialized."""
    parameters = probatio.to_openapi(
        tool.parameters, custom_serializer=custom_serializer, openapi_version="3.1.0"
    )
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = canonical(parameters)
    return {"type": "function", "function": function}


def is_device_line(line: str) -> bool:
    """Return True for a sentence Home Assistant writes per requesting device."""
    return any(pattern.match(line.strip()) for pattern in _DEVICE_LINES)


def split_api_prompt(actual: str, reference: str) -> tuple[str, list[str]]:
    """Split an LLM API prompt into its static text and its volatile lines.

    A line is static when the device-less reference prompt has it too and it is not one
    of Home Assistant's per-device sentences; anything else moves to the context block.
    """
    reference_lines = set(reference.split("\n"))
    static: list[str] = []
    volatile: list[str] = []
    for line in actual.split("\n"):
        if line in reference_lines and not is_device_line(line):
            static.append(line)
        elif line.strip():
            volatile.append(line)
    return "\n".join(static), volatile


async def _async_user_name(
    hass: HomeAssistant, llm_context: llm.LLMContext
) -> str | None:
    """Return the requesting user's name, as Home Assistant does for the template."""
    if (
        llm_context.context
        and llm_context.context.user_id
        and (user := await hass.auth.async_get_user(llm_context.context.user_id))
    ):
        return user.name
    return None


def _render(hass: HomeAssistant, source: str, variables: dict[str, Any]) -> RenderInfo:
    return template.Template(source, hass).async_render_to_info(
        variables, parse_result=False
    )


@lru_cache(maxsize=16)
def _reads_request(source: str) -> bool:
    """Return True when a template reads the requesting user or device.

    Decided from the template's text, not from one rendering, so that every request
    and the slot warm-up (which has no user and no device) agree on it. Cached: the
    agent's template is the same on every chat.
    """
    try:
        names = jinja2_meta.find_undeclared_variables(_PARSER.parse(source))
    except jinja2.TemplateSyntaxError:
        return True
    return bool(names & _REQUEST_VARIABLES)


def render_instructions(
    hass: HomeAssistant,
    source: str,
    llm_context: llm.LLMContext,
    user_name: str | None,
) -> tuple[str, str]:
    """Render the user's prompt template; return (static part, volatile part).

    The template gets the variables Home Assistant gives it (`ha_name`, `user_name`,
    `llm_context`). When its output depends on the request — it reads the time, an
    entity's state, the user or the device — it goes to the context block whole;
    otherwise it is static and heads the system message.
    """
    actual = _render(
        hass,
        source,
        {
            "ha_name": hass.config.location_name,
            "user_name": user_name,
            "llm_context": llm_context,
        },
    )
    text = actual.result()
    if actual.is_static:
        return text, ""
    depends_on_state = actual.all_states or actual.entities or actual.domains
    if actual.has_time or depends_on_state or _reads_request(source):
        return "", text
    return text, ""


def _timer_device(hass: HomeAssistant) -> str | None:
    """Return a device that can start timers (the first by id), if there is one."""
    devices = sorted(device.id for device in dr.async_get(hass).devices)
    return next(
        (dev for dev in devices if async_device_supports_timers(hass, dev)), None
    )


async def _async_reference_instances(
    hass: HomeAssistant, api: llm.API, llm_context: llm.LLMContext
) -> tuple[llm.APIInstance, list[llm.APIInstance]]:
    """Return the device-less instance, and the instances whose tools make the union.

    Tools differ by device (timer intents only for devices that can run timers); the
    request offers the union of the device-less tools, a timer-capable device's tools
    and its own, so every request shows the same tool block. A tool this device cannot
    use is refused when called (Home Assistant answers the model "not found"), and the
    context block says so ("This device is not able to start timers").
    """
    neutral = await api.async_get_api_instance(replace(llm_context, device_id=None))
    instances = [neutral]
    if (device_id := _timer_device(hass)) and device_id != llm_context.device_id:
        instances.append(
            await api.async_get_api_instance(replace(llm_context, device_id=device_id))
        )
    return neutral, instances


def _union_tools(instances: Iterable[llm.APIInstance]) -> list[dict[str, Any]]:
    """Format the tools of several instances once each, sorted by name."""
    tools: dict[str, dict[str, Any]] = {}
    for instance in instances:
        for tool in instance.tools:
            if tool.name not in tools:
                tools[tool.name] = format_tool(tool, instance.custom_serializer)
    return [tools[name] for name in sorted(tools)]


def language_line(language: str | None) -> str:
    """Return the line asking for answers in `language`; none for English."""
    primary = (language or "").replace("_", "-").split("-")[0].lower()
    if not primary.isalpha() or primary == "en":
        return ""
    return _LANGUAGE.format(language=language)


async def async_build_prompt_parts(
    hass: HomeAssistant,
    api_instance: llm.APIInstance | None,
    extra_system_prompt: str | None,
    llm_context: llm.LLMContext,
    user_prompt: str | None,
) -> PromptParts:
    """Build the static system prompt, the context block and the tools for a chat.

    `api_instance` and `extra_system_prompt` are what the chat log holds after
    `chat_log.async_provide_llm_data` (Home Assistant's own assembly).
    """
    user_name = await _async_user_name(hass, llm_context)
    try:
        static_instructions, volatile_instructions = render_instructions(
            hass, user_prompt or llm.DEFAULT_INSTRUCTIONS_PROMPT, llm_context, user_name
        )
    except TemplateError as err:
        raise HomeAssistantError(f"Error rendering prompt: {err}") from err

    system = [static_instructions]
    context = [volatile_instructions] if volatile_instructions else []
    tools: list[dict[str, Any]] = []
    if api_instance is not None:
        neutral, instances = await _async_reference_instances(
            hass, api_instance.api, llm_context
        )
        static_api, volatile_api = split_api_prompt(
            api_instance.api_prompt, neutral.api_prompt
        )
        system.append(static_api)
        context.extend(volatile_api)
        tools = _union_tools([*instances, api_instance])

    if line := language_line(llm_context.language):
        context.append(line)
    own_tools = api_instance.tools if api_instance else []
    if not any(tool.name.endswith("GetDateTime") for tool in own_tools):
        context.append(dt_util.now().strftime(_DATE_TIME))
    if extra_system_prompt:
        context.append(extra_system_prompt.strip())

    return PromptParts(
        system="\n".join(system),
        context="\n".join(line for line in context if line),
        tools=tools,
    )


async def async_static_prompt_parts(
    hass: HomeAssistant, api_ids: str | list[str] | None, user_prompt: str | None
) -> PromptParts:
    """Build the parts every chat shares, without a chat: for warming the slots.

    The request is the one of a chat from no device and no user; its system message
    and tools are those of any chat (the context block is not used).
    """
    llm_context = llm.LLMContext(
        platform=DOMAIN,
        context=None,
        language=hass.config.language,
        assistant=conversation.DOMAIN,
        device_id=None,
    )
    api_instance = (
        await llm.async_get_api(hass, api_ids, llm_context) if api_ids else None
    )
    return await async_build_prompt_parts(
        hass, api_instance, None, llm_context, user_prompt
    )
