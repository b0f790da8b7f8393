"""The slot manager: which slot each chat uses, what each slot holds, warm-ups.

One per llama-server entry (in its runtime data), shared by every agent on it; on
a router, one per model (each model is a child server with slots of its own), all
keeping their timings together.
Nothing here knows about Home Assistant: it is told the slot count and when the
server is back (by the coordinator), what a chat read (by the agent), and asks the
agents that registered a prefix source for their static prefix when it warms.

Slots: the first request of each (agent, device) pair takes the slot fewest pairs
use, and keeps it while Home Assistant runs, so up to `total_slots` satellites never
evict each other's cache (a hash modulo the slot count would put two satellites on
one slot half the time with two slots). `held` is which agent's static prefix each
slot holds, as far as known: an agent warms the slots that hold nothing or an old
prefix of its own, never another agent's.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
import logging
from typing import Any

from .llama_server.client import LlamaServerClient
from .llama_server.errors import ContextOverflow, LlamaServerError

_LOGGER = logging.getLogger(__name__)

# Per-request llama-server timings (prompt_n, cache_n, ...) kept for diagnostics.
CHAT_TIMINGS_KEPT = 20
# A request that re-read at least this many tokens, more than it reused, found its
# slot without the static prefix (the server restarted, or another client took the
# slot): the agent then warms its other slots. Shorter prompts are not worth it.
WARM_MIN_PROMPT_TOKENS = 256

# The llama-server timings kept per request (prompt_n, cache_n, ...).
REQUEST_TIMINGS = (
    "prompt_n",
    "cache_n",
    "prompt_ms",
    "prompt_per_second",
    "predicted_n",
    "predicted_ms",
    "predicted_per_second",
)
WARM_UP_TIMINGS = ("prompt_n", "cache_n", "prompt_ms")


@dataclass(frozen=True, slots=True)
class Prefix:
    """An agent's static prefix (system message and tools) as a slot holds it."""

    agent: str
    key: str
    entity_id: str
    #: The request that reads the prefix into a slot (given the slot).
    warm_up_request: Callable[[int], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class CacheMisses:
    """Chats in a row that re-read the static prefix their slot already held."""

    in_a_row: int
    #: The last such chat's tokens re-read and reused, and its prompt time.
    prompt_n: int
    cache_n: int
    prompt_ms: float


type PrefixSource = Callable[[], Awaitable[Prefix | None]]
type Scheduler = Callable[[Coroutine[Any, Any, None], str], None]


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SlotManager:
    """Pins chats to slots, knows what each slot holds, and warms slots."""

    def __init__(self, client: LlamaServerClient, schedule: Scheduler) -> None:
        """Send warm-ups with the client, as background tasks of `schedule`."""
        self._client = client
        self._schedule = schedule
        self._sources: dict[str, PrefixSource] = {}
        self._one_at_a_time = asyncio.Lock()
        self.total_slots = 0
        self.pinned: dict[tuple[str, str | None], int] = {}
        self.held: dict[int, tuple[str, str]] = {}
        #: The slot a warm-up request is being sent to right now.
        self.warming: int | None = None
        #: The key of the prefix each agent warmed last.
        self.warmed_keys: dict[str, str] = {}
        self.timings: deque[dict[str, Any]] = deque(maxlen=CHAT_TIMINGS_KEPT)
        self.warmups: deque[dict[str, Any]] = deque(maxlen=CHAT_TIMINGS_KEPT)
        #: Each agent's static prefix in tokens, as its last warm-up read it.
        self.prefix_tokens: dict[str, int] = {}
        #: Chats in a row that re-read a prefix their slot held (None: the last one
        #: on such a slot reused it).
        self.misses: CacheMisses | None = None
        self._listeners: list[Callable[[], None]] = []

    def sibling(self) -> SlotManager:
        """Return a slot manager for another model of a router.

        Its own slots; this one's client, timings and listeners (the server's
        sensors count every chat).
        """
        other = SlotManager(self._client, self._schedule)
        other.timings, other.warmups = self.timings, self.warmups
        other._listeners = self._listeners
        return other

    # What the coordinator says -------------------------------------------------

    def follow(self, total_slots: int) -> None:
        """Start over when the server has another slot count (it restarted)."""
        if total_slots != self.total_slots:
            self.pinned.clear()
            self.held.clear()
            self.total_slots = total_slots

    def server_back(self) -> None:
        """Warm every agent again: the server is back, its slots were emptied."""
        self.held.clear()
        for agent in list(self._sources):
            self.warm(agent)

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each chat and warm-up; return the undo."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # Agents ------------------------------------------------------------------

    def add_prefix_source(self, agent: str, source: PrefixSource) -> Callable[[], None]:
        """Let the slot manager warm this agent's prefix; return the undo."""
        self._sources[agent] = source

        def remove() -> None:
            if self._sources.get(agent) is source:
                del self._sources[agent]

        return remove

    def slot_for(self, agent: str, device_id: str | None) -> int:
        """Return the slot pinned to this agent and device."""
        key = (agent, device_id)
        if key not in self.pinned:
            used = Counter(self.pinned.values())
            self.pinned[key] = min(
                range(max(1, self.total_slots)), key=lambda s: (used[s], s)
            )
        return self.pinned[key]

    def record_request(
        self,
        slot: int,
        prefix: Prefix,
        timings: Mapping[str, Any],
        finish_reason: str | None,
        first_token_ms: float | None = None,
    ) -> None:
        """Keep a chat's timings; warm the agent's other slots if it was cold.

        `first_token_ms`: from sending the request to its first streamed chunk, as
        the agent measured it (the server's timings leave out queueing and HTTP).
        """
        if not timings:
            return
        if self._note(slot, prefix.agent, prefix.key, timings) and (
            prefix.agent in self._sources
        ):
            self.warm(prefix.agent, prefix)
        self.timings.append(
            {
                "time": _now(),
                "entity_id": prefix.entity_id,
                "slot": slot,
                "finish_reason": finish_reason,
                **{key: timings[key] for key in REQUEST_TIMINGS if key in timings},
                "first_token_ms": first_token_ms,
            }
        )
        self._changed()

    def _note(
        self, slot: int, agent: str, key: str, timings: Mapping[str, Any]
    ) -> bool:
        """Record that the slot holds the agent's prefix; return True if it was cold.

        A request that re-read more of its prompt than it reused found the slot
        without the prefix: the server restarted, or something else used the slot.
        What is known of the agent's other slots is then stale too. When that
        happens on slots that held exactly this prefix chat after chat, the server
        does not reuse its cache at all: counted in `misses`.
        """
        prompt_n = int(timings.get("prompt_n", 0))
        cache_n = int(timings.get("cache_n", 0))
        cold = prompt_n >= WARM_MIN_PROMPT_TOKENS and prompt_n > cache_n
        if self.held.get(slot) == (agent, key):
            before = self.misses.in_a_row if self.misses else 0
            prompt_ms = float(timings.get("prompt_ms", 0))
            self.misses = (
                CacheMisses(before + 1, prompt_n, cache_n, prompt_ms) if cold else None
            )
        if cold:
            self.forget(agent)
        self.held[slot] = (agent, key)
        return cold

    def claim_cold_slots(self, agent: str, key: str) -> list[int]:
        """Claim, for warming, the slots without a prefix or with an old one of ours."""
        claimed = [
            slot
            for slot in range(self.total_slots)
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

    # Warm-ups ------------------------------------------------------------------

    def warm_if_changed(self, prefix: Prefix) -> bool:
        """Warm the agent's prefix if it is not the one it warmed last; True if so.

        For changes in what the prefix is built from (exposed entities, tools): the
        slots that hold the old prefix of the agent are warmed, others' never.
        """
        if self.warmed_keys.get(prefix.agent) == prefix.key:
            return False
        self.warm(prefix.agent, prefix)
        return True

    def warm(self, agent: str, prefix: Prefix | None = None) -> None:
        """Warm the agent's prefix in the background (from its source if not given)."""
        self._schedule(self._async_warm(agent, prefix), f"warm-up of {agent}")

    async def _async_warm(self, agent: str, prefix: Prefix | None) -> None:
        """Put the static prefix on each slot that lacks it, one request at a time.

        The first chat on a warm slot evaluates only its context block and the
        user's words, not the thousands of tokens of instructions and tools. A
        failure only means that chat reads the prefix itself.
        """
        if prefix is None:
            if (source := self._sources.get(agent)) is None:
                return
            if (prefix := await source()) is None:
                return
        self.warmed_keys[agent] = prefix.key
        slots = self.claim_cold_slots(agent, prefix.key)
        async with self._one_at_a_time:
            for index, slot in enumerate(slots):
                self.warming = slot
                try:
                    timings = await self._client.async_prompt_timings(
                        prefix.warm_up_request(slot)
                    )
                except LlamaServerError as err:
                    self.forget(agent, slots[index:])
                    _LOGGER.debug("%s: slot %s not warmed: %s", agent, slot, err)
                    if isinstance(err, ContextOverflow):
                        self.prefix_tokens[agent] = err.tokens
                        self._changed()
                    return
                finally:
                    self.warming = None
                if "prompt_n" in timings:
                    self.prefix_tokens[agent] = int(timings["prompt_n"]) + int(
                        timings.get("cache_n", 0)
                    )
                self.warmups.append(
                    {
                        "time": _now(),
                        "entity_id": prefix.entity_id,
                        "slot": slot,
                        **{k: timings[k] for k in WARM_UP_TIMINGS if k in timings},
                    }
                )
                self._changed()

    async def async_warm_turn(
        self, prefix: Prefix, slot: int, request: dict[str, Any]
    ) -> None:
        """Read a coming turn's prompt, all but the user's words, into its slot.

        Sent when the user starts to speak: the chat after the transcript then
        reads only the words, not the context block before them (a second or
        more on a small CPU). A failure only leaves that to the chat.
        """
        async with self._one_at_a_time:
            self.warming = slot
            try:
                timings = await self._client.async_prompt_timings(request)
            except LlamaServerError as err:
                _LOGGER.debug("%s: turn not warmed: %s", prefix.agent, err)
                return
            finally:
                self.warming = None
        self.held[slot] = (prefix.agent, prefix.key)
        self.warmups.append(
            {
                "time": _now(),
                "entity_id": prefix.entity_id,
                "slot": slot,
                "turn": True,
                **{k: timings[k] for k in WARM_UP_TIMINGS if k in timings},
            }
        )
        self._changed()

    def as_dict(self) -> dict[str, Any]:
        """Return what diagnostics show: slots, recent request and warm-up timings."""
        return {
            "slots": [
                {"agent": agent, "device_id": device, "slot": slot}
                for (agent, device), slot in self.pinned.items()
            ],
            "held": [
                {"slot": slot, "agent": agent, "prefix": key}
                for slot, (agent, key) in sorted(self.held.items())
            ],
            "timings": list(self.timings),
            "warmups": list(self.warmups),
        }
