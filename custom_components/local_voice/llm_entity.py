"""The LLM logic shared by the conversation and AI task entities.

One user turn: build the cache-stable prompt (prompt.py), take the slot the slot
manager pins, fit the history into the server's context, then run the turn's rounds
(turn.py). Failures never raise into the Assist pipeline: the agent says what went
wrong, through the same delta stream that feeds text-to-speech.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, cast

import probatio

from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import llm

from .agent_text import AgentError, TurnError, async_agent_text
from .const import (
    CONF_ACTION_ENDS_TURN,
    CONF_MAX_HISTORY,
    CONF_SEND_REASONING,
    CONTEXT_ANSWER_RESERVE_MAX_FRACTION,
    DOMAIN,
    LOGGER,
    MAX_TOOL_ITERATIONS,
)
from .entity import LlamaServerEntity
from .llama_server.deltas import DeltaTransformer
from .llama_server.errors import ContextOverflow, LlamaServerError
from .messages import build_messages, turns
from .prompt import PromptParts, async_build_prompt_parts, async_static_prompt_parts
from .request import (
    estimated_tokens,
    image_parts,
    request_options,
    warm_up_request,
)
from .slots import Prefix
from .turn import ChatTurn
from .turn_agent import Build
from .turn_guards import CallGuard


class LocalVoiceLLMEntity(LlamaServerEntity):
    """Base of the conversation and AI task entities: one turn against llama-server."""

    #: On a router: whether the model was loaded when the last request was sent.
    _load_check: asyncio.Task[bool] | None = None

    async def async_error_text(
        self, err: TurnError, language: str | None = None
    ) -> str:
        """Return an error's message in the user's language (English as fallback)."""
        return await async_agent_text(self.hass, err, language)

    async def async_add_deltas(
        self, chat_log: conversation.ChatLog, delta: dict[str, Any]
    ) -> None:
        """Add one assistant delta of the agent's own (words, or a call it runs)."""

        async def one() -> AsyncIterator[dict[str, Any]]:
            yield delta

        await self.async_stream_deltas(chat_log, one())

    async def async_stream_deltas(
        self, chat_log: conversation.ChatLog, deltas: AsyncIterator[dict[str, Any]]
    ) -> None:
        """Stream deltas into the chat log (which runs their tool calls)."""
        async with aclosing(
            chat_log.async_add_delta_content_stream(
                self.entity_id,
                cast(
                    AsyncIterator[
                        conversation.AssistantContentDeltaDict
                        | conversation.ToolResultContentDeltaDict
                    ],
                    deltas,
                ),
            )
        ) as contents:
            async for _content in contents:
                pass

    def watch_model_load(self) -> None:
        """On a router, ask beside the request about to be sent if its model is loaded.

        Asked at the same time as the request, so the turn waits for nothing; a
        model found unloaded is loaded by the request (see `record_request`).
        """
        if self._load_check is not None:
            self._load_check.cancel()  # its request failed before an answer
            self._load_check = None
        if self.model is not None:
            self._load_check = self.hass.async_create_task(
                self._async_model_loaded(self.model), eager_start=False
            )

    async def _async_model_loaded(self, model: str) -> bool:
        """Return whether a router has the model loaded, without loading it.

        A router cannot reach a model that is still loading: that error means no.
        """
        try:
            return await self.client.async_get_model_props(model) is not None
        except LlamaServerError:
            return False

    def _note_load(self, timings: dict[str, Any], first_token_ms: float) -> None:
        """Measure the load a request waited for: its first token less its prompt.

        The switch repair and the loaded-models sensor report it.
        """
        check, self._load_check = self._load_check, None
        if check is None:
            return
        if not check.done() or "prompt_ms" not in timings or self.model is None:
            check.cancel()
            return
        waited_ms = first_token_ms - float(timings["prompt_ms"])
        if not check.cancelled() and not check.result() and waited_ms > 0:
            self.coordinator.note_load(self.model, waited_ms / 1000)

    def record_request(
        self,
        slot: int,
        parts: PromptParts,
        transformer: DeltaTransformer,
        first_token_ms: float,
    ) -> None:
        """Tell the slot manager what a request read and how fast it answered."""
        self._note_load(transformer.result.timings, first_token_ms)
        self.slots.record_request(
            slot,
            self._prefix(parts),
            transformer.result.timings,
            transformer.result.finish_reason,
            first_token_ms,
        )

    def _prefix(self, parts: PromptParts) -> Prefix:
        """Return this entity's static prefix, as the slot manager keeps it."""
        options = self.options
        return Prefix(
            agent=self.subentry.subentry_id,
            key=parts.key,
            entity_id=self.entity_id,
            warm_up_request=lambda slot: warm_up_request(options, parts, slot),
        )

    async def _async_static_prefix(self) -> Prefix | None:
        """Build the prefix every chat shares from the options (for warm-ups)."""
        options = self.options
        try:
            parts = await async_static_prompt_parts(
                self.hass, options.get(CONF_LLM_HASS_API), options.get(CONF_PROMPT)
            )
        except HomeAssistantError as err:
            LOGGER.debug("%s: no slot warm-up: %s", self.entity_id, err)
            return None
        return self._prefix(parts)

    async def _async_attachments(
        self, chat_log: conversation.ChatLog
    ) -> list[dict[str, Any]]:
        """Image parts for the newest user message's attachments."""
        last_user = next(
            (
                item
                for item in reversed(chat_log.content)
                if isinstance(item, conversation.UserContent)
            ),
            None,
        )
        if last_user is None or not last_user.attachments:
            return []
        props = self.model_props
        if not props.supports_vision and not props.router:
            raise AgentError("llm_vision_unsupported", model=props.model)
        return await self.hass.async_add_executor_job(
            image_parts, [attachment.path for attachment in last_user.attachments]
        )

    async def async_fit(
        self, build: Callable[[int], dict[str, Any]], n_turns: int, drop: int
    ) -> tuple[dict[str, Any], int]:
        """Drop the oldest turns until the prompt leaves room for the answer.

        Counting is exact (the server's own template and tokenizer) and only done when
        a cheap upper bound says the prompt might not fit. The system prefix and the
        newest turn are never dropped.
        """
        payload = build(drop)
        n_ctx = self.model_props.n_ctx
        if n_ctx <= 0 or n_turns <= 1:
            return payload, drop
        reserve = min(
            int(payload["max_tokens"]), n_ctx // CONTEXT_ANSWER_RESERVE_MAX_FRACTION
        )
        budget = n_ctx - reserve
        while estimated_tokens(payload) > budget:
            tokens = await self.client.async_count_prompt_tokens(payload)
            if tokens <= budget:
                break
            if drop >= n_turns - 1:
                if tokens > n_ctx:
                    raise ContextOverflow(
                        f"{tokens} > {n_ctx} tokens", tokens=tokens, n_ctx=n_ctx
                    )
                break  # fits, with less room for the answer
            drop += 1
            LOGGER.debug(
                "Prompt of %s tokens > %s: dropping oldest turn", tokens, budget
            )
            payload = build(drop)
        return payload, drop

    async def _async_handle_chat_log(
        self,
        chat_log: conversation.ChatLog,
        llm_context: llm.LLMContext,
        user_prompt: str | None,
        *,
        structure_name: str | None = None,
        structure: probatio.Schema | None = None,
        max_iterations: int | None = None,
        voice_turn: bool = False,
    ) -> TurnError | None:
        """Answer the chat log's newest turn; return the error that ended it, if any."""
        max_iterations = max_iterations or MAX_TOOL_ITERATIONS
        try:
            parts = await async_build_prompt_parts(
                self.hass,
                chat_log.llm_api,
                chat_log.extra_system_prompt,
                llm_context,
                user_prompt,
            )
            attachments = await self._async_attachments(chat_log)
        except AgentError as err:
            return err
        slot = self.slots.slot_for(self.subentry.subentry_id, llm_context.device_id)
        base = request_options(
            self.options,
            parts,
            slot,
            llm_api=chat_log.llm_api,
            structure_name=structure_name,
            structure=structure,
        )
        history, build = self._request_builder(chat_log, parts, base, attachments)
        turn = ChatTurn(
            self,
            chat_log,
            parts,
            slot,
            build,
            lambda: len(history()),
            CallGuard(
                self.hass,
                chat_log,
                llm_context.language or self.hass.config.language,
                device_id=llm_context.device_id,
                active=voice_turn,
            ),
            action_ends_turn=bool(self.subentry.data.get(CONF_ACTION_ENDS_TURN, True)),
        )
        if (error := await turn.async_run(max_iterations)) is not None:
            return self._failed(error)
        return None

    def _request_builder(
        self,
        chat_log: conversation.ChatLog,
        parts: PromptParts,
        base: dict[str, Any],
        attachments: list[dict[str, Any]],
    ) -> tuple[Callable[[], list[list[conversation.Content]]], Build]:
        """Return the turns to send, and the request with the oldest `drop` left out."""
        options = self.options
        max_history = int(options.get(CONF_MAX_HISTORY) or 0)
        send_reasoning = bool(options.get(CONF_SEND_REASONING, False))

        def history() -> list[list[conversation.Content]]:
            grouped = turns(chat_log.content)
            return grouped[-max_history:] if max_history > 0 else grouped

        def build(drop: int) -> dict[str, Any]:
            messages = build_messages(
                parts.system,
                parts.context,
                history()[drop:],
                send_reasoning=send_reasoning,
                attachments=attachments,
            )
            # Messages first: the body's bytes too are the same up to the context.
            return {"messages": messages, **base}

        return history, build

    def _failed(self, err: TurnError) -> TurnError:
        """Log a failed request; re-check the server when it may be down."""
        LOGGER.warning("%s: %s", self.entity_id, err)
        LOGGER.debug("%s failed", self.entity_id, exc_info=err)
        if err.refresh_server:
            self.coordinator.config_entry.async_create_background_task(
                self.hass,
                self.coordinator.async_recheck(err),
                f"{DOMAIN} refresh after failed chat",
            )
        return err
