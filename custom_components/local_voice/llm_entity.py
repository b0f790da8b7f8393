"""The LLM logic shared by the conversation and AI task entities.

One user turn: build the cache-stable prompt (prompt.py), pin the request to a slot,
fit the history into the server's context, then stream answers and run tools until the
model answers without a tool call (or the iteration limit is hit). Failures never raise
into the Assist pipeline: the agent says what went wrong, through the same delta stream
that feeds text-to-speech.
"""

from __future__ import annotations

import base64
from collections import Counter, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
import mimetypes
from pathlib import Path
from typing import Any, cast
import weakref

import probatio

from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.core import callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import llm, translation
from homeassistant.helpers.json import json_dumps
from homeassistant.util import dt as dt_util, ulid as ulid_util

from .chat import (
    ChatError,
    ContextOverflowError,
    DeltaTransformer,
    ToolArgumentsError,
    ToolLoopLimitError,
    async_count_prompt_tokens,
    async_prompt_timings,
    async_stream_chat,
    drop_unknown_arguments,
    log_unparsed,
    parse_tool_arguments,
    resolve_tool_name,
)
from .const import (
    CHAT_TIMINGS_KEPT,
    CONF_MAX_HISTORY,
    CONF_MAX_TOKENS,
    CONF_REASONING_EFFORT,
    CONF_SEND_REASONING,
    CONF_TEMPERATURE,
    CONF_TOP_P,
    CONTEXT_ANSWER_RESERVE_MAX_FRACTION,
    DOMAIN,
    LOGGER,
    MAX_TOOL_ITERATIONS,
    RECOMMENDED_MAX_TOKENS,
    RECOMMENDED_REASONING_EFFORT,
    RECOMMENDED_TEMPERATURE,
    RECOMMENDED_TOP_P,
    WARM_MIN_PROMPT_TOKENS,
)
from .coordinator import LlamaServerCoordinator
from .entity import LlamaServerEntity
from .prompt import (
    PromptParts,
    async_build_prompt_parts,
    async_static_prompt_parts,
    build_messages,
    turns,
)

# Template overhead per message and for the template's own text, for the cheap upper
# bound on prompt tokens (a byte-level tokenizer never makes more tokens than bytes).
_TEMPLATE_BYTES_PER_MESSAGE = 32
_TEMPLATE_BYTES = 2048


@dataclass
class ChatState:
    """Per-server state shared by all agents on it: slots, their prefixes, timings.

    Slots: the first request of each (agent, device) pair takes the slot fewest pairs
    use, and keeps it while Home Assistant runs, so up to `total_slots` satellites never
    evict each other's cache (a hash modulo the slot count would put two satellites on
    one slot half the time with two slots). `held` is which agent's static prefix each
    slot holds, as far as known: a conversation agent warms the slots that hold
    nothing or an old prefix of its own, never another agent's.
    """

    timings: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=CHAT_TIMINGS_KEPT)
    )
    warmups: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=CHAT_TIMINGS_KEPT)
    )
    slots: dict[tuple[str, str | None], int] = field(default_factory=dict)
    held: dict[int, tuple[str, str]] = field(default_factory=dict)
    total_slots: int = 0

    def _follow(self, total_slots: int) -> None:
        """Start over when the server comes back with another slot count."""
        if total_slots != self.total_slots:
            self.slots.clear()
            self.held.clear()
            self.total_slots = total_slots

    def slot_for(self, agent: str, device_id: str | None, total_slots: int) -> int:
        """Return the slot pinned to this agent and device."""
        self._follow(total_slots)
        key = (agent, device_id)
        if key not in self.slots:
            used = Counter(self.slots.values())
            self.slots[key] = min(
                range(max(1, total_slots)), key=lambda s: (used[s], s)
            )
        return self.slots[key]

    def note_request(
        self, slot: int, agent: str, key: str, timings: Mapping[str, Any]
    ) -> bool:
        """Record that the slot holds the agent's prefix; return True if it was cold.

        A request that re-read more of its prompt than it reused found the slot
        without the prefix: the server restarted, or something else used the slot.
        What is known of the agent's other slots is then stale too.
        """
        prompt_n = int(timings.get("prompt_n", 0))
        cold = prompt_n >= WARM_MIN_PROMPT_TOKENS and prompt_n > int(
            timings.get("cache_n", 0)
        )
        if cold:
            self.forget(agent)
        self.held[slot] = (agent, key)
        return cold

    def claim_cold_slots(self, agent: str, key: str, total_slots: int) -> list[int]:
        """Claim, for warming, the slots without a prefix or with an old one of ours."""
        self._follow(total_slots)
        claimed = [
            slot
            for slot in range(total_slots)
            if (holder := self.held.get(slot)) is None
            or (holder[0] == agent and holder[1] != key)
        ]
        for slot in claimed:
            self.held[slot] = (agent, key)
        return claimed

    def forget(self, agent: str, slots: Iterable[int] | None = None) -> None:
        """Forget what the agent's slots (or the given ones) hold."""
        for slot in list(self.held if slots is None else slots):
            if self.held.get(slot, ("", ""))[0] == agent:
                del self.held[slot]

    def as_dict(self) -> dict[str, Any]:
        """Return what diagnostics show: slots, recent request and warm-up timings."""
        return {
            "slots": [
                {"agent": agent, "device_id": device, "slot": slot}
                for (agent, device), slot in self.slots.items()
            ],
            "held": [
                {"slot": slot, "agent": agent, "prefix": key}
                for slot, (agent, key) in sorted(self.held.items())
            ],
            "timings": list(self.timings),
            "warmups": list(self.warmups),
        }


