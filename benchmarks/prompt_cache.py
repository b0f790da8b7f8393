"""Prompt cache: tokens llama-server evaluates per new chat, local_voice vs llama_cpp.

Starts the real llama-server (Qwen2.5-Coder-0.5B, `--parallel 2`, 8192 tokens a
slot) and a Home Assistant with Assist over a realistic home (37 exposed entities in
7 areas, 4 voice satellites that can run timers, plus chats from the app without a
device). Then sends the same sequence of new chats twice, each time on a freshly
started server:

* through Home Assistant's own `llama_cpp` integration (the installed core one, run
  as is: system prompt as Home Assistant assembles it, tools in Home Assistant's order,
  no slot), and
* through local_voice's conversation agent (static system prompt and canonical tool
  block first, volatile context on the newest user turn, requests pinned to slots).

A loopback proxy in front of the server reads `timings.prompt_n` (tokens evaluated)
and `timings.cache_n` (tokens reused from cache) of every response. The sequence: a
"first" round, one new chat from each source (as after the server starts, or after
anything in the prompt changed), then a "later" round of new chats from sources drawn
with a fixed seed. Answers are capped at 2 tokens: only prompt processing is compared.

local_voice puts its static prefix on every slot when Home Assistant starts (and
again when the server comes back, or when a chat found its slot cold). Those warm-up
requests are no chat: nobody waits for them. The benchmark lets the start-up warm-up
finish before the first chat, as it does long before anyone speaks, and reports its
tokens on their own line, with the ratio they give when counted in.

llama-server b11669 keeps finished prompts in host memory (`--cache-ram`, 8 GiB by
default) and restores the best match into a slot: with it, Home Assistant's own
per-satellite prompts are found again once each satellite has spoken. `--cache-ram 0`
runs the server with slot caches only (as older builds, or a host short of RAM).

    .venv/bin/python benchmarks/prompt_cache.py [--chats 10] [--seed 3] [--cache-ram N]
        [--language ja]

With `--language ja` the same chats are said in Japanese (the pipeline's language
`ja`): local_voice's prefix is the same as in English, only the context block asks
for Japanese answers.

The last line is `prompt_cache_ratio=<core tokens evaluated / local_voice tokens
evaluated>` over all the new chats (warm-ups not counted: the line before counts them).

`prompt_cache_day.py` runs a household's day on the same home: 100 new chats, a server
restart after chat 40, a newly exposed entity after chat 70; its last line is
`day_wait_ratio=`: prompt tokens evaluated while a chat waits, core over local_voice.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import random
import sys
import tempfile
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Home Assistant first: it must install its voluptuous shim before anything else.
from homeassistant import loader  # noqa: E402, I001
import aiohttp  # noqa: E402
from homeassistant.components import conversation  # noqa: E402
from homeassistant.components.homeassistant.exposed_entities import (  # noqa: E402
    async_expose_entity,
)
from homeassistant.config_entries import ConfigSubentryData  # noqa: E402
from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT  # noqa: E402
from homeassistant.core import Context, HomeAssistant  # noqa: E402
from homeassistant.helpers import (  # noqa: E402
    device_registry as dr,
    entity_registry as er,
    llm,
)
from homeassistant.setup import async_setup_component  # noqa: E402
from pytest_homeassistant_custom_component.common import (  # noqa: E402
    MockConfigEntry,
    async_test_home_assistant,
)

from custom_components.local_voice.const import (  # noqa: E402
    CONF_MAX_TOKENS,
    CONF_TEMPERATURE,
    CONF_TOP_P,
)
from home import create_areas  # noqa: E402
from tests.backends import (  # noqa: E402
    QWEN,
    QWEN_TEMPLATE,
    async_until_loaded,
    llama_argv,
    router_argv,
    start,
)
from tests.common import llama_entry  # noqa: E402
from tests.conversation_support import RecordingProxy  # noqa: E402

AREAS = {
    "kitchen": ("Kitchen", "ground"),
    "living_room": ("Living Room", "ground"),
    "hallway": ("Hallway", "ground"),
    "office": ("Office", "first"),
    "bedroom": ("Bedroom", "first"),
    "bathroom": ("Bathroom", "first"),
    "garden": ("Garden", None),
}
FLOORS = {"ground": "Ground floor", "first": "First floor"}

# (entity_id, name, area, state, attributes): 37 entities, the kind a home exposes.
ENTITIES: list[tuple[str, str, str, str, dict[str, Any]]] = [
    ("light.kitchen_ceiling", "Kitchen ceiling", "kitchen", "on", {"brightness": 200}),
    ("light.kitchen_counter", "Kitchen counter", "kitchen", "off", {}),
    ("light.living_room_lamp", "Living room lamp", "living_room", "on", {}),
    ("light.living_room_ceiling", "Living room ceiling", "living_room", "off", {}),
    ("light.hallway", "Hallway light", "hallway", "off", {}),
    ("light.office_desk", "Desk lamp", "office", "on", {"brightness": 120}),
    ("light.bedroom", "Bedroom light", "bedroom", "off", {}),
    ("light.bathroom_mirror", "Mirror light", "bathroom", "off", {}),
    ("light.garden_path", "Garden path lights", "garden", "off", {}),
    ("switch.coffee_machine", "Coffee machine", "kitchen", "off", {}),
    ("switch.dishwasher", "Dishwasher", "kitchen", "on", {}),
    ("switch.office_monitor", "Monitor", "office", "on", {}),
    ("switch.garden_pump", "Garden pump", "garden", "off", {}),
    ("sensor.kitchen_temperature", "Kitchen temperature", "kitchen", "21.3", {}),
    (
        "sensor.living_room_temperature",
        "Living room temperature",
        "living_room",
        "21.8",
        {},
    ),
    ("sensor.bedroom_temperature", "Bedroom temperature", "bedroom", "19.2", {}),
    ("sensor.bathroom_humidity", "Bathroom humidity", "bathroom", "64", {}),
    ("sensor.outdoor_temperature", "Outdoor temperature", "garden", "8.4", {}),
    ("sensor.office_co2", "Office CO2", "office", "712", {}),
    ("binary_sensor.front_door", "Front door", "hallway", "off", {}),
    ("binary_sensor.back_door", "Back door", "kitchen", "off", {}),
    ("binary_sensor.hallway_motion", "Hallway motion", "hallway", "on", {}),
    ("binary_sensor.bathroom_window", "Bathroom window", "bathroom", "on", {}),
    (
        "climate.living_room",
        "Living room thermostat",
        "living_room",
        "heat",
        {"temperature": 21, "current_temperature": 21.8},
    ),
    (
        "climate.bedroom",
        "Bedroom thermostat",
        "bedroom",
        "heat",
        {"temperature": 19, "current_temperature": 19.2},
    ),
    (
        "cover.living_room_blinds",
        "Living room blinds",
        "living_room",
        "open",
        {"current_position": 100},
    ),
    (
        "cover.bedroom_blinds",
        "Bedroom blinds",
        "bedroom",
        "closed",
        {"current_position": 0},
    ),
    ("cover.garage_door", "Garage door", "garden", "closed", {}),
    ("fan.bedroom", "Bedroom fan", "bedroom", "off", {}),
    ("fan.bathroom_extractor", "Bathroom extractor", "bathroom", "on", {}),
    (
        "media_player.living_room_tv",
        "Living room TV",
        "living_room",
        "playing",
        {"media_title": "News", "volume_level": 0.3},
    ),
    ("media_player.kitchen_speaker", "Kitchen speaker", "kitchen", "idle", {}),
    ("media_player.office_speaker", "Office speaker", "office", "paused", {}),
    ("lock.front_door", "Front door lock", "hallway", "locked", {}),
    ("lock.back_door", "Back door lock", "kitchen", "unlocked", {}),
    ("vacuum.robot", "Robot vacuum", "living_room", "docked", {}),
    ("todo.shopping_list", "Shopping list", "kitchen", "3", {}),
]
DOMAINS = sorted({entity_id.split(".")[0] for entity_id, *_ in ENTITIES})

# The model's name on a router (--router): its section in the generated preset.
ROUTER_MODEL = "qwen"
SATELLITES = ["kitchen", "living_room", "office", "bedroom"]  # voice satellites
SOURCES = [*SATELLITES, "app"]  # "app": a chat from the phone, no device
TEXTS = [
    "Turn off the lights",
    "What's the temperature outside?",
    "Is the front door locked?",
    "Set a timer for ten minutes",
    "Close the blinds",
    "Add milk to the shopping list",
    "How warm is it in here?",
    "Pause the music",
    "Turn on the coffee machine",
    "Is the garage door open?",
    "Start the robot vacuum",
    "Dim the lights to thirty percent",
    "What's on the TV?",
    "Is the bathroom window open?",
]
# The same requests as a Japanese household says them (--language ja): the home's
# names stay as they are, as in a home set up in English.
JAPANESE_TEXTS = [
    "電気を消して",
    "外の気温は?",
    "Front doorは閉まってる?",
    "10分のタイマーをセットして",
    "ブラインドを閉めて",
    "買い物リストに牛乳を追加して",
    "ここは何度?",
    "音楽を一時停止して",
    "Coffee machineをつけて",
    "Garage doorは開いてる?",
    "ロボット掃除機をスタートして",
    "電気を30パーセントにして",
    "テレビで何が流れてる?",
    "Bathroom windowは開いてる?",
]


@dataclass
class Chat:
    """One new chat and what the server said about its first request."""

    phase: str
    source: str
    text: str
    timings: dict[str, dict[str, int]] = field(default_factory=dict)
    language: str = "en"


@dataclass
class WarmUp:
    """One of local_voice's slot warm-ups: when, which slot, what it cost."""

    when: str
    slot: int
    timings: dict[str, int]


