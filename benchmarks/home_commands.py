"""Commands that get done in a realistic home: local_voice vs core's llama_cpp agent.

A test Home Assistant (the test harness, in process) with the home of home.py (40
devices, 7 areas, some devices in none) and Assist, and two conversation agents on
the same model, each on its own llama-server process (so that neither evicts the
other's prompt cache), both at temperature 0 and at most 1,024 tokens an answer:

* Home Assistant's own `llama_cpp` agent (recommended settings, Assist on), and
* local_voice's agent (recommended options); with `--action-ends-turn both`, a
  second local_voice agent with the subentry option `action_ends_turn` off.

Every utterance of home_utterances.py goes through Home Assistant's real Assist
pipeline in text mode (one pipeline per agent, start and end stage `intent`), from
its source: a satellite device in an area or none (the app), so that "prefer
handling commands locally" is the pipeline's own `prefer_local_intents`: off (every
turn reaches the agent), on, or both, one after the other. The agents take turns,
a conversation each; the home is put back in its initial state before each
conversation. Each turn is judged from the state machine (home_utterances.py); a
turn that takes longer than `--turn-timeout` seconds is cancelled and not done.

    .venv/bin/python benchmarks/home_commands.py [--model qwen0.5b|qwen1.5b]
        [--prefer-local off|on|both] [--action-ends-turn default|on|off|both]
        [--limit N] [--only CATEGORY] [--turn-timeout S] [--budget S]

Prints a progress line per turn, then a table per agent and mode (done/total, tool
rounds median, time median and p90), a list of every turn, and as the last line
`commands_done=<local_voice done>/<total> core=<core done>/<total>` (prefer-local
off, local_voice with its default options).

llama-server: one slot of 8,192 tokens each (its host prompt cache, on by default,
keeps what the other sources' prompts had); both models use the bare-JSON tool
template of the tests (with the GGUF's own template the 1.5B writes its call as a
```json block inside prose, which llama-server leaves in the content). Fetch the
1.5B with `scripts/backends --qwen-1.5b`.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
import logging
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Home Assistant first: it must install its voluptuous shim before anything else.
from homeassistant.components.conversation import (  # noqa: E402, I001
    AssistantContent,
    UserContent,
)
from homeassistant.components.conversation.chat_log import DATA_CHAT_LOGS  # noqa: E402
from homeassistant.components.assist_pipeline import (  # noqa: E402
    PipelineEvent,
    PipelineEventType,
    PipelineStage,
    async_update_pipeline,
)
from homeassistant.components.assist_pipeline.models import Pipeline  # noqa: E402
from homeassistant.components.assist_pipeline.pipeline import (  # noqa: E402
    KEY_ASSIST_PIPELINE,
    PipelineInput,
    PipelineRun,
)
from homeassistant.config_entries import ConfigSubentry  # noqa: E402
from homeassistant.core import Context, HomeAssistant  # noqa: E402
from homeassistant.helpers import chat_session, entity_registry as er  # noqa: E402
from homeassistant.setup import async_setup_component  # noqa: E402

from custom_components.local_voice.const import (  # noqa: E402
    CONF_ACTION_ENDS_TURN as ACTION_ENDS_TURN,
    CONF_TEMPERATURE,
    DEFAULT_CONVERSATION_NAME,
    RECOMMENDED_CONVERSATION_OPTIONS,
    SUBENTRY_CONVERSATION,
)
from home import Home, async_setup_home  # noqa: E402
from home_utterances import (  # noqa: E402
    CATEGORIES,
    CONVERSATIONS,
    Conversation,
    Outcome,
    Turn,
)
from prompt_cache import conversation_agent, core_entry, home_assistant  # noqa: E402
from tests.backends import (  # noqa: E402
    QWEN,
    QWEN15,
    QWEN_TEMPLATE,
    Backend,
    llama_argv,
    start,
)
from tests.common import llama_entry  # noqa: E402

MODELS = {"qwen0.5b": QWEN, "qwen1.5b": QWEN15}
MAX_TOKENS = 1024  # local_voice's recommended answer budget, given to both
CORE = "core"
LOCAL_VOICE = "local_voice"


@dataclass
class Agent:
    """One conversation agent under test and its Assist pipeline."""

    label: str
    entity_id: str
    pipeline: Pipeline


@dataclass
class Result:
    """One turn of one agent in one mode."""

    agent: str
    mode: str
    turn: Turn
    done: bool
    why: str | None
    seconds: float
    outcome: Outcome
    calls: list[str] = field(default_factory=list)
    local: bool = False  # handled by Home Assistant's own intents (prefer local)


def turn_calls(hass: HomeAssistant, conversation_id: str) -> list[list[str]]:
    """The tool calls of each round of the conversation's last turn, from its chat log.

    Read from the stored log: Home Assistant tells subscribers of tool results, not
    of the assistant content that carried the calls.
    """
    chat_log = hass.data.get(DATA_CHAT_LOGS, {}).get(conversation_id)
    rounds: list[list[str]] = []
    for content in chat_log.content if chat_log else []:
        if isinstance(content, UserContent):
            rounds = []
        elif isinstance(content, AssistantContent) and content.tool_calls:
            rounds.append([_call_text(call) for call in content.tool_calls])
    return rounds


def _call_text(call: Any) -> str:
    arguments = ", ".join(f"{k}={v}" for k, v in dict(call.tool_args).items())
    return f"{call.tool_name}({arguments})"


async def make_pipeline(hass: HomeAssistant, agent_id: str, name: str) -> Pipeline:
    """A text-only pipeline on the agent, prefer-local off."""
    store = hass.data[KEY_ASSIST_PIPELINE].pipeline_store
    return await store.async_create_item(
        {
            "conversation_engine": agent_id,
            "conversation_language": "en",
            "language": "en",
            "name": name,
            "stt_engine": None,
            "stt_language": None,
            "tts_engine": None,
            "tts_language": None,
            "tts_voice": None,
            "wake_word_entity": None,
            "wake_word_id": None,
            "prefer_local_intents": False,
        }
    )


async def setup_agents(
    hass: HomeAssistant, core_url: str, ours_url: str, action_ends_turn: str
) -> list[Agent]:
    """Both agents' entries (and local_voice's second agent for `both`), pipelines."""
    core = core_entry(core_url, max_tokens=MAX_TOKENS, temperature=0.0, top_p=1.0)
    options: dict[str, Any] = {CONF_TEMPERATURE: 0.0}
    if action_ends_turn in ("on", "off"):
        options[ACTION_ENDS_TURN] = action_ends_turn == "on"
    ours = llama_entry(ours_url, options)
    for entry in (core, ours):
        entry.add_to_hass(hass)
    if action_ends_turn == "both":
        off = ConfigSubentry(
            data={
                **RECOMMENDED_CONVERSATION_OPTIONS,
                **options,
                ACTION_ENDS_TURN: False,
            },
            subentry_type=SUBENTRY_CONVERSATION,
            title=f"{DEFAULT_CONVERSATION_NAME} (action_ends_turn off)",
            unique_id=None,
        )
        hass.config_entries.async_add_subentry(ours, off)
    for entry in (core, ours):
        assert await hass.config_entries.async_setup(entry.entry_id), entry.domain
    # local_voice warms its slot in the background: as long before anyone speaks.
    await hass.async_block_till_done(wait_background_tasks=True)
    agents = [Agent(CORE, conversation_agent(hass, "llama_cpp"), None)]  # type: ignore[arg-type]
    for entity in er.async_get(hass).entities.values():
        if entity.platform == LOCAL_VOICE and entity.domain == "conversation":
            subentry = ours.subentries[entity.config_subentry_id or ""]
            off = subentry.data.get(ACTION_ENDS_TURN) is False
            label = (
                f"{LOCAL_VOICE} (action_ends_turn off)"
                if action_ends_turn == "both" and off
                else LOCAL_VOICE
            )
            agents.append(Agent(label, entity.entity_id, None))  # type: ignore[arg-type]
    for agent in agents:
        agent.pipeline = await make_pipeline(hass, agent.entity_id, agent.label)
    return agents


async def say(
    hass: HomeAssistant,
    agent: Agent,
    text: str,
    conversation_id: str | None,
    device_id: str | None,
    seconds: float,
) -> tuple[str, dict[str, Any]]:
    """One turn through the agent's pipeline: its conversation id, intent-end data."""
    events: list[PipelineEvent] = []
    with chat_session.async_get_chat_session(hass, conversation_id) as session:
        run = PipelineRun(
            hass,
            context=Context(),
            pipeline=agent.pipeline,
            start_stage=PipelineStage.INTENT,
            end_stage=PipelineStage.INTENT,
            event_callback=events.append,
        )
        pipeline_input = PipelineInput(
            run=run, session=session, intent_input=text, device_id=device_id
        )
        end: dict[str, Any] = {}
        try:
            async with asyncio.timeout(seconds):
                await pipeline_input.execute(validate=True)
        except TimeoutError:
            end["error"] = f"no answer in {seconds:g} s"
        for event in events:
            if event.type == PipelineEventType.INTENT_END and event.data:
                end |= event.data
            elif event.type == PipelineEventType.ERROR and event.data:
                end["error"] = f"{event.data.get('code')}: {event.data.get('message')}"
        return session.conversation_id, end


