"""Subentry flow: add or change a conversation agent or an AI task entity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import probatio as vol

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntryState,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_LLM_HASS_API, CONF_NAME, CONF_PROMPT
from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TemplateSelector,
)

from .const import (
    CONF_MAX_HISTORY,
    CONF_MAX_TOKENS,
    CONF_MODEL,
    CONF_REASONING_EFFORT,
    CONF_SEND_REASONING,
    CONF_TEMPERATURE,
    CONF_TOP_P,
    DEFAULT_AI_TASK_NAME,
    DEFAULT_CONVERSATION_NAME,
    REASONING_EFFORTS,
    RECOMMENDED_AI_TASK_OPTIONS,
    RECOMMENDED_CONVERSATION_OPTIONS,
    SUBENTRY_CONVERSATION,
)

SLIDER: Final = NumberSelectorMode.SLIDER
BOX: Final = NumberSelectorMode.BOX


class LlamaSubentryFlow(ConfigSubentryFlow):
    """Add or change a conversation agent or an AI task entity."""

    async def async_step_user(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Add a subentry with the recommended options."""
        return await self.async_step_init(user_input)

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Change a subentry's options."""
        return await self.async_step_init(user_input)

    async def async_step_init(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Show the options; the tool list needs the loaded entry."""
        if self._get_entry().state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="entry_not_loaded")
        conversation = self._subentry_type == SUBENTRY_CONVERSATION
        reconfigure = self.source == SOURCE_RECONFIGURE
        if reconfigure:
            title = self._get_reconfigure_subentry().title
        else:
            title = DEFAULT_CONVERSATION_NAME if conversation else DEFAULT_AI_TASK_NAME
        if user_input is not None:
            title = user_input.pop(CONF_NAME, None) or title
            if not user_input.get(CONF_LLM_HASS_API):
                user_input.pop(CONF_LLM_HASS_API, None)
            if reconfigure:
                return self.async_update_and_abort(
                    self._get_entry(),
                    self._get_reconfigure_subentry(),
                    title=title,
                    data=user_input,
                )
            return self.async_create_entry(title=title, data=user_input)
        if reconfigure:
            current: Mapping[str, Any] = self._get_reconfigure_subentry().data
        elif conversation:
            current = RECOMMENDED_CONVERSATION_OPTIONS
        else:
            current = RECOMMENDED_AI_TASK_OPTIONS
        props = self._get_entry().runtime_data.coordinator.data
        current = {CONF_MODEL: props.model_for(current.get(CONF_MODEL)), **current}
        schema = _options_schema(self.hass, conversation, title, props.model_names)
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(schema, current),
        )


def _options_schema(
    hass: HomeAssistant, conversation: bool, title: str, models: list[str]
) -> vol.Schema:
    """Return the name, a router's model, the generation options, and more for agents.

    An agent also has its prompt, its API and its history length.
    """
    schema: dict[vol.Marker, Any] = {vol.Required(CONF_NAME, default=title): str}
    if models:
        schema[vol.Required(CONF_MODEL)] = SelectSelector(
            SelectSelectorConfig(options=models, mode=SelectSelectorMode.DROPDOWN)
        )
    if conversation:
        apis = [
            SelectOptionDict(label=api.name, value=api.id)
            for api in llm.async_get_apis(hass)
        ]
        schema[vol.Optional(CONF_PROMPT)] = TemplateSelector()
        schema[vol.Optional(CONF_LLM_HASS_API)] = SelectSelector(
            SelectSelectorConfig(options=apis, multiple=True)
        )
    schema.update(
        {
            vol.Required(CONF_TEMPERATURE): NumberSelector(
                NumberSelectorConfig(min=0, max=2, step=0.05, mode=SLIDER)
            ),
            vol.Required(CONF_TOP_P): NumberSelector(
                NumberSelectorConfig(min=0, max=1, step=0.05, mode=SLIDER)
            ),
            vol.Required(CONF_MAX_TOKENS): NumberSelector(
                NumberSelectorConfig(min=16, max=32768, step=1, mode=BOX)
            ),
            vol.Required(CONF_REASONING_EFFORT): SelectSelector(
                SelectSelectorConfig(
                    options=REASONING_EFFORTS,
                    translation_key=CONF_REASONING_EFFORT,
                    mode=SelectSelectorMode.DROPDOWN,
                )
            ),
        }
    )
    if conversation:
        schema[vol.Required(CONF_SEND_REASONING)] = BooleanSelector()
        schema[vol.Required(CONF_MAX_HISTORY)] = NumberSelector(
            NumberSelectorConfig(min=0, max=100, step=1, mode=BOX)
        )
    return vol.Schema(schema)