def response_timings(body: bytes) -> dict[str, int]:
    """`timings` of a chat response, streamed (last SSE chunk) or not."""
    documents = [body]
    if b"data: " in body:  # SSE (after any ": keep-alive" comments)
        documents = [
            line.removeprefix(b"data: ")
            for line in body.split(b"\n")
            if line.startswith(b"data: {")
        ]
    for document in reversed(documents):
        with contextlib.suppress(ValueError):
            if timings := json.loads(document).get("timings"):
                return {"prompt_n": timings["prompt_n"], "cache_n": timings["cache_n"]}
    return {"prompt_n": 0, "cache_n": 0}


async def setup_home(hass: HomeAssistant) -> dict[str, str]:
    """Areas, exposed entities and satellites; return the satellites' device ids."""
    for component in ("homeassistant", "conversation", "intent", "llm", *DOMAINS):
        assert await async_setup_component(hass, component, {}), component
    area_ids = create_areas(hass, FLOORS, AREAS)
    entities = er.async_get(hass)
    for entity_id, name, area, state, attributes in ENTITIES:
        domain, object_id = entity_id.split(".")
        entry = entities.async_get_or_create(
            domain, "benchmark", object_id, suggested_object_id=object_id
        )
        entities.async_update_entity(
            entry.entity_id, area_id=area_ids[area], original_name=name
        )
        hass.states.async_set(
            entry.entity_id, state, {"friendly_name": name, **attributes}
        )
        async_expose_entity(hass, conversation.DOMAIN, entry.entity_id, True)

    from homeassistant.components.intent import (  # noqa: PLC0415
        async_register_timer_handler,
    )

    owner = MockConfigEntry(domain="benchmark_satellites")
    owner.add_to_hass(hass)
    devices = dr.async_get(hass)
    satellites = {}
    for key in SATELLITES:
        device = devices.async_get_or_create(
            config_entry_id=owner.entry_id,
            identifiers={("benchmark_satellites", key)},
            name=f"{AREAS[key][0]} satellite",
        )
        devices.async_update_device(device.id, area_id=area_ids[key])
        async_register_timer_handler(hass, device.id, lambda *_: None)
        satellites[key] = device.id
    return satellites