async def run_conversation(
    home: Home,
    agent: Agent,
    mode: str,
    chat: Conversation,
    turn_seconds: float,
) -> list[Result]:
    """Reset the home, then say the conversation's turns to the agent; judge each."""
    await home.reset()
    device_id = home.satellites.get(chat.source or "")
    conversation_id: str | None = None
    results = []
    for turn in chat.turns:
        before = await home.snapshot()
        timers_before = len(home.timers)
        began = time.monotonic()
        conversation_id, end = await say(
            home.hass, agent, turn.text, conversation_id, device_id, turn_seconds
        )
        seconds = time.monotonic() - began
        await home.hass.async_block_till_done()
        rounds = turn_calls(home.hass, conversation_id)
        output = end.get("intent_output") or {}
        speech = output.get("response", {}).get("speech", {}).get("plain", {})
        outcome = Outcome(
            before=before,
            after=await home.snapshot(),
            answer=str(speech.get("speech", "")),
            rounds=len(rounds),
            timers=home.timers[timers_before:],
            error=end.get("error"),
            failed=output.get("response", {}).get("response_type") == "error",
        )
        why = outcome.error or turn.judge(outcome)
        result = Result(
            agent=agent.label,
            mode=mode,
            turn=turn,
            done=why is None,
            why=why,
            seconds=seconds,
            outcome=outcome,
            calls=[call for calls in rounds for call in calls],
            local=bool(end.get("processed_locally")),
        )
        results.append(result)
        print(progress_line(result), flush=True)
    return results


