"""What is wrong with a llama-server's set-up, judged from what it reports.

Pure decisions, no Home Assistant: `find_problems` reads /props (through
`ServerProps`) and what the slot manager learnt from warm-ups and chats (prefix
sizes, chats that re-read a prefix their slot held, how many conversations share
the slots) and returns the problems with the numbers that show their cost.
`server_issues.py` turns them into Home Assistant repairs issues, worded for the add-on
(its option names) or for a server started by hand (llama-server's flags).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from .llama_server.props import ServerProps
from .slots import CacheMisses

# Room a usual conversation needs in a slot besides the static prefix (the context
# block, a few turns and a short answer).
CONVERSATION_ROOM_TOKENS = 1024
# Chats in a row that must re-read a prefix their slot held before the cache is
# reported broken (one alone is a restart, or another client that used the slot).
CACHE_MISSES_TO_REPORT = 2

# A suggested context size is rounded up to a multiple of this.
_CONTEXT_STEP = 1024

#: Every kind of problem: each is one repairs issue per server. The last two are a
#: router's: its agents use more models than it keeps loaded, or one it lacks.
KINDS = (
    "context_too_small",
    "no_tool_support",
    "cache_not_reused",
    "slots_shared",
    "models_switch",
    "model_missing",
)


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the checks look at: the server's /props and what chats showed."""

    props: ServerProps
    #: The largest static prefix (system message and tools) of the server's agents.
    prefix_tokens: int | None
    #: Agents that offer tools (an LLM API) to the model.
    tool_agents: int
    #: (agent, device) pairs pinned to a slot: conversations that keep a slot warm.
    conversations: int
    misses: CacheMisses | None
    #: The server is the llama-server add-on (it announced itself): name its options.
    addon: bool
    #: On a router: the model each of the entry's agents and AI tasks names.
    models_used: tuple[str, ...] = ()
    #: On a router: the longest a turn last waited for one of those to load.
    load_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem: its kind, how it is worded, its numbers, and how bad it is."""

    kind: str
    #: The translation key: the kind, worded for the add-on or for llama-server flags.
    translation_key: str
    placeholders: dict[str, str]
    error: bool = False


def context_for(per_slot: int, slots: int) -> int:
    """Return the total context (`-c`) that gives each of `slots` slots `per_slot`."""
    return math.ceil(per_slot * max(1, slots) / _CONTEXT_STEP) * _CONTEXT_STEP


def _worded(kind: str, state: ServerState) -> str:
    return f"{kind}_addon" if state.addon else kind


def _context(state: ServerState) -> Problem | None:
    """Report a slot too small for the static prefix plus a usual conversation."""
    n_ctx, prefix = state.props.n_ctx, state.prefix_tokens
    if prefix is None or n_ctx <= 0:
        return None
    needed = prefix + CONVERSATION_ROOM_TOKENS
    if needed <= n_ctx:
        return None
    slots = state.props.total_slots
    return Problem(
        "context_too_small",
        _worded("context_too_small", state),
        {
            "prefix": str(prefix),
            "room": str(CONVERSATION_ROOM_TOKENS),
            "needed": str(needed),
            "n_ctx": str(n_ctx),
            "slots": str(slots),
            "context": str(context_for(needed, slots)),
        },
        error=prefix >= n_ctx,
    )


def _tools(state: ServerState) -> Problem | None:
    """Report agents offering tools to a chat template that cannot show them.

    On a router, the templates of its loaded models (nothing is known of the others).
    """
    props = state.props
    models = list(props.loaded.values()) if props.router else [props]
    lacking = next((model for model in models if not model.supports_tools), None)
    if lacking is None or not state.tool_agents:
        return None
    return Problem(
        "no_tool_support",
        _worded("no_tool_support", state),
        {"model": lacking.model, "agents": str(state.tool_agents)},
    )


def _cache(state: ServerState) -> Problem | None:
    """Report chats that keep re-reading a prefix their slot held."""
    misses = state.misses
    if misses is None or misses.in_a_row < CACHE_MISSES_TO_REPORT:
        return None
    # What /props can tell of the cause: a template that writes the clock first.
    key = (
        "cache_not_reused_clock"
        if state.props.template_reads_clock
        else _worded("cache_not_reused", state)
    )
    return Problem(
        "cache_not_reused",
        key,
        {
            "model": state.props.model,
            "chats": str(misses.in_a_row),
            "prompt_n": str(misses.prompt_n),
            "cache_n": str(misses.cache_n),
            "seconds": f"{misses.prompt_ms / 1000:.1f}",
        },
    )


def _slots(state: ServerState) -> Problem | None:
    """Report more conversations than slots: they evict each other's cache."""
    slots = state.props.total_slots
    if state.conversations <= slots:
        return None
    return Problem(
        "slots_shared",
        _worded("slots_shared", state),
        {
            "conversations": str(state.conversations),
            "slots": str(slots),
            "n_ctx": str(state.props.n_ctx),
            "context": str(context_for(state.props.n_ctx, state.conversations)),
        },
    )


def _switching(state: ServerState) -> Problem | None:
    """Report agents on more models than a router keeps loaded.

    Each turn on another model then waits for its load and reads its whole prompt.
    """
    used, most = sorted(set(state.models_used)), state.props.models_max
    if not state.props.router or not most or len(used) <= most:
        return None
    worded = _worded("models_switch", state)
    numbers = {
        "count": str(len(used)),
        "models": ", ".join(used),
        "models_max": str(most),
    }
    if state.load_seconds is not None:  # once a turn waited for a load: its wait
        worded += "_measured"
        numbers["load_seconds"] = f"{state.load_seconds:.1f}"
    return Problem("models_switch", worded, numbers)


def _missing(state: ServerState) -> Problem | None:
    """Report agents naming a model the router does not have (any more)."""
    props = state.props
    missing = sorted(set(state.models_used) - set(props.model_names))
    if not props.router or not missing:
        return None
    return Problem(
        "model_missing",
        _worded("model_missing", state),
        {"missing": ", ".join(missing), "models": ", ".join(props.model_names)},
        error=True,
    )


def find_problems(state: ServerState) -> list[Problem]:
    """Return every problem the server's state shows (at most one of each kind)."""
    checks = (_context, _tools, _cache, _slots, _switching, _missing)
    return [problem for check in checks if (problem := check(state)) is not None]
