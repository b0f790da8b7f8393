"""The server checks on their own: what counts as a problem, and its numbers.

No Home Assistant here: the decisions on made-up /props and chat timings, and what
the slot manager learns of a prefix from a real llama-server's warm-up.
"""

from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path
from string import Formatter

import aiohttp
import pytest

from custom_components.local_voice.llama_server.client import (
    LlamaServerClient,
    ServerProps,
)
from custom_components.local_voice.server_checks import (
    KINDS,
    ServerState,
    context_for,
    find_problems,
)
from custom_components.local_voice.slots import CacheMisses, Prefix, SlotManager

from .backends import Backend
from .test_slots import Tasks, _prefix, _slots

PROPS = ServerProps(
    model="model.gguf",
    n_ctx=4096,
    total_slots=2,
    supports_tools=True,
    supports_vision=False,
    build="b1",
)
HEALTHY = ServerState(
    props=PROPS,
    prefix_tokens=2000,
    tool_agents=1,
    conversations=2,
    misses=None,
    addon=False,
)
# Every problem at once: no tool support, a big prefix, 3 conversations, 2 misses.
BROKEN = replace(
    HEALTHY,
    props=replace(PROPS, supports_tools=False),
    prefix_tokens=3500,
    conversations=3,
    misses=CacheMisses(2, 2100, 4, 3456.0),
)


# A router whose agents use three models, keeps two loaded, and lacks one of them.
ROUTER = replace(
    HEALTHY,
    props=replace(
        PROPS,
        models=(("a", "loaded"), ("b", "loaded"), ("c", "unloaded")),
        models_max=2,
    ),
    models_used=("a", "b", "gone", "a"),
)
ROUTER_KINDS = ["models_switch", "model_missing"]
PLAIN_KINDS = [kind for kind in KINDS if kind not in ROUTER_KINDS]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Override the suite's Home Assistant set-up: nothing here needs it."""


def _kinds(state: ServerState) -> list[str]:
    return [problem.translation_key for problem in find_problems(state)]


def test_healthy_server_has_no_problem() -> None:
    """Room for the prefix and a conversation, tools, a cache, a slot each."""
    assert find_problems(HEALTHY) == []
    # Nothing known yet of the prefix or the cache: nothing to report either.
    assert find_problems(replace(HEALTHY, prefix_tokens=None)) == []


def test_each_problem_and_its_wording() -> None:
    """Every kind, worded for llama-server's flags or for the add-on's options."""
    assert [p.kind for p in find_problems(BROKEN)] == PLAIN_KINDS
    assert _kinds(BROKEN) == PLAIN_KINDS
    assert _kinds(replace(BROKEN, addon=True)) == [f"{k}_addon" for k in PLAIN_KINDS]
    assert _kinds(ROUTER) == ROUTER_KINDS
    assert _kinds(replace(ROUTER, addon=True)) == [f"{k}_addon" for k in ROUTER_KINDS]
    numbers = {p.kind: p.placeholders for p in find_problems(BROKEN)}
    assert numbers["context_too_small"] == {
        "prefix": "3500",
        "room": "1024",
        "needed": "4524",
        "n_ctx": "4096",
        "slots": "2",
        "context": "9216",
    }
    assert numbers["cache_not_reused"] == {
        "model": "model.gguf",
        "chats": "2",
        "prompt_n": "2100",
        "cache_n": "4",
        "seconds": "3.5",
    }
    assert numbers["slots_shared"]["context"] == "12288"
    # The template writes the time: that cause is named, whoever runs the server.
    clock = replace(BROKEN, props=replace(BROKEN.props, template_reads_clock=True))
    assert "cache_not_reused_clock" in _kinds(replace(clock, addon=True))


def test_every_wording_has_its_text() -> None:
    """Each issue's title and text in strings.json take exactly its placeholders."""
    strings = json.loads(
        (
            Path(__file__).parent.parent / "custom_components/local_voice/strings.json"
        ).read_text()
    )["issues"]
    clock = replace(BROKEN, props=replace(BROKEN.props, template_reads_clock=True))
    problems = [
        *find_problems(BROKEN),
        *find_problems(replace(BROKEN, addon=True)),
        *find_problems(clock),
        *find_problems(ROUTER),
        *find_problems(replace(ROUTER, addon=True)),
        # Once a turn waited for a load, the switch repair says how long.
        *find_problems(replace(ROUTER, load_seconds=2.34)),
        *find_problems(replace(ROUTER, addon=True, load_seconds=2.34)),
    ]
    assert {p.translation_key for p in problems} == set(strings)
    for problem in problems:
        placeholders = {"server": "Qwen", "url": "http://host:8080"}
        placeholders |= problem.placeholders
        issue = strings[problem.translation_key]
        # A fixable issue's text is its fix flow's (repairs.py adds "agents").
        if "fix_flow" in issue:
            placeholders["agents"] = "Local Voice conversation"
            issue = {"title": issue["title"], **issue["fix_flow"]["step"]["init"]}
            issue.pop("data")
        for text in issue.values():
            used = {name for _, name, _, _ in Formatter().parse(text) if name}
            assert used <= set(placeholders), (problem.translation_key, used)
        assert set(problem.placeholders) <= {
            name for _, name, _, _ in Formatter().parse(issue["description"])
        }, problem.translation_key