def core_entry(url: str, model: str = "local-model", **options: Any) -> MockConfigEntry:
    """Home Assistant's own llama_cpp integration, recommended settings, Assist on.

    `options` replace the answer options (2 tokens at temperature 0: prompts only);
    `model` is the model it names (a router's model, with --router).
    """
    answer = {"max_tokens": 2, "temperature": 0.0, "top_p": 1.0} | options
    return MockConfigEntry(
        domain="llama_cpp",
        title="llama.cpp",
        data={"base_url": f"{url}/v1"},
        subentries_data=[
            ConfigSubentryData(
                subentry_type="conversation",
                title="llama.cpp conversation",
                data={
                    "recommended": True,
                    "chat_model": model,
                    CONF_PROMPT: llm.DEFAULT_INSTRUCTIONS_PROMPT,
                    CONF_LLM_HASS_API: [llm.LLM_API_ASSIST],
                    **answer,
                },
                unique_id=None,
            )
        ],
    )


def agent_entry(
    order: str, url: str, model: str | None = None
) -> tuple[MockConfigEntry, str]:
    """The config entry of one order's agent, and the platform of its entities."""
    if order == "core":
        return core_entry(url, model or "local-model"), "llama_cpp"
    options = {CONF_MAX_TOKENS: 2, CONF_TEMPERATURE: 0.0, CONF_TOP_P: 1.0}
    return llama_entry(url, options), "local_voice"


