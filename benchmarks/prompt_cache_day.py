"""Prompt cache over a household's day: restarts, a change, waits counted.

100 new chats from 5 sources (4 satellites and the app), through core's `llama_cpp`
and through local_voice, each on a freshly started llama-server with the benchmark's
default flags. After chat 40 the server restarts; after chat 70 a new entity is
exposed (a porch light: the prompt changes for both agents).

What counts is what a chat waits for: the prompt tokens the server evaluates between
the moment the chat is sent and its answer. That is the chat's own `prompt_n`, plus
every local_voice warm-up that was still running when the chat was sent, or started
before it was answered (the loopback proxy records when each request ran). Warm-ups
that no chat overlapped are listed, not counted.

Spacing: chats follow each other at once, except after the start, the restart and the
change, where the next chat comes `--gap` seconds later (default 600: 100 chats in
16 waking hours are 10 minutes apart), or as soon as local_voice's warm-ups are done
if that is sooner (nothing else happens in between). How long those took here
is printed: noticing the restart (the 30 s poll), the debounce, the warm-ups.

The home, its sources and chats, and the server's flags are `prompt_cache.py`'s.

    .venv/bin/python benchmarks/prompt_cache_day.py [--chats 100] [--seed 3] [--gap 600]

The last line is `day_wait_ratio=<core / local_voice tokens evaluated while a chat
waits>`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from functools import partial
import json
from pathlib import Path
import random
import tempfile
import time

from prompt_cache import (
    SOURCES,
    TEXTS,
    Chat,
    agent_entry,
    arguments,
    conversation_agent,
    home_assistant,
    progress_line,
    response_timings,
    send_chat,
    server_argv,
    setup_home,
)

from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import (
    async_expose_entity,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar, entity_registry as er
from tests.backends import Backend, start
from tests.conversation_support import RecordingProxy

ORDERS = ("core", "local_voice")
EVENTS = ("start", "restart", "entity change")


@dataclass
class Request:
    """One request the server answered: a chat's or a warm-up's."""

    when: str  # the event or chat it followed ("start", "after #12", ...)
    warm_up: bool
    span: tuple[float, float]
    timings: dict[str, int]
    waited_by: int | None = None  # the chat that waited for this warm-up


@dataclass
class Day:
    """What one order did through the day."""

    requests: list[Request] = field(default_factory=list)
    chats: dict[int, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def make_day_plan(chats: int, seed: int) -> list[Chat]:
    """`chats` new chats from sources drawn by seed, in three phases."""
    rng = random.Random(seed)
    restart, change = day_events(chats)

    def phase(number: int) -> str:
        if number <= restart:
            return f"1-{restart}"
        if number <= change:
            return f"{restart + 1}-{change}"
        return f"{change + 1}-{chats}"

    return [
        Chat(phase(n), rng.choice(SOURCES), TEXTS[(n - 1) % len(TEXTS)])
        for n in range(1, chats + 1)
    ]


def day_events(chats: int) -> tuple[int, int]:
    """After which chats the server restarts and the entities change (40 %, 70 %)."""
    return max(1, chats * 40 // 100), max(2, chats * 70 // 100)


def _is_warm_up(body: bytes) -> bool:
    """local_voice's warm-up: the system message and an empty user turn."""
    return bool(json.loads(body)["messages"][-1] == {"role": "user", "content": ""})


async def _settle(proxy: RecordingProxy, mark: int, expected: int, gap: float) -> float:
    """Wait until `expected` warm-ups after exchange `mark` are answered, or `gap`
    seconds pass; return the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < gap:
        done = sum(_is_warm_up(body) for body, _ in proxy.exchanges[mark:])
        if done >= expected:
            break
        await asyncio.sleep(0.25)
    return time.monotonic() - began


async def _expose_porch_light(hass: HomeAssistant) -> None:
    """The day's change: a new light in the garden, exposed to Assist."""
    garden = ar.async_get(hass).async_get_area_by_name("Garden")
    assert garden is not None
    entities = er.async_get(hass)
    entry = entities.async_get_or_create(
        "light", "benchmark", "porch", suggested_object_id="porch"
    )
    entities.async_update_entity(
        entry.entity_id, area_id=garden.id, original_name="Porch light"
    )
    hass.states.async_set(entry.entity_id, "off", {"friendly_name": "Porch light"})
    async_expose_entity(hass, conversation.DOMAIN, entry.entity_id, True)