def test_router_problems_and_their_numbers() -> None:
    """Agents on more models than the router keeps, or on one it lacks."""
    numbers = {p.kind: (p.placeholders, p.error) for p in find_problems(ROUTER)}
    assert numbers["models_switch"] == (
        {"count": "3", "models": "a, b, gone", "models_max": "2"},
        False,
    )
    assert numbers["model_missing"] == ({"missing": "gone", "models": "a, b, c"}, True)
    # Once a turn waited for a load, its wait is said too.
    measured = find_problems(replace(ROUTER, load_seconds=2.34))[0]
    assert measured.translation_key == "models_switch_measured"
    assert measured.placeholders["load_seconds"] == "2.3"
    # As many models as it keeps, all of them on the router: nothing to report;
    # no limit (--models-max 0) neither; a server of one model is never judged so.
    fine = replace(ROUTER, models_used=("a", "b", "a"))
    assert find_problems(fine) == []
    unlimited = replace(ROUTER, props=replace(ROUTER.props, models_max=0))
    assert _kinds(unlimited) == ["model_missing"]
    assert find_problems(replace(HEALTHY, models_used=("x", "y", "z"))) == []


def test_severity() -> None:
    """A prefix that leaves no room at all is an error; the rest are warnings."""
    tight = find_problems(replace(HEALTHY, prefix_tokens=3500))
    assert [p.error for p in tight] == [False]
    full = find_problems(replace(HEALTHY, prefix_tokens=5000))
    assert [p.error for p in full] == [True]
    # Tools matter only to agents that offer them; one cache miss is a restart.
    assert (
        find_problems(
            replace(
                HEALTHY,
                props=replace(PROPS, supports_tools=False),
                tool_agents=0,
                misses=CacheMisses(1, 2000, 0, 1.0),
            )
        )
        == []
    )


def test_context_for_rounds_up() -> None:
    """The advised `-c` gives every slot what it needs, in steps of 1024."""
    assert context_for(1924, 2) == 4096
    assert context_for(2048, 2) == 4096
    assert context_for(2049, 1) == 3072


def test_a_restart_is_not_a_broken_cache() -> None:
    """One chat that re-read the prefix its slot held is counted, a warm one resets;
    chats that found their slot cold without our prefix on it do not count."""
    slots = _slots(2)
    changes: list[None] = []
    remove = slots.add_listener(lambda: changes.append(None))
    prefix = _prefix("agent", "v1")
    cold = {"prompt_n": 900, "cache_n": 0, "prompt_ms": 4500.0}
    warm = {"prompt_n": 20, "cache_n": 880}
    slots.record_request(0, prefix, cold, "stop")  # nothing held: first chat
    assert slots.misses is None
    slots.record_request(0, prefix, cold, "stop")  # held ours, re-read: 1
    assert slots.misses == CacheMisses(1, 900, 0, 4500.0)
    slots.record_request(0, prefix, warm, "stop")
    assert slots.misses is None
    slots.record_request(0, prefix, cold, "stop")
    slots.record_request(0, prefix, cold | {"prompt_n": 950}, "stop")
    assert slots.misses == CacheMisses(2, 950, 0, 4500.0)
    # Another agent's prefix was on slot 1: its re-read is no cache fault.
    slots.record_request(1, _prefix("other", "o1"), warm, "stop")
    slots.record_request(1, prefix, cold, "stop")
    assert slots.misses == CacheMisses(2, 950, 0, 4500.0)
    assert len(changes) == 7
    remove()
    slots.record_request(0, prefix, warm, "stop")
    assert len(changes) == 7


async def test_prefix_size_from_warm_ups(llama_chat_server: Backend) -> None:
    """A warm-up's timings give the prefix size; one over the context, its error."""
    async with aiohttp.ClientSession() as session:
        tasks = Tasks()
        slots = SlotManager(LlamaServerClient(session, llama_chat_server.url), tasks)
        slots.follow(1)

        def prefix(agent: str, words: int) -> Prefix:
            system = "Answer briefly. " * words
            return Prefix(
                agent,
                "v1",
                f"conversation.{agent}",
                lambda slot: {
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": ""},
                    ],
                    "id_slot": slot,
                    "max_tokens": 1,
                    "stream": True,
                },
            )

        slots.warm("short", prefix("short", 20))
        await tasks.wait()
        assert 40 < slots.prefix_tokens["short"] < 100
        slots.follow(2)  # a fresh slot for the next agent
        # The server's slots hold 4096 tokens: this one is refused, counted.
        slots.warm("long", prefix("long", 2000))
        await tasks.wait()
        assert slots.prefix_tokens["long"] > 4096
        assert len(slots.warmups) == 1