def conversation_agent(hass: HomeAssistant, platform: str) -> str:
    """The entity id of the platform's conversation agent."""
    return next(
        e.entity_id
        for e in er.async_get(hass).entities.values()
        if e.platform == platform and e.domain == "conversation"
    )


async def send_chat(
    hass: HomeAssistant, agent_id: str, chat: Chat, satellites: dict[str, str]
) -> Exception | None:
    """Send one new chat from its source; return what went wrong, if anything."""
    try:
        await conversation.async_converse(
            hass,
            chat.text,
            None,
            Context(),
            language=chat.language,
            agent_id=agent_id,
            device_id=satellites.get(chat.source),
        )
    except Exception as err:  # the answer does not matter, its prompt does
        return err
    return None


@contextlib.asynccontextmanager
async def home_assistant() -> AsyncIterator[HomeAssistant]:
    """A test Home Assistant that may load custom_components."""
    with tempfile.TemporaryDirectory() as config_dir:
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)
            yield hass


async def run(
    order: str, server_url: str, plan: list[Chat], router: bool = False
) -> list[WarmUp]:
    """Send the plan's new chats through one order; fill in their timings.

    Return the slot warm-ups local_voice sent (core sends none). On a router, the
    model is loaded first: local_voice asks for it at start, core's is loaded here.
    """
    async with home_assistant() as hass, RecordingProxy(server_url) as proxy:
        satellites = await setup_home(hass)
        entry, platform = agent_entry(
            order, proxy.url, ROUTER_MODEL if router else None
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id), order
        if router:
            await _async_router_loaded(server_url, ask=order == "core")
            if order == "local_voice":
                await entry.runtime_data.coordinator.async_refresh()
        # Let local_voice's start-up warm-up finish, as it does before anyone speaks.
        await hass.async_block_till_done(wait_background_tasks=True)
        warm_ups: list[WarmUp] = []
        seen = 0
        # local_voice's slot manager records each warm-up it sent (core sends none).
        recorded = entry.runtime_data.slots.warmups if platform == "local_voice" else []
        listed: set[tuple[str, int]] = set()

        def new_chat_request(when: str) -> dict[str, int] | None:
            """List the warm-ups since the last call; return the chat's own timings.

            A chat's first request is answered before any warm-up it causes starts.
            """
            nonlocal seen
            exchanges, seen = proxy.exchanges[seen:], len(proxy.exchanges)
            new = [w for w in recorded if (w["time"], w["slot"]) not in listed]
            listed.update((w["time"], w["slot"]) for w in new)
            for record in new:
                timings = {"prompt_n": record["prompt_n"], "cache_n": record["cache_n"]}
                warm_ups.append(WarmUp(when, record["slot"], timings))
                print(
                    progress_line(order, "warm-up", when, timings)
                    + f"  (slot {record['slot']})",
                    flush=True,
                )
            chats = exchanges[: len(exchanges) - len(new)]
            return response_timings(chats[0][1]) if chats else None

        new_chat_request("at start")
        agent_id = conversation_agent(hass, platform)
        for number, chat in enumerate(plan, 1):
            if error := await send_chat(hass, agent_id, chat, satellites):
                logging.getLogger(__name__).debug("%s: %s", order, error)
            # Chats come minutes apart: what the agent does after one has finished.
            await hass.async_block_till_done(wait_background_tasks=True)
            timings = new_chat_request(f"after #{number}")
            # None: answered from the home alone (local_voice's state answers).
            chat.timings[order] = timings or {}
            print(progress_line(order, chat.phase, chat.source, timings), flush=True)
        await hass.config_entries.async_unload(entry.entry_id)
    return warm_ups