_STATES: weakref.WeakKeyDictionary[LlamaServerCoordinator, ChatState] = (
    weakref.WeakKeyDictionary()
)


def chat_state(coordinator: LlamaServerCoordinator) -> ChatState:
    """Return the chat state of a llama-server entry (diagnostics read `as_dict()`)."""
    if (state := _STATES.get(coordinator)) is None:
        state = _STATES[coordinator] = ChatState()
    return state


def reasoning_options(effort: str) -> dict[str, Any]:
    """Request fields that set reasoning the way llama-server understands.

    `reasoning_effort` is given to the chat template (and "none" turns thinking off);
    `chat_template_kwargs.enable_thinking` switches templates such as Qwen3's.
    """
    if effort == "off":
        return {
            "reasoning_effort": "none",
            "chat_template_kwargs": {"enable_thinking": False},
        }
    return {
        "reasoning_effort": effort,
        "chat_template_kwargs": {"enable_thinking": True},
    }


def structured_output(
    name: str, structure: probatio.Schema, llm_api: llm.APIInstance | None
) -> dict[str, Any]:
    """Return a JSON-schema `response_format` for an AI task's structure."""
    schema = probatio.to_openapi(
        structure,
        custom_serializer=(
            llm_api.custom_serializer if llm_api else llm.selector_serializer
        ),
        openapi_version="3.1.0",
    )
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "strict": True, "schema": schema},
    }


