"""The model's finished tool calls, as Home Assistant tool inputs.

Arguments are parsed and repaired (llama_server/tool_arguments.py); a call whose
arguments cannot be read is answered with a tool result that tells the model why,
so it can try again.
"""

from __future__ import annotations

from typing import Any

from homeassistant.helpers import llm
from homeassistant.util import ulid as ulid_util

from .const import LOGGER
from .llama_server.deltas import ToolCallBuilder
from .llama_server.tool_arguments import (
    ToolArgumentsError,
    drop_unknown_arguments,
    parse_tool_arguments,
    resolve_tool_name,
)
from .prompt import PromptParts


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


def tool_call_deltas(
    calls: list[ToolCallBuilder], parts: PromptParts, tools_available: bool
) -> list[dict[str, Any]]:
    """Return the deltas for finished calls: the calls, then refusals of bad ones."""
    inputs: list[llm.ToolInput] = []
    refusals: list[dict[str, Any]] = []
    for call in calls:
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
            if tools_available:
                inputs.append(llm.ToolInput(name, args, id=call_id))
                continue
            problem = ToolArgumentsError("no tools are available")
        LOGGER.warning(
            "Tool call %s has unreadable arguments %r: %s",
            name,
            call.arguments[:300],
            problem,
        )
        inputs.append(llm.ToolInput(name, {}, id=call_id, external=True))
        refusals.append(_refusal(call_id, name, call.arguments, problem))
    return ([{"tool_calls": inputs}] if inputs else []) + refusals