async def run_day(
    order: str, argv: list[str], logs: Path, plan: list[Chat], gap: float
) -> Day:
    """Send the day's chats through one order, with its restart and change."""
    day = Day()
    loop = asyncio.get_running_loop()
    name = f"llama-{order}-day"
    server: Backend = await loop.run_in_executor(None, start, name, argv, "http", logs)
    restart, change = day_events(len(plan))
    try:
        async with home_assistant() as hass, RecordingProxy(server.url) as proxy:
            satellites = await setup_home(hass)
            entry, platform = agent_entry(order, proxy.url)
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id), order
            slots = 0 if order == "core" else entry.runtime_data.slots.total_slots
            agent_id = conversation_agent(hass, platform)
            seen = 0
            for number, chat in enumerate([None, *plan]):
                event = None
                if number == 0:
                    event = "start"
                elif number == restart + 1:
                    event = "restart"
                    await loop.run_in_executor(None, server.stop)
                    server = await loop.run_in_executor(
                        None, partial(start, name, argv, "http", logs, port=server.port)
                    )
                elif number == change + 1:
                    event = "entity change"
                    await _expose_porch_light(hass)
                if event is not None:
                    waited = await _settle(proxy, seen, slots, gap)
                    day.notes.append(
                        f"{order}: {event}: next chat {waited:.0f} s later"
                        + (" (warm-ups done)" if slots and waited < gap else "")
                    )
                    seen = _collect(day, proxy, seen, event)
                if chat is None:
                    continue
                sent = time.monotonic()
                if error := await send_chat(hass, agent_id, chat, satellites):
                    day.notes.append(f"{order}: chat #{number}: {error}")
                day.chats[number] = (sent, time.monotonic())
                # What a chat set off in the background (a cold slot's warm-ups).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(gap):
                        await hass.async_block_till_done(wait_background_tasks=True)
                seen = _collect(day, proxy, seen, f"after #{number}")
                own = [
                    r
                    for r in day.requests
                    if r.when == f"after #{number}" and not r.warm_up
                ]
                if len(own) > 1:  # a retry (a timed-out request) would show here
                    day.notes.append(f"{order}: chat #{number}: {len(own)} requests")
                # None: answered from the home alone (local_voice's state answers).
                chat.timings[order] = own[0].timings if own else {}
                print(
                    progress_line(
                        order, f"#{number}", chat.source, chat.timings[order] or None
                    ),
                    flush=True,
                )
            await hass.config_entries.async_unload(entry.entry_id)
    finally:
        server.stop()
    _mark_waits(day)
    return day


def _collect(day: Day, proxy: RecordingProxy, seen: int, when: str) -> int:
    """Add the exchanges since `seen` to the day's requests; return the new mark."""
    for (body, answer), span in zip(
        proxy.exchanges[seen:], proxy.spans[seen:], strict=True
    ):
        warm_up = _is_warm_up(body)
        day.requests.append(Request(when, warm_up, span, response_timings(answer)))
        if warm_up:
            print(
                progress_line("", "warm-up", when, day.requests[-1].timings),
                flush=True,
            )
    return len(proxy.exchanges)


def _mark_waits(day: Day) -> None:
    """A warm-up that ran while a chat waited for its answer counts for that chat."""
    for request in day.requests:
        if not request.warm_up:
            continue
        for number, (sent, answered) in sorted(day.chats.items()):
            if request.span[0] < answered and request.span[1] > sent:
                request.waited_by = number
                break


def report(plan: list[Chat], days: dict[str, Day]) -> None:
    """Print the day's phases and the `day_wait_ratio` line (last)."""
    restart, change = day_events(len(plan))
    phases = [
        "start",
        plan[0].phase,
        "restart",
        plan[restart].phase,
        "entity change",
        plan[change].phase,
    ]
    print()
    for day in days.values():
        for note in day.notes:
            print(note)
    print()
    print(
        "| phase | chats | core evaluated | local_voice evaluated"
        " | local_voice warm-ups, waited for | local_voice warm-ups, not waited for |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    waited_total = dict.fromkeys(ORDERS, 0)
    chat_total = dict.fromkeys(ORDERS, 0)
    # Compared where both sent a request: a chat local_voice answered from the
    # states alone (no prompt at all) would only flatter it.
    counted = [c for c in plan if all(c.timings[order] for order in ORDERS)]
    if skipped := len(plan) - len(counted):
        print(f"{skipped} chats without a request on one side: not counted below")
    for phase in phases:
        chats = [c for c in counted if c.phase == phase]
        evaluated = {
            order: sum(c.timings[order]["prompt_n"] for c in chats) for order in ORDERS
        }
        requests = [
            r
            for r in days["local_voice"].requests
            if r.warm_up and _phase_of(r, plan) == phase
        ]
        waited = sum(r.timings["prompt_n"] for r in requests if r.waited_by)
        idle = sum(r.timings["prompt_n"] for r in requests if not r.waited_by)
        for order in ORDERS:
            chat_total[order] += evaluated[order]
        waited_total["local_voice"] += waited
        print(
            f"| {phase} | {len(chats) or ''} | {evaluated['core'] if chats else ''}"
            f" | {evaluated['local_voice'] if chats else ''}"
            f" | {waited} ({sum(1 for r in requests if r.waited_by)})"
            f" | {idle} ({sum(1 for r in requests if not r.waited_by)}) |"
        )
    core = chat_total["core"]
    ours = chat_total["local_voice"] + waited_total["local_voice"]
    print(
        f"| all | {len(plan)} | {core} | {chat_total['local_voice']}"
        f" | {waited_total['local_voice']} | |"
    )
    print()
    print(
        f"tokens evaluated while a chat waits: core {core},"
        f" local_voice {ours} ({chat_total['local_voice']} for chats,"
        f" {waited_total['local_voice']} for warm-ups they waited for)"
    )
    print(f"day_wait_ratio={core / max(1, ours):.1f}")


def _phase_of(request: Request, plan: list[Chat]) -> str:
    """The phase a request belongs to: an event's, or the chat's it followed."""
    if request.when in EVENTS:
        return request.when
    return plan[int(request.when.removeprefix("after #")) - 1].phase


def main() -> None:
    parser = arguments(__doc__, 100, "new chats (100)")
    parser.add_argument(
        "--gap",
        type=float,
        default=600,
        help="seconds from a restart or change to the next chat, at most",
    )
    args = parser.parse_args()
    argv = server_argv(args.cache_ram)
    plan = make_day_plan(args.chats, args.seed)
    days: dict[str, Day] = {}
    with tempfile.TemporaryDirectory() as logs:
        for order in ORDERS:
            print(f"{order}: fresh llama-server: {' '.join(argv[3:])}", flush=True)
            days[order] = asyncio.run(run_day(order, argv, Path(logs), plan, args.gap))
    report(plan, days)


if __name__ == "__main__":
    main()