async def _async_router_loaded(url: str, ask: bool) -> None:
    """Wait until the router has its model loaded (asking for it first if `ask`)."""
    if ask:
        async with aiohttp.ClientSession() as session:
            await session.post(f"{url}/models/load", json={"model": ROUTER_MODEL})
    await async_until_loaded(url, [ROUTER_MODEL], limit=300)


def make_plan(chats: int, seed: int, language: str = "en") -> list[Chat]:
    """First: each source once; later: `chats` new chats from sources drawn by seed."""
    rng = random.Random(seed)
    texts = iter((JAPANESE_TEXTS if language == "ja" else TEXTS) * 4)
    plan = [Chat("first", source, next(texts)) for source in SOURCES]
    plan += [Chat("later", rng.choice(SOURCES), next(texts)) for _ in range(chats)]
    for chat in plan:
        chat.language = language
    return plan


def progress_line(
    order: str, label: str, what: str, timings: dict[str, int] | None
) -> str:
    """One request's line while a benchmark runs: its tokens evaluated and cached."""
    if not timings:
        return f"  {order:<11} {label:<9} {what:<12} no request (answered from states)"
    return (
        f"  {order:<11} {label:<9} {what:<12}"
        f" evaluated {timings['prompt_n']:>5}  cached {timings['cache_n']:>5}"
    )


def arguments(doc: str, chats: int, chats_help: str) -> argparse.ArgumentParser:
    """The options this benchmark and the day share."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--chats", type=int, default=chats, help=chats_help)
    parser.add_argument("--seed", type=int, default=3, help="order of the sources")
    parser.add_argument(
        "--cache-ram",
        type=int,
        default=None,
        help="llama-server --cache-ram in MiB (default: the server's own default)",
    )
    return parser


def router_server_argv(cache_ram: int | None, folder: Path) -> list[str]:
    """Return a llama-server router's command line with the same model and flags."""
    keys: dict[str, object] = {
        "model": QWEN,
        "jinja": "true",
        "ctx-size": 16384,
        "parallel": 2,
        "threads": os.cpu_count() or 2,
        "chat-template-file": QWEN_TEMPLATE,
    }
    if cache_ram is not None:
        keys["cache-ram"] = cache_ram
    return router_argv(folder / "models.ini", {ROUTER_MODEL: keys}, models_max=1)


def server_argv(cache_ram: int | None) -> list[str]:
    """Quiet the logs, check the backends; return llama-server's command line."""
    logging.basicConfig(level=logging.ERROR)
    # The camera component (loaded by AI task) logs a traceback on hosts without
    # libturbojpeg; it says nothing about prompts.
    logging.getLogger("homeassistant.components.camera.img_util").disabled = True
    if not (QWEN.exists() and QWEN_TEMPLATE.exists()):
        sys.exit("backends missing: run scripts/setup")
    # 8192 tokens per slot: the Assist prompt of this home is ~5,500 tokens.
    extra = [] if cache_ram is None else ["--cache-ram", str(cache_ram)]
    return llama_argv(QWEN, *extra, ctx=16384, slots=2)


