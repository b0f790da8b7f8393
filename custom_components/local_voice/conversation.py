"""Conversation agent on llama-server: streamed, tools, a cache-stable prompt."""

from __future__ import annotations

import asyncio
import time
from typing import Literal, override

from homeassistant.components import conversation
from homeassistant.components.conversation.models import AbstractConversationAgent
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT, MATCH_ALL
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import intent, llm
from homeassistant.helpers.chat_session import CONVERSATION_TIMEOUT
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.start import async_at_started

from .agent_text import error_details
from .const import DOMAIN, LOGGER, SUBENTRY_CONVERSATION
from .coordinator import LlamaConfigEntry, LlamaServerData
from .llm_entity import LocalVoiceLLMEntity
from .prefix_watch import async_watch_prefix
from .prompt import async_build_prompt_parts
from .request import turn_warm_up_request
from .voice_turn_start import async_track_voice_turns

# Requests are limited by the server's slots, not by Home Assistant.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LlamaConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add one conversation entity per conversation subentry."""
    for subentry in entry.subentries.values():
        if subentry.subentry_type != SUBENTRY_CONVERSATION:
            continue
        async_add_entities(
            [LocalVoiceConversationEntity(entry.runtime_data, subentry)],
            config_subentry_id=subentry.subentry_id,
        )


class LocalVoiceConversationEntity(
    conversation.ConversationEntity,
    AbstractConversationAgent,
    LocalVoiceLLMEntity,
):
    """A conversation agent answering through llama-server's chat completions.

    It always streams (Assist starts text-to-speech on the first sentence). When a
    request fails it answers with what went wrong instead of raising: the pipeline
    speaks it and Home Assistant carries on.
    """

    _attr_supports_streaming = True
    _turn_warm: asyncio.Task[None] | None = None

    def __init__(self, data: LlamaServerData, subentry: ConfigSubentry) -> None:
        """Offer device control when an LLM API is selected."""
        super().__init__(data, subentry)
        #: Per satellite: when its last chat ended, and that chat (not for the app:
        #: each of its dialogs is a new conversation, and they share no device).
        self._recent: dict[str, tuple[float, list[conversation.Content]]] = {}
        if subentry.data.get(CONF_LLM_HASS_API):
            self._attr_supported_features = (
                conversation.ConversationEntityFeature.CONTROL
            )

    @property
    @override
    def supported_languages(self) -> list[str] | Literal["*"]:
        """The model decides which languages it speaks."""
        return MATCH_ALL

    @override
    async def async_added_to_hass(self) -> None:
        """Register as an agent; warm the slots once Home Assistant has started.

        Every chat shares this agent's prefix, so the slot manager may warm it (again
        when the server is back, when the prefix changes, or after a chat found its
        slot cold). Waiting for the start lets every integration register its LLM
        tools, so the warmed prefix is the one chats send.
        """
        await super().async_added_to_hass()
        conversation.async_set_agent(self.hass, self.coordinator.config_entry, self)
        self.async_on_remove(
            self.slots.add_prefix_source(
                self.subentry.subentry_id, self._async_static_prefix
            )
        )
        self.async_on_remove(async_at_started(self.hass, self._async_started))
        self.async_on_remove(
            async_watch_prefix(self.hass, self.slots, self._async_static_prefix)
        )
        self.async_on_remove(
            async_track_voice_turns(
                self.hass, lambda: self.entity_id, self._voice_turn_starts
            )
        )

    @callback
    def _async_started(self, _hass: HomeAssistant) -> None:
        self.slots.warm(self.subentry.subentry_id)

    @callback
    def _voice_turn_starts(self, device_id: str | None, language: str) -> None:
        """Read the coming turn's context into its slot while the user speaks."""
        if self._turn_warm is None or self._turn_warm.done():
            self._turn_warm = (
                self.coordinator.config_entry.async_create_background_task(
                    self.hass,
                    self._async_warm_turn(device_id, language),
                    f"{DOMAIN} turn warm-up",
                )
            )

    async def _async_warm_turn(self, device_id: str | None, language: str) -> None:
        """Send a new chat's prompt from this device, up to where its words go.

        The same bytes as the chat that follows (the context block says where it
        is said, the language it is answered in and the time to the minute), so only
        the words are left to read.
        Within Home Assistant's conversation timeout a satellite goes on with its
        last conversation: that chat is sent before the new words' place.
        """
        options = self.options
        llm_context = llm.LLMContext(
            platform=DOMAIN,
            context=None,
            language=language,
            assistant=conversation.DOMAIN,
            device_id=device_id,
        )
        try:
            api_ids = options.get(CONF_LLM_HASS_API)
            api = (
                await llm.async_get_api(self.hass, api_ids, llm_context)
                if api_ids
                else None
            )
            parts = await async_build_prompt_parts(
                self.hass, api, None, llm_context, options.get(CONF_PROMPT)
            )
        except HomeAssistantError as err:
            LOGGER.debug("%s: no turn warm-up: %s", self.entity_id, err)
            return
        slot = self.slots.slot_for(self.subentry.subentry_id, device_id)
        chat: list[conversation.Content] = []
        if (recent := self._recent.get(device_id or "")) is not None and (
            time.monotonic() - recent[0] < CONVERSATION_TIMEOUT.total_seconds()
        ):
            chat = recent[1]  # the satellite goes on with its conversation
        request = turn_warm_up_request(options, parts, slot, api, chat)
        await self.slots.async_warm_turn(self._prefix(parts), slot, request)

    @override
    async def async_will_remove_from_hass(self) -> None:
        """Unregister the agent."""
        conversation.async_unset_agent(self.hass, self.coordinator.config_entry)
        await super().async_will_remove_from_hass()

    @override
    async def _async_handle_message(
        self,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> conversation.ConversationResult:
        """Answer one user turn."""
        options = self.options
        llm_context = user_input.as_llm_context(DOMAIN)
        try:
            # Home Assistant's own assembly: sets the API, tools and extra prompt on
            # the chat log (and its trace); the request is then ordered for the cache.
            await chat_log.async_provide_llm_data(
                llm_context,
                options.get(CONF_LLM_HASS_API),
                options.get(CONF_PROMPT),
                user_input.extra_system_prompt,
            )
        except conversation.ConverseError as err:
            return err.as_conversation_result()

        error = await self._async_handle_chat_log(
            chat_log, llm_context, options.get(CONF_PROMPT), voice_turn=True
        )
        if error is not None:
            # Said in one short sentence; the whole text is kept in the trace.
            chat_log.async_trace(error_details(error))
            text = await self.async_error_text(error, user_input.language)
            await self.async_add_deltas(
                chat_log, {"role": "assistant", "content": text}
            )
        if user_input.device_id is not None:
            # The satellite's next turn may go on with this chat: its warm-up reads it.
            self._recent[user_input.device_id] = (time.monotonic(), [*chat_log.content])
        result = conversation.async_get_result_from_chat_log(user_input, chat_log)
        if error is not None:
            speech = result.response.speech.get("plain", {}).get("speech", "")
            response = intent.IntentResponse(language=user_input.language)
            response.async_set_error(intent.IntentResponseErrorCode.UNKNOWN, speech)
            result.response = response
            result.continue_conversation = False
        return result