def image_parts(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read image attachments as data URLs (run in the executor)."""
    parts: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise ChatError("llm_attachment_not_found", file=path.name)
        mime_type, _ = mimetypes.guess_type(str(path))
        if not mime_type or not mime_type.startswith("image/"):
            raise ChatError("llm_attachment_unsupported", file=path.name)
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(
            {
                "type": "image_url",
                "image_url": {"url": f"data:{mime_type};base64,{data}"},
            }
        )
    return parts


def _estimated_bytes(payload: Mapping[str, Any]) -> int:
    """Return an upper bound on the prompt's tokens: its bytes, plus the template's."""
    messages = payload.get("messages", [])
    return (
        len(json_dumps([messages, payload.get("tools", [])]).encode())
        + _TEMPLATE_BYTES_PER_MESSAGE * len(messages)
        + _TEMPLATE_BYTES
    )


def _refusal(call_id: str, name: str, raw: str, problem: Exception) -> dict[str, Any]:
    """Return the tool result that tells the model its call could not be read."""
    return {
        "role": "tool_result",
        "tool_call_id": call_id,
        "tool_name": name,
        "result": llm.ToolResult(
            data={
                "error": "InvalidArguments",
                "error_text": (
                    f"The arguments {raw[:200]!r} are not a JSON object ({problem})."
                    f" Call {name} again with its arguments as one JSON object."
                ),
            },
            error=True,
        ),
    }


class LocalVoiceLLMEntity(LlamaServerEntity):
    """Base of the conversation and AI task entities: one turn against llama-server."""

    #: The latest request's llama-server timings (prompt_n, cache_n, ...).
    last_timings: dict[str, Any] | None = None
    #: Whether this entity puts its static prefix on the server's slots (the
    #: conversation agent, whose every chat shares it; not the rare AI task).
    _warms_slots = False

    @property
    def chat_state(self) -> ChatState:
        """Return the server's shared chat state."""
        return chat_state(self.coordinator)

    async def async_error_text(
        self, err: HomeAssistantError, language: str | None = None
    ) -> str:
        """Return an error's message in the user's language (English as fallback)."""
        if err.translation_key:
            key = f"component.{DOMAIN}.exceptions.{err.translation_key}.message"
            for lang in dict.fromkeys((language or self.hass.config.language, "en")):
                strings = await translation.async_get_translations(
                    self.hass, lang, "exceptions", {DOMAIN}
                )
                if message := strings.get(key):
                    with suppress(KeyError, IndexError):
                        message = message.format(**(err.translation_placeholders or {}))
                    return message
        return str(err)

    async def _async_say(self, chat_log: conversation.ChatLog, text: str) -> None:
        """Add an assistant message through the delta stream (so TTS speaks it too)."""

        async def say() -> AsyncIterator[conversation.AssistantContentDeltaDict]:
            yield {"role": "assistant", "content": text}

        async with aclosing(
            chat_log.async_add_delta_content_stream(self.entity_id, say())
        ) as contents:
            async for _content in contents:
                pass

    def _request_options(
        self,
        parts: PromptParts,
        slot: int,
        llm_api: llm.APIInstance | None = None,
        structure_name: str | None = None,
        structure: probatio.Schema | None = None,
    ) -> dict[str, Any]:
        """Everything in the request except the messages."""
        options = self.subentry.data
        payload: dict[str, Any] = {
            "stream": True,
            "stream_options": {"include_usage": True},
            "cache_prompt": True,
            "id_slot": slot,
            "max_tokens": int(options.get(CONF_MAX_TOKENS, RECOMMENDED_MAX_TOKENS)),
            "temperature": float(
                options.get(CONF_TEMPERATURE, RECOMMENDED_TEMPERATURE)
            ),
            "top_p": float(options.get(CONF_TOP_P, RECOMMENDED_TOP_P)),
            **reasoning_options(
                str(options.get(CONF_REASONING_EFFORT, RECOMMENDED_REASONING_EFFORT))
            ),
        }
        if parts.tools:
            payload["tools"] = parts.tools
        if structure is not None and structure_name:
            payload["response_format"] = structured_output(
                structure_name, structure, llm_api
            )
        return payload

    @callback
    def _async_schedule_warm_up(self, parts: PromptParts | None = None) -> None:
        """Warm the slots in the background (built from the options if no parts)."""
        self.coordinator.config_entry.async_create_background_task(
            self.hass,
            self._async_warm_up(parts),
            f"{DOMAIN} warm-up of {self.entity_id}",
        )

    async def _async_warm_up(self, parts: PromptParts | None) -> None:
        """Put the static prefix on each slot that lacks it, one slot at a time.

        The first chat on a warm slot evaluates only its context block and the
        user's words, not the thousands of tokens of instructions and tools. A
        failure only means that chat reads the prefix itself.
        """
        options = self.subentry.data
        agent = self.subentry.subentry_id
        try:
            if parts is None:
                parts = await async_static_prompt_parts(
                    self.hass, options.get(CONF_LLM_HASS_API), options.get(CONF_PROMPT)
                )
        except HomeAssistantError as err:
            LOGGER.debug("%s: no slot warm-up: %s", self.entity_id, err)
            return
        slots = self.chat_state.claim_cold_slots(
            agent, parts.key, self.coordinator.data.total_slots
        )
        for index, slot in enumerate(slots):
            payload = {
                "messages": [
                    {"role": "system", "content": parts.system},
                    {"role": "user", "content": ""},
                ],
                **self._request_options(parts, slot),
                "max_tokens": 1,
            }
            try:
                timings = await async_prompt_timings(self.coordinator.client, payload)
            except ChatError as err:
                self.chat_state.forget(agent, slots[index:])
                LOGGER.debug("%s: slot %s not warmed: %s", self.entity_id, slot, err)
                return
            self.chat_state.warmups.append(
                {
                    "time": dt_util.utcnow().isoformat(),
                    "entity_id": self.entity_id,
                    "slot": slot,
                    **{
                        key: timings[key]
                        for key in ("prompt_n", "cache_n", "prompt_ms")
                        if key in timings
                    },
                }
            )

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
            raise ChatError("llm_vision_unsupported", model=self.coordinator.data.model)
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
        while _estimated_bytes(payload) > budget:
            tokens = await async_count_prompt_tokens(self.coordinator.client, payload)
            if tokens <= budget:
                break
            if drop >= n_turns - 1:
                if tokens > n_ctx:
                    raise ContextOverflowError(tokens, n_ctx)
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
    ) -> ChatError | None:
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
        except ChatError as err:
            return err
        options = self.subentry.data
        slot = self.chat_state.slot_for(
            self.subentry.subentry_id,
            llm_context.device_id,
            self.coordinator.data.total_slots,
        )
        base = self._request_options(
            parts, slot, chat_log.llm_api, structure_name, structure
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
        while iteration < max_iterations:
            stream: AsyncGenerator[dict[str, Any]] | None = None
            try:
                if iteration == 0 or refit:
                    # Later rounds only add tool results; if those overflow, the
                    # server says so and the next try trims again.
                    payload, drop = await self._async_fit(build, len(history()), drop)
                else:
                    payload = build(drop)
                refit = False
                stream = async_stream_chat(self.coordinator.client, payload)
                first = await anext(stream)
                error, finish_reason = await self._async_stream_into_log(
                    chat_log, stream, first, parts, slot
                )
            except ContextOverflowError as err:
                if drop < len(history()) - 1:
                    drop += 1  # the server counted more than we could: trim, retry
                    refit = True
                    continue
                return self._failed(err)
            except StopAsyncIteration:
                return self._failed(ChatError("llm_truncated_stream"))
            except ChatError as err:
                return self._failed(err)
            finally:
                if stream is not None:
                    await stream.aclose()
            if error is not None:
                return self._failed(error)
            if not chat_log.unresponded_tool_results:
                last = chat_log.content[-1]
                if (
                    isinstance(last, conversation.AssistantContent)
                    and (last.content or "").strip()
                ):
                    return None
                # Nothing to say: a cut-off tool call, or thinking used every token.
                return self._failed(
                    ChatError("llm_no_answer", reason=finish_reason or "none")
                )
            iteration += 1
        return self._failed(ToolLoopLimitError(max_iterations))

    def _failed(self, err: ChatError) -> ChatError:
        """Log a failed request; re-check the server when it may be down."""
        LOGGER.warning("%s: %s", self.entity_id, err)
        LOGGER.debug("%s failed", self.entity_id, exc_info=err)
        if err.refresh_server:
            self.coordinator.config_entry.async_create_background_task(
                self.hass,
                self.coordinator.async_request_refresh(),
                f"{DOMAIN} refresh after failed chat",
            )
        return err

    async def _async_stream_into_log(
        self,
        chat_log: conversation.ChatLog,
        stream: AsyncGenerator[dict[str, Any]],
        first: dict[str, Any],
        parts: PromptParts,
        slot: int,
    ) -> tuple[ChatError | None, str | None]:
        """Stream one answer into the chat log.

        Return the error that cut it short (if any) and the finish reason.
        """
        transformer = DeltaTransformer()
        failure: list[ChatError] = []

        async def deltas() -> AsyncIterator[dict[str, Any]]:
            yield {"role": "assistant"}
            try:
                async with aclosing(stream):
                    for delta in transformer.feed(first):
                        yield delta
                    async for chunk in stream:
                        for delta in transformer.feed(chunk):
                            yield delta
            except ChatError as err:
                failure.append(err)
                return
            finally:
                self._record(transformer, slot, parts)
            for delta in transformer.finish():
                yield delta
            async for delta in self._tool_call_deltas(chat_log, transformer, parts):
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

    async def _tool_call_deltas(
        self,
        chat_log: conversation.ChatLog,
        transformer: DeltaTransformer,
        parts: PromptParts,
    ) -> AsyncIterator[dict[str, Any]]:
        """Release the finished tool calls; answer unreadable ones with an error."""
        calls: list[llm.ToolInput] = []
        refusals: list[dict[str, Any]] = []
        for call in transformer.tool_calls():
            name = resolve_tool_name(call.name, parts.tool_names)
            call_id = call.id or ulid_util.ulid_now()
            raw = call.parsed if call.parsed is not None else call.arguments
            problem: Exception
            try:
                args = drop_unknown_arguments(
                    parse_tool_arguments(raw), parts.tool_parameters(name)
                )
            except ToolArgumentsError as err:
                problem = err
            else:
                if chat_log.llm_api is not None:
                    calls.append(llm.ToolInput(name, args, id=call_id))
                    continue
                problem = ToolArgumentsError("no tools are available")
            log_unparsed(name, call.arguments, problem)
            calls.append(llm.ToolInput(name, {}, id=call_id, external=True))
            refusals.append(_refusal(call_id, name, call.arguments, problem))
        if calls:
            yield {"tool_calls": calls}
        for refusal in refusals:
            yield refusal

    @callback
    def _record(
        self, transformer: DeltaTransformer, slot: int, parts: PromptParts
    ) -> None:
        """Keep the request's timings; warm the other slots if this one was cold."""
        result = transformer.result
        if not result.timings:
            return
        cold = self.chat_state.note_request(
            slot, self.subentry.subentry_id, parts.key, result.timings
        )
        if cold and self._warms_slots:
            self._async_schedule_warm_up(parts)
        timings: dict[str, Any] = {
            "time": dt_util.utcnow().isoformat(),
            "entity_id": self.entity_id,
            "slot": slot,
            "finish_reason": result.finish_reason,
            **{
                key: result.timings[key]
                for key in (
                    "prompt_n",
                    "cache_n",
                    "prompt_ms",
                    "predicted_n",
                    "predicted_ms",
                )
                if key in result.timings
            },
        }
        self.last_timings = timings
        self.chat_state.timings.append(timings)