def main() -> None:
    parser = arguments(__doc__, 10, "chats after the first (10)")
    parser.add_argument(
        "--language", choices=("en", "ja"), default="en", help="the chats' language"
    )
    parser.add_argument(
        "--router", action="store_true", help="a router serving the model (a preset)"
    )
    args = parser.parse_args()
    plan = make_plan(args.chats, args.seed, args.language)
    warm_ups: dict[str, list[WarmUp]] = {}
    with tempfile.TemporaryDirectory() as logs:
        argv = server_argv(args.cache_ram)
        if args.router:
            argv = router_server_argv(args.cache_ram, Path(logs))
        for order in ("core", "local_voice"):
            print(f"{order}: fresh llama-server: {' '.join(argv[1:])}")
            server = start(f"llama-{order}", argv, "http", Path(logs))
            try:
                warm_ups[order] = asyncio.run(
                    run(order, server.url, plan, router=args.router)
                )
            finally:
                server.stop()

    print()
    print(
        "| # | phase | source | request | core evaluated | core cached |"
        " local_voice evaluated | local_voice cached |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|")
    for warm_up in warm_ups["local_voice"]:
        if warm_up.when == "at start":
            _warm_up_row(warm_up)
    for number, chat in enumerate(plan, 1):
        cells = [
            f"{t['prompt_n']} | {t['cache_n']}" if (t := chat.timings[o]) else "- | -"
            for o in ("core", "local_voice")
        ]
        row = f"| {number} | {chat.phase} | {chat.source} | {chat.text} |"
        print(f"{row} {' | '.join(cells)} |")
        for warm_up in warm_ups["local_voice"]:
            if warm_up.when == f"after #{number}":
                _warm_up_row(warm_up)
    # Compared where both sent a request: a chat local_voice answered from the
    # states alone (no prompt at all) would only flatter it.
    both = [c for c in plan if c.timings["core"] and c.timings["local_voice"]]
    if skipped := len(plan) - len(both):
        print(f"{skipped} chats without a request on one side: not counted below")
    totals = {}
    for phase in ("first", "later"):
        totals[phase] = {
            order: sum(c.timings[order]["prompt_n"] for c in both if c.phase == phase)
            for order in ("core", "local_voice")
        }
        core, ours = totals[phase]["core"], totals[phase]["local_voice"]
        print(
            f"{phase} chats: core evaluated {core} tokens, local_voice {ours}"
            f" (ratio {core / max(1, ours):.1f})"
        )
    core = sum(phase["core"] for phase in totals.values())
    ours = sum(phase["local_voice"] for phase in totals.values())
    print(f"all {len(plan)} new chats: core {core} tokens, local_voice {ours}")
    warm = {
        order: sum(w.timings["prompt_n"] for w in warm_ups[order])
        for order in ("core", "local_voice")
    }
    print(
        f"warm-ups (no chat waits for them): core {warm['core']} tokens,"
        f" local_voice {warm['local_voice']} in {len(warm_ups['local_voice'])}"
        f" requests; counted in: core {core + warm['core']},"
        f" local_voice {ours + warm['local_voice']}"
        f" (ratio {(core + warm['core']) / max(1, ours + warm['local_voice']):.1f})"
    )
    print(f"prompt_cache_ratio={core / max(1, ours):.1f}")


def _warm_up_row(warm_up: WarmUp) -> None:
    """A table row for one of local_voice's warm-ups (not a chat)."""
    print(
        f"| | warm-up | {warm_up.when} | slot {warm_up.slot} | | |"
        f" {warm_up.timings['prompt_n']} | {warm_up.timings['cache_n']} |"
    )


if __name__ == "__main__":
    main()
