"""The LLM logic shared by the conversation and AI task entities.

One user turn: build the cache-stable prompt (prompt.py), take the slot the slot
manager pins, fit the history into the server's context, then stream answers and run
tools until the model answers without a tool call (or the iteration limit is hit).
Failures never raise into the Assist pipeline: the agent says what went wrong,
through the same delta stream that feeds text-to-speech.

Small models need two more guards. When llama-server cannot parse the model's tool
call, the round is asked again with `tool_choice: "none"` (same prefix, so the cache
holds) and the agent reads the call from the raw text itself. When the model repeats
a call that just failed, the turn ends at once with the tool's reason; when it
repeats one that is done, the turn ends with a short sentence saying it is done.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
import time
from typing import Any, cast

import probatio

from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import llm

from .const import (
    CONF_MAX_HISTORY,
    CONF_SEND_REASONING,
    CONTEXT_ANSWER_RESERVE_MAX_FRACTION,
    DOMAIN,
    LOGGER,
    MAX_TOOL_ITERATIONS,
)
from .entity import LlamaServerEntity
from .llama_server.deltas import DeltaTransformer, ToolCallBuilder
from .llama_server.errors import (
    ContextOverflow,
    LlamaServerError,
    TruncatedStream,
    UnparsableToolCall,
)
from .llama_server.tool_arguments import looks_like_sentence, tool_call_in_text
from .messages import build_messages, turns
from .prompt import PromptParts, async_build_prompt_parts, async_static_prompt_parts
from .request import (
    AgentError,
    TurnError,
    async_agent_text,
    estimated_tokens,
    image_parts,
    request_options,
    warm_up_request,
)
from .slots import Prefix
from .tool_calls import (
    done_calls,
    failed_calls,
    narrowed_retry,
    repeated_failure,
    repeated_success,
    tool_call_deltas,
)


class LocalVoiceLLMEntity(LlamaServerEntity):
    """Base of the conversation and AI task entities: one turn against llama-server."""

    async def async_error_text(
        self, err: TurnError, language: str | None = None
    ) -> str:
        """Return an error's message in the user's language (English as fallback)."""
        return await async_agent_text(self.hass, err, language)

    async def _async_say(self, chat_log: conversation.ChatLog, text: str) -> None:
        """Add an assistant message through the delta stream (so TTS speaks it too)."""

        async def say() -> AsyncIterator[conversation.AssistantContentDeltaDict]:
            yield {"role": "assistant", "content": text}

        async with aclosing(
            chat_log.async_add_delta_content_stream(self.entity_id, say())
        ) as contents:
            async for _content in contents:
                pass

    async def _async_add_call(
        self, chat_log: conversation.ChatLog, call: llm.ToolInput
    ) -> None:
        """Run a tool call of the agent's own through the chat log, as the model's."""

        async def calls() -> AsyncIterator[conversation.AssistantContentDeltaDict]:
            yield {"role": "assistant", "tool_calls": [call]}

        async with aclosing(
            chat_log.async_add_delta_content_stream(self.entity_id, calls())
        ) as contents:
            async for _content in contents:
                pass

    def _prefix(self, parts: PromptParts) -> Prefix:
        """Return this entity's static prefix, as the slot manager keeps it."""
        options = self.subentry.data
        return Prefix(
            agent=self.subentry.subentry_id,
            key=parts.key,
            entity_id=self.entity_id,
            warm_up_request=lambda slot: warm_up_request(options, parts, slot),
        )

    async def _async_static_prefix(self) -> Prefix | None:
        """Build the prefix every chat shares from the options (for warm-ups)."""
        options = self.subentry.data
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
        if not self.coordinator.data.supports_vision:
            raise AgentError(
                "llm_vision_unsupported", model=self.coordinator.data.model
            )
        return await self.hass.async_add_executor_job(
            image_parts, [attachment.path for attachment in last_user.attachments]
        )

    async def _async_fit(
        self, build: Callable[[int], dict[str, Any]], n_turns: int, drop: int
    ) -> tuple[dict[str, Any], int]:
        """Drop the oldest turns until the prompt leaves room for the answer.

        Counting is exact (the server's own template and tokenizer) and only done when
        a cheap upper bound says the prompt might not fit. The system prefix and the
        newest turn are never dropped.
        """
        payload = build(drop)
        n_ctx = self.coordinator.data.n_ctx
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
        options = self.subentry.data
        slot = self.slots.slot_for(self.subentry.subentry_id, llm_context.device_id)
        base = request_options(
            options,
            parts,
            slot,
            llm_api=chat_log.llm_api,
            structure_name=structure_name,
            structure=structure,
        )
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

        drop = 0
        iteration = 0
        refit = False
        raw = False  # this round is the retry that reads the model's raw text
        failed: dict[str, str] = {}  # calls of the last round that failed, and why
        while iteration < max_iterations:
            stream: AsyncGenerator[dict[str, Any]] | None = None
            error: TurnError | None = None
            try:
                if iteration == 0 or refit:
                    # Later rounds only add tool results; if those overflow, the
                    # server says so and the next try trims again.
                    payload, drop = await self._async_fit(build, len(history()), drop)
                else:
                    payload = build(drop)
                refit = False
                if raw:
                    # Same messages and tools: the prompt prefix stays identical.
                    payload = {**payload, "tool_choice": "none"}
                stream = self.client.async_stream_chat(payload)
                error, finish_reason = await self._async_stream_into_log(
                    chat_log, stream, parts, slot, raw=raw, failed=failed
                )
            except ContextOverflow as err:
                if drop < len(history()) - 1:
                    drop += 1  # the server counted more than we could: trim, retry
                    refit = True
                    continue
                return self._failed(err)
            except StopAsyncIteration:
                return self._failed(TruncatedStream("no chunk at all"))
            except LlamaServerError as err:
                error = err
            finally:
                if stream is not None:
                    await stream.aclose()
            if isinstance(error, UnparsableToolCall) and not raw:
                LOGGER.debug("%s: %s; asking for the raw text", self.entity_id, error)
                raw = True
                continue
            if error is not None:
                return self._failed(error)
            raw = False
            failed = failed_calls(chat_log)
            if retry := narrowed_retry(chat_log):
                LOGGER.debug(
                    "%s: calling %s again as %s", self.entity_id, retry.tool_name, retry
                )
                await self._async_add_call(chat_log, retry)
                failed |= failed_calls(chat_log)
            if not chat_log.unresponded_tool_results:
                last = chat_log.content[-1]
                if (
                    isinstance(last, conversation.AssistantContent)
                    and (last.content or "").strip()
                ):
                    return None
                # Nothing to say: a cut-off tool call, or thinking used every token.
                return self._failed(
                    AgentError("llm_no_answer", reason=finish_reason or "none")
                )
            iteration += 1
        return self._failed(AgentError("llm_tool_loop_limit", limit=max_iterations))

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

    async def _async_stream_into_log(
        self,
        chat_log: conversation.ChatLog,
        stream: AsyncGenerator[dict[str, Any]],
        parts: PromptParts,
        slot: int,
        *,
        raw: bool = False,
        failed: dict[str, str] | None = None,
    ) -> tuple[TurnError | None, str | None]:
        """Send the request (the first chunk), then stream its answer into the log.

        `raw`: the answer is the model's raw text (tool_choice "none"); it is held
        back and read for a tool call. `failed`: the calls of the last round that
        failed; the model repeating one ends the turn. Return the error that cut
        the answer short (if any) and the finish reason.
        """
        sent = time.monotonic()
        first = await anext(stream)  # after the prompt and the first token
        first_token_ms = round((time.monotonic() - sent) * 1000, 1)
        transformer = DeltaTransformer()
        failure: list[TurnError] = []
        held: list[str] = []

        def released(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not raw:
                return deltas
            held.extend(delta.get("content", "") for delta in deltas)
            return [delta for delta in deltas if "content" not in delta]

        async def deltas() -> AsyncIterator[dict[str, Any]]:
            yield {"role": "assistant"}
            try:
                async with aclosing(stream):
                    for delta in released(transformer.feed(first)):
                        yield delta
                    async for chunk in stream:
                        for delta in released(transformer.feed(chunk)):
                            yield delta
            except LlamaServerError as err:
                failure.append(err)
                return
            finally:
                self.slots.record_request(
                    slot,
                    self._prefix(parts),
                    transformer.result.timings,
                    transformer.result.finish_reason,
                    first_token_ms,
                )
            for delta in released(transformer.finish()):
                yield delta
            calls = transformer.tool_calls()
            if raw and (text := "".join(held).strip()):
                if found := tool_call_in_text(text, parts.tool_names):
                    LOGGER.debug("%s: tool call read from text", self.entity_id)
                    calls = [ToolCallBuilder(name=found[0], parsed=found[1])]
                elif looks_like_sentence(text):
                    yield {"content": text}
                else:
                    failure.append(UnparsableToolCall(f"no tool call in {text!r:.200}"))
                    return
            out = tool_call_deltas(calls, parts, chat_log.llm_api)
            if repeated := repeated_failure(out, failed or {}):
                failure.append(repeated)
                return
            if done := repeated_success(out, done_calls(chat_log)):
                api = chat_log.llm_api
                language = api.llm_context.language if api else None
                yield {"content": await async_agent_text(self.hass, done, language)}
                return
            for delta in out:
                yield delta

        async with aclosing(
            chat_log.async_add_delta_content_stream(
                self.entity_id,
                cast(
                    AsyncIterator[
                        conversation.AssistantContentDeltaDict
                        | conversation.ToolResultContentDeltaDict
                    ],
                    deltas(),
                ),
            )
        ) as contents:
            async for _content in contents:
                pass
        return (failure[0] if failure else None), transformer.result.finish_reason