def progress_line(result: Result) -> str:
    """A turn's line while the benchmark runs."""
    mark = "done" if result.done else "FAIL"
    local = " local" if result.local else ""
    return (
        f"  {result.agent:<33} {result.mode:<16} {mark} {result.seconds:6.1f} s"
        f" {result.outcome.rounds} rounds{local}  {result.turn.text!r}"
        + ("" if result.done else f"  ({result.why})")
    )


async def run_all(
    core_url: str, ours_url: str, args: argparse.Namespace, chats: list[Conversation]
) -> list[Result]:
    """Set up Home Assistant, the home and the agents; run each mode's conversations."""
    results: list[Result] = []
    deadline = time.monotonic() + args.budget
    async with home_assistant() as hass:
        home = await async_setup_home(hass)
        assert await async_setup_component(hass, "assist_pipeline", {})
        began = time.monotonic()
        agents = await setup_agents(hass, core_url, ours_url, args.action_ends_turn)
        if args.no_core:
            agents = [agent for agent in agents if agent.label != CORE]
        print(
            f"agents set up, warm-up done: {time.monotonic() - began:.0f} s", flush=True
        )
        modes = ["off", "on"] if args.prefer_local == "both" else [args.prefer_local]
        for mode in modes:
            label = f"prefer-local {mode}"
            for agent in agents:
                await async_update_pipeline(
                    hass, agent.pipeline, prefer_local_intents=mode == "on"
                )
                pipelines = hass.data[KEY_ASSIST_PIPELINE].pipeline_store.data
                agent.pipeline = pipelines[agent.pipeline.id]
            for chat in chats:
                if time.monotonic() > deadline:
                    print(f"--budget {args.budget:g} s spent: the rest is not run")
                    break
                for agent in agents:
                    results += await run_conversation(
                        home, agent, label, chat, args.turn_timeout
                    )
        for entry in hass.config_entries.async_entries():
            await hass.config_entries.async_unload(entry.entry_id)
    return results


