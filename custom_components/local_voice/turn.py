"""One user turn against llama-server: send, stream, tools, decide.

Each round sends the chat (fitted to the slot's context on the first), streams
the answer into the chat log, runs the calls the guards let through, then
decides: answered, ground a target not found, end after a done action, or ask
again. From the third round on (the second for a question) the model must answer
in words (`tool_choice: "none"`), so no turn runs to the round limit. A clear
order's first answer is short and held: words without a call give way to the
call the words make. A call llama-server cannot parse is read from the raw text; a call
repeated right after it failed, or after it worked, ends the turn.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
import time
from typing import Any

from homeassistant.components import conversation

from .agent_text import AgentError, TurnError, async_agent_text
from .const import LOGGER
from .grounding import Ambiguous, Fit, NotFound
from .llama_server.deltas import DeltaTransformer, ToolCallBuilder
from .llama_server.errors import (
    ContextOverflow,
    LlamaServerError,
    TruncatedStream,
    UnparsableToolCall,
)
from .prompt import PromptParts
from .tool_arguments import looks_like_sentence, tool_call_in_text
from .tool_calls import (
    done_calls,
    failed_calls,
    repeated_failure,
    repeated_success,
    tool_call_deltas,
)
from .turn_agent import Build, TurnAgent
from .turn_guards import CallGuard, Guarded, retry_input
from .turn_history import failed_target_calls, round_calls

# From this round on (counted from 0) the model answers in words; a question's
# second round already does.
ANSWER_ROUND = 2
# Said to the model (in the request only, not the chat log) when a question's
# answer could not be read: a small model keeps writing tool calls otherwise.
NUDGE = "Answer my question in words. Do not call a tool."
# A clear order's first round holds a call or a sentence; past this a small model
# only rambles (1,024 tokens, 79 s, on a misheard "guard in pump").
ORDER_MAX_TOKENS = 128


@dataclass(slots=True)
class Round:
    """What one streamed round left for the decision."""

    error: TurnError | None = None
    finish_reason: str | None = None
    by_words: Guarded | None = None  # the model only talked: the words' call


@dataclass(slots=True)
class ChatTurn:
    """The rounds of one user turn, and what they carry from one to the next."""

    entity: TurnAgent
    chat_log: conversation.ChatLog
    parts: PromptParts
    slot: int
    build: Build
    n_turns: Callable[[], int]
    guard: CallGuard
    action_ends_turn: bool = True
    drop: int = 0
    raw: bool = False  # this round is the retry that reads the model's raw text
    nudged: bool = False  # a question's answer could not be read: asked in words
    failed: dict[str, str] = field(default_factory=dict)

    async def async_run(self, max_rounds: int) -> TurnError | None:
        """Answer the newest turn; return the error that ended it, if any."""
        if (first := await self.guard.async_before_model()) is not None:
            return await self._async_without_model(first)
        iteration = 0
        refit = True
        while iteration < max_rounds:
            answer_only = (
                self.nudged
                or iteration >= ANSWER_ROUND
                or (iteration >= 1 and self.guard.utterance.is_question)
            )
            try:
                payload = await self._async_payload(refit, answer_only)
                refit = False
                done = await self._async_round(payload, answer_only)
            except ContextOverflow as err:
                if self.drop < self.n_turns() - 1:
                    self.drop += 1  # the server counted more than we could: trim
                    refit = True
                    continue
                return err
            except StopAsyncIteration:
                return TruncatedStream("no chunk at all")
            if isinstance(done.error, UnparsableToolCall) and not (
                self.raw or answer_only
            ):
                LOGGER.debug("%s; asking for the raw text", done.error)
                self.raw = True
                continue
            if done.by_words is not None:
                return await self._async_without_model(done.by_words)
            if done.error is not None:
                if (unread := await self._async_unread(done.error)) is not True:
                    return unread if not isinstance(unread, bool) else None
                self.raw = False
                continue
            self.raw = False
            if (ended := await self._async_decide(done)) is not None:
                return ended if not isinstance(ended, bool) else None
            iteration += 1
        return AgentError("llm_tool_loop_limit", limit=max_rounds)

    async def _async_unread(self, error: TurnError) -> TurnError | bool | None:
        """Ask again, act from the words, or end, when an answer could not be read.

        A question is asked once more, in words (True); a request whose words make
        one call is done from them; anything else ends with the error.
        """
        unread = isinstance(error, UnparsableToolCall) or (
            isinstance(error, AgentError) and error.translation_key == "llm_no_answer"
        )
        if not unread or not self.guard.active:
            return error
        if self.guard.utterance.is_question and not self.nudged:
            LOGGER.debug("%s; asking for an answer in words", error)
            self.nudged = True
            return True
        if (words := self.guard.from_words()) is not None:
            return await self._async_without_model(words)
        return error

    async def _async_without_model(self, first: Guarded) -> TurnError | None:
        """Say what the guards answered, or run the call they made, then end."""
        if first.say is not None:
            await self._async_say(first)
            return None
        await self.entity.async_add_deltas(
            self.chat_log, {"role": "assistant", "tool_calls": first.calls}
        )
        if self._actions_done():
            await self._async_say_done()
            return None
        return AgentError("llm_not_found", words="that")

    @property
    def _opening(self) -> bool:
        """True for the turn's first round: nothing answered the user's words yet."""
        return isinstance(self.chat_log.content[-1], conversation.UserContent)

    async def _async_payload(self, refit: bool, answer_only: bool) -> dict[str, Any]:
        """Build the round's request: fitted on the first, answer-only when due."""
        if refit:
            # Later rounds only add tool results; if those overflow, the server
            # says so and the next try trims again.
            payload, self.drop = await self.entity.async_fit(
                self.build, self.n_turns(), self.drop
            )
        else:
            payload = self.build(self.drop)
        if self.raw or answer_only:
            # Same messages and tools: the prompt prefix stays identical.
            payload = {**payload, "tool_choice": "none"}
        if not answer_only and self._opening and self.guard.orders_from_words:
            limit = min(int(payload["max_tokens"]), ORDER_MAX_TOKENS)
            payload = {**payload, "max_tokens": limit}
        if self.nudged:  # after the chat, so the cached prefix still serves
            messages = [*payload["messages"], {"role": "user", "content": NUDGE}]
            payload = {**payload, "messages": messages}
        return payload

    async def _async_round(self, payload: dict[str, Any], answer_only: bool) -> Round:
        """Send one request and stream its answer into the chat log."""
        self.entity.watch_model_load()
        stream = self.entity.client.async_stream_chat(payload)
        try:
            return await self._async_stream_into_log(stream, answer_only)
        except LlamaServerError as err:
            if isinstance(err, ContextOverflow):
                raise
            return Round(error=err)
        finally:
            await stream.aclose()

    async def _async_decide(self, done: Round) -> TurnError | bool | None:
        """After a round: the turn's end (an error, or False), or None for more."""
        if not self.chat_log.unresponded_tool_results:
            last = self.chat_log.content[-1]
            if (
                isinstance(last, conversation.AssistantContent)
                and (last.content or "").strip()
            ):
                return False
            # Nothing to say: a cut-off tool call, or thinking used every token.
            return AgentError("llm_no_answer", reason=done.finish_reason or "none")
        self.failed = failed_calls(self.chat_log)
        if (said := await self._async_ground_failed()) is not None:
            return said
        if self.action_ends_turn and self._actions_done():
            return await self._async_say_done()
        return None

    async def _async_ground_failed(self) -> TurnError | bool | None:
        """Ground the calls whose target was not found: retry once, ask, or say so."""
        failed = failed_target_calls(self.chat_log)
        if not failed or not self.guard.active:
            return None
        found = [self.guard.retry_of(call) for call in failed]
        if unclear := next((f for f in found if isinstance(f, Ambiguous)), None):
            await self._async_say(await self.guard.async_which_one(unclear))
            return False
        if missing := next((f for f in found if isinstance(f, NotFound)), None):
            return AgentError("llm_not_found", words=missing.words or "that")
        retries = [
            retry_input(call, fit)
            for call, fit in zip(failed, found, strict=True)
            if isinstance(fit, Fit)
        ]
        LOGGER.debug("Calling again as %s", [r.tool_args for r in retries])
        await self.entity.async_add_deltas(
            self.chat_log, {"role": "assistant", "tool_calls": retries}
        )
        self.failed |= failed_calls(self.chat_log)
        if again := failed_target_calls(self.chat_log):
            names = [str(call.tool_args.get("name", "that")) for call in again]
            return AgentError("llm_not_found", words=", ".join(names))
        return None

    def _actions_done(self) -> bool:
        """Return True when one request was made and every call of the round did it."""
        calls = round_calls(self.chat_log)
        return (
            bool(calls)
            and self.guard.active
            and self.guard.utterance.is_single_request
            and all(ok and self.guard.is_action(call) for call, ok in calls)
        )

    async def _async_say_done(self) -> bool:
        """End the turn with what the round's actions did, without another round."""
        names = [n for targets in done_calls(self.chat_log).values() for n in targets]
        done = (
            AgentError("llm_tool_done", targets=", ".join(dict.fromkeys(names)))
            if names
            else AgentError("llm_done")  # a timer: no device to name
        )
        text = await async_agent_text(self.entity.hass, done, self.guard.language)
        await self.entity.async_add_deltas(
            self.chat_log, {"role": "assistant", "content": text}
        )
        return False

    async def _async_say(self, guarded: Guarded) -> None:
        """Add what the guards say as the assistant's answer."""
        await self.entity.async_add_deltas(
            self.chat_log, {"role": "assistant", "content": guarded.say or ""}
        )

    async def _async_stream_into_log(
        self, stream: AsyncGenerator[dict[str, Any]], answer_only: bool
    ) -> Round:
        """Send the request (the first chunk), then stream its answer into the log."""
        sent = time.monotonic()
        first = await anext(stream)  # after the prompt and the first token
        first_token_ms = round((time.monotonic() - sent) * 1000, 1)
        done = Round()
        transformer = DeltaTransformer()
        held: list[str] = []
        reads_text = self.raw or answer_only
        # An order's first round holds its words until it is known to call.
        holds = self._opening and not reads_text and self.guard.orders_from_words

        def released(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not (reads_text or holds):
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
                done.error = err
                return
            finally:
                self.entity.record_request(
                    self.slot, self.parts, transformer, first_token_ms
                )
            for delta in released(transformer.finish()):
                yield delta
            calls: list[ToolCallBuilder] | None = transformer.tool_calls()
            text = "".join(held).strip()
            if holds and not (calls := calls or self._call_in(text)):
                done.by_words = self.guard.from_words()
                if done.by_words is not None:
                    return
                yield {"content": text}
            if reads_text and text:
                calls = self._read_text(text, answer_only, done)
                if calls is None:
                    if done.error is None:
                        yield {"content": text}
                    return
            async for delta in self._calls(calls or [], done):
                yield delta

        await self.entity.async_stream_deltas(self.chat_log, deltas())
        done.finish_reason = transformer.result.finish_reason
        return done

    def _call_in(self, text: str) -> list[ToolCallBuilder]:
        """Return the tool call written in an answer's text, if it holds one."""
        if found := tool_call_in_text(text, self.parts.tool_names):
            LOGGER.debug("Tool call read from text")
            return [ToolCallBuilder(name=found[0], parsed=found[1])]
        return []

    def _read_text(
        self, text: str, answer_only: bool, done: Round
    ) -> list[ToolCallBuilder] | None:
        """Read a held answer: a call in the raw text, or words (None) to say."""
        if not answer_only and (found := self._call_in(text)):
            return found
        if looks_like_sentence(text):
            return None
        if answer_only:
            done.error = AgentError("llm_no_answer", reason="no sentence")
        else:
            done.error = UnparsableToolCall(f"no tool call in {text!r:.200}")
        return None

    async def _calls(
        self, calls: list[ToolCallBuilder], done: Round
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield the round's finished calls as deltas, after the guards."""
        out = tool_call_deltas(calls, self.parts, self.chat_log.llm_api)
        inputs = [call for delta in out for call in delta.get("tool_calls") or ()]
        refusals = [delta for delta in out if "tool_calls" not in delta]
        guarded = await self.guard.async_guard(
            [call for call in inputs if not call.external]
        )
        if guarded.say is not None:
            yield {"content": guarded.say}
            return
        run = guarded.calls + [call for call in inputs if call.external]
        out = [{"tool_calls": run}] if run else []
        out += refusals + guarded.refusals
        if repeated := repeated_failure(out, self.failed):
            done.error = repeated
            return
        if finished := repeated_success(out, done_calls(self.chat_log)):
            yield {
                "content": await async_agent_text(
                    self.entity.hass, finished, self.guard.language
                )
            }
            return
        for delta in out:
            yield delta
