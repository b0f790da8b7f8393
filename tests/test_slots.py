"""The slot manager on its own: pinning, what each slot holds, warm-ups.

No Home Assistant here (the autouse fixture that starts it is overridden); warm-ups
go to a real llama-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest

from custom_components.local_voice.llama_server.client import LlamaServerClient
from custom_components.local_voice.slots import Prefix, SlotManager

from .backends import Backend, free_port


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the suite's Home Assistant set-up: nothing here needs it."""


class Tasks:
    """Runs what the slot manager schedules, and waits for it."""

    def __init__(self) -> None:
        """Start with nothing running."""
        self.tasks: list[asyncio.Task[None]] = []

    def __call__(self, job: Coroutine[Any, Any, None], name: str) -> None:
        """Schedule like `entry.async_create_background_task`."""
        self.tasks.append(asyncio.create_task(job, name=name))

    async def wait(self) -> None:
        """Wait for everything scheduled so far."""
        await asyncio.gather(*self.tasks)


def _slots(total: int, url: str = "http://127.0.0.1:1") -> SlotManager:
    manager = SlotManager(LlamaServerClient(None, url), Tasks())  # type: ignore[arg-type]
    manager.follow(total)
    return manager


def _prefix(agent: str, key: str) -> Prefix:
    return Prefix(agent, key, f"conversation.{agent}", lambda slot: {"id_slot": slot})


def test_slots_pinned_and_spread() -> None:
    """Each (agent, device) keeps its slot; new ones take the least used slot."""
    slots = _slots(2)
    assert slots.slot_for("agent", "kitchen") == 0
    assert slots.slot_for("agent", "bedroom") == 1
    assert slots.slot_for("agent", None) == 0
    assert slots.slot_for("agent", "office") == 1
    assert slots.slot_for("agent", "kitchen") == 0
    assert slots.slot_for("agent", "bedroom") == 1
    assert slots.slot_for("other agent", "kitchen") == 0
    # The server restarted with another slot count: start over.
    slots.follow(4)
    assert slots.slot_for("agent", "bedroom") == 0
    assert slots.slot_for("agent", "kitchen") == 1
    assert slots.as_dict()["slots"][0] == {
        "agent": "agent",
        "device_id": "bedroom",
        "slot": 0,
    }


def test_slots_to_warm() -> None:
    """An agent warms empty slots and its own stale ones, never another agent's."""
    slots = _slots(3)
    assert slots.claim_cold_slots("agent", "v1") == [0, 1, 2]
    assert slots.claim_cold_slots("agent", "v1") == []  # claimed: warm or warming
    # The AI task used slot 2: it holds another prefix now.
    slots.record_request(2, _prefix("ai task", "t1"), {"prompt_n": 900}, "stop")
    # The exposed devices changed: the conversation's prefix is v2 on slot 0 now.
    warm = {"prompt_n": 40, "cache_n": 3000}
    slots.record_request(0, _prefix("agent", "v2"), warm, "stop")
    assert slots.claim_cold_slots("agent", "v2") == [1]
    # A chat that re-read its prefix: the server lost it; our other slots are stale.
    cold = {"prompt_n": 3040, "cache_n": 0}
    slots.record_request(1, _prefix("agent", "v2"), cold, "stop")
    assert slots.claim_cold_slots("agent", "v2") == [0]
    slots.forget("agent", [0])
    assert slots.as_dict()["held"] == [
        {"slot": 1, "agent": "agent", "prefix": "v2"},
        {"slot": 2, "agent": "ai task", "prefix": "t1"},
    ]
    assert [t["slot"] for t in slots.timings] == [2, 0, 1]
    # Another slot count: the server restarted; nothing is known.
    slots.follow(2)
    assert slots.claim_cold_slots("agent", "v2") == [0, 1]


async def test_warm_ups_one_slot_at_a_time(llama_chat_server: Backend) -> None:
    """Told to warm, it puts the prefix on each cold slot; when the server is back
    it warms again; a chat that found its slot cold warms the agent's others."""
    async with aiohttp.ClientSession() as session:
        tasks = Tasks()
        slots = SlotManager(LlamaServerClient(session, llama_chat_server.url), tasks)
        slots.follow(2)
        system = "You are a voice assistant. " * 40
        prefix = Prefix(
            "agent",
            "v1",
            "conversation.agent",
            lambda slot: {
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": ""},
                ],
                "id_slot": slot,
                "cache_prompt": True,
                "max_tokens": 1,
                "stream": True,
            },
        )
        sources: list[str] = []

        async def source() -> Prefix:
            sources.append("asked")
            return prefix

        remove = slots.add_prefix_source("agent", source)
        slots.warm("agent")
        await tasks.wait()
        assert [w["slot"] for w in slots.warmups] == [0, 1]
        assert slots.warming is None
        assert slots.held == {0: ("agent", "v1"), 1: ("agent", "v1")}
        slots.warm("agent")  # all warm: nothing is sent
        await tasks.wait()
        assert len(slots.warmups) == 2

        slots.server_back()
        await tasks.wait()
        assert [w["slot"] for w in slots.warmups] == [0, 1, 0, 1]
        assert len(sources) == 3

        slots.record_request(0, prefix, {"prompt_n": 400, "cache_n": 0}, "stop")
        await tasks.wait()
        assert [w["slot"] for w in slots.warmups][-1] == 1
        assert len(sources) == 3  # the chat's own prefix was used

        remove()
        slots.server_back()
        await tasks.wait()
        assert len(slots.warmups) == 5  # no source, no warm-up


async def test_failed_warm_up_forgets_its_claims() -> None:
    """Nothing listening: no warm-up recorded, no slot believed warm."""
    async with aiohttp.ClientSession() as session:
        tasks = Tasks()
        client = LlamaServerClient(session, f"http://127.0.0.1:{free_port()}")
        slots = SlotManager(client, tasks)
        slots.follow(2)
        slots.warm("agent", _prefix("agent", "v1"))
        await tasks.wait()
    assert not slots.warmups
    assert slots.held == {}


async def test_warm_if_changed(llama_chat_server: Backend) -> None:
    """A prefix is warmed when its key is new, on the agent's slots only."""
    async with aiohttp.ClientSession() as session:
        tasks = Tasks()
        slots = SlotManager(LlamaServerClient(session, llama_chat_server.url), tasks)
        slots.follow(2)

        def prefix(key: str) -> Prefix:
            return Prefix(
                "agent",
                key,
                "conversation.agent",
                lambda slot: {
                    "messages": [
                        {"role": "system", "content": f"Prefix {key}."},
                        {"role": "user", "content": ""},
                    ],
                    "id_slot": slot,
                    "max_tokens": 1,
                    "stream": True,
                },
            )

        # The AI task used slot 1: it holds another agent's prefix.
        slots.record_request(1, _prefix("ai task", "t1"), {"prompt_n": 90}, "stop")
        assert slots.warm_if_changed(prefix("v1"))
        await tasks.wait()
        assert [w["slot"] for w in slots.warmups] == [0]
        assert not slots.warm_if_changed(prefix("v1"))  # the same key: nothing
        assert slots.warm_if_changed(prefix("v2"))
        await tasks.wait()
        assert [w["slot"] for w in slots.warmups] == [0, 0]
        assert slots.held == {0: ("agent", "v2"), 1: ("ai task", "t1")}