def select(limit: int | None, only: str | None) -> list[Conversation]:
    """The conversations with a turn of the category (all: None), the first `limit`."""
    chats = [
        chat
        for chat in CONVERSATIONS
        if only is None or any(turn.category == only for turn in chat.turns)
    ]
    return chats[:limit] if limit else chats


def p90(values: list[float]) -> float:
    """The 90th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)] if ordered else 0.0


def report(results: list[Result]) -> None:
    """The table, the list of turns, and the last line."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        groups.setdefault((result.agent, result.mode), []).append(result)
    print()
    print("| agent | prefer local | done | rounds (median) | time median | time p90 |")
    print("|---|---|---:|---:|---:|---:|")
    for (agent, mode), group in groups.items():
        seconds = [r.seconds for r in group]
        rounds = statistics.median(r.outcome.rounds for r in group)
        print(
            f"| {agent} | {mode.removeprefix('prefer-local ')} |"
            f" {sum(r.done for r in group)}/{len(group)} | {rounds:g} |"
            f" {statistics.median(seconds):.1f} s | {p90(seconds):.1f} s |"
        )
    print()
    by_turn: dict[tuple[str, int], list[Result]] = {}
    for result in results:
        by_turn.setdefault((result.mode, id(result.turn)), []).append(result)
    for (mode, _), group in by_turn.items():
        turn = group[0].turn
        print(f"- [{mode}] {turn.category}: {turn.text!r}")
        for r in group:
            outcome = "done" if r.done else f"not done ({_short(r.why or '', 80)})"
            calls = "; ".join(r.calls) or ("local intent" if r.local else "no tool")
            print(
                f"    {r.agent}: {outcome}, {r.seconds:.1f} s, {_short(calls, 100)}:"
                f" {_short(r.outcome.answer, 100)!r}"
            )
    print()
    print(last_line(results))


def last_line(results: list[Result]) -> str:
    """`commands_done=` for prefer-local off (else the first mode run)."""
    modes = [r.mode for r in results]
    mode = "prefer-local off" if "prefer-local off" in modes else modes[0]

    def count(agent: str) -> str:
        group = [r for r in results if r.agent == agent and r.mode == mode]
        return f"{sum(r.done for r in group)}/{len(group)}"

    return f"commands_done={count(LOCAL_VOICE)} core={count(CORE)}"


def _short(text: str, most: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[: most - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen0.5b")
    parser.add_argument("--prefer-local", choices=["off", "on", "both"], default="off")
    parser.add_argument(
        "--action-ends-turn",
        choices=["default", "on", "off", "both"],
        default="default",
        help="local_voice's option: its default, on, off, or both (two agents)",
    )
    parser.add_argument("--limit", type=int, help="the first N conversations only")
    parser.add_argument(
        "--only", choices=CATEGORIES, help="conversations with a turn of it"
    )
    parser.add_argument(
        "--turn-timeout",
        type=float,
        default=120,
        help="seconds a turn may take; longer is cancelled and not done (120)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=float("inf"),
        help="seconds; once spent, no new conversation starts and the report covers"
        " those run",
    )
    parser.add_argument(
        "--no-core",
        action="store_true",
        help="local_voice alone (core's turns can take minutes each on a slow CPU)",
    )
    parser.add_argument("--verbose", action="store_true", help="agents' warnings too")
    parser.add_argument("--logs", type=Path, help="keep the llama-servers' logs here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    model = MODELS[args.model]
    if not model.exists() or not QWEN_TEMPLATE.exists():
        flag = " --qwen-1.5b" if model == QWEN15 else ""
        sys.exit(f"{model} missing: run scripts/backends{flag}")
    chats = select(args.limit, args.only)
    argv = llama_argv(model, ctx=8192, slots=1)
    if model == QWEN15:  # the same tool template as the 0.5B (see the docstring)
        argv += ["--chat-template-file", str(QWEN_TEMPLATE)]
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as temporary:
        logs = args.logs or Path(temporary)
        logs.mkdir(parents=True, exist_ok=True)
        servers: list[Backend] = []
        try:
            for name in (CORE, LOCAL_VOICE):
                servers.append(start(f"llama-{name}", argv, "http", logs))
            results = asyncio.run(run_all(servers[0].url, servers[1].url, args, chats))
        finally:
            for server in servers:
                server.stop()
    print(
        f"\n{args.model}, {len(chats)} conversations, {time.monotonic() - began:.0f} s"
    )
    report(results)


if __name__ == "__main__":
    main()
