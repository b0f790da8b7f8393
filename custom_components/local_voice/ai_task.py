"""AI task entity on llama-server: text and structured data, images as input."""

from __future__ import annotations

from json import JSONDecodeError
from typing import override

from homeassistant.components import ai_task, conversation
from homeassistant.components.ai_task.const import DEFAULT_SYSTEM_PROMPT
from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import llm
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util.json import json_loads

from .agent_text import error_details
from .const import DOMAIN, LOGGER, SUBENTRY_AI_TASK
from .coordinator import LlamaConfigEntry, LlamaServerData
from .llama_server.errors import LlamaServerError
from .llm_entity import LocalVoiceLLMEntity

PARALLEL_UPDATES = 0

# An AI task may use tools for longer than a voice turn would.
AI_TASK_MAX_ITERATIONS = 30


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LlamaConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add one AI task entity per AI task subentry."""
    for subentry in entry.subentries.values():
        if subentry.subentry_type != SUBENTRY_AI_TASK:
            continue
        async_add_entities(
            [LocalVoiceAITaskEntity(entry.runtime_data, subentry)],
            config_subentry_id=subentry.subentry_id,
        )


class LocalVoiceAITaskEntity(ai_task.AITaskEntity, LocalVoiceLLMEntity):
    """Generates data (free text, or JSON following the task's structure)."""

    def __init__(self, data: LlamaServerData, subentry: ConfigSubentry) -> None:
        """Accept image attachments when the server has a vision projector."""
        super().__init__(data, subentry)
        self._attr_supported_features = ai_task.AITaskEntityFeature.GENERATE_DATA
        if self.model_props.supports_vision or self.model_props.router:
            self._attr_supported_features |= (
                ai_task.AITaskEntityFeature.SUPPORT_ATTACHMENTS
            )

    @override
    async def _async_generate_data(
        self,
        task: ai_task.GenDataTask,
        chat_log: conversation.ChatLog,
    ) -> ai_task.GenDataTaskResult:
        """Run the task; a failure is raised for the caller (a script or automation)."""
        llm_context = (
            chat_log.llm_api.llm_context
            if chat_log.llm_api
            else llm.LLMContext(
                platform=DOMAIN,
                context=None,
                language=None,
                assistant=ai_task.DOMAIN,
                device_id=None,
            )
        )
        error = await self._async_handle_chat_log(
            chat_log,
            llm_context,
            DEFAULT_SYSTEM_PROMPT,
            structure_name=task.name,
            structure=task.structure,
            max_iterations=AI_TASK_MAX_ITERATIONS,
        )
        if error is not None:
            text = await self.async_error_text(error)
            if isinstance(error, LlamaServerError):
                # A script is told the server's own words; only speech is kept short.
                text = f"{text}: {error_details(error)['details']}"
            raise HomeAssistantError(text) from error

        last = chat_log.content[-1]
        if not isinstance(last, conversation.AssistantContent) or not last.content:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="llm_no_answer",
                translation_placeholders={"reason": "none"},
            )
        if not task.structure:
            return ai_task.GenDataTaskResult(
                conversation_id=chat_log.conversation_id, data=last.content
            )
        try:
            data = json_loads(last.content)
        except JSONDecodeError as err:
            LOGGER.warning("AI task answer is not JSON: %r", last.content[:500])
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="ai_task_invalid_json",
                translation_placeholders={"error": str(err)},
            ) from err
        return ai_task.GenDataTaskResult(
            conversation_id=chat_log.conversation_id, data=data
        )
