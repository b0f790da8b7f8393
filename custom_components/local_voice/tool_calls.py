"""The model's finished tool calls, as Home Assistant tool inputs.

Arguments are parsed and repaired (llama_server/tool_arguments.py), then checked
against the tool's own parameter schema: an optional argument the schema rejects
(a small model's `device_class: light` for HassTurnOn) is dropped rather than
failing the call, and so is a list argument that copies its whole enum. A call
whose arguments cannot be read is answered with a tool result that tells the model
why, so it can try again. After a round, the calls that failed are kept: the model
repeating one exactly ends the turn (a target that was not found is grounded
first: turn_guards.py). A round that only repeats calls already done this turn
ends it with a sentence saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
import json
from typing import Any

import probatio

from homeassistant.components import conversation
from homeassistant.helpers import llm
from homeassistant.util import ulid as ulid_util

from .agent_text import AgentError
from .const import LOGGER
from .llama_server.deltas import ToolCallBuilder
from .prompt import PromptParts
from .tool_arguments import (
    ToolArgumentsError,
    drop_copied_enums,
    drop_unknown_arguments,
    parse_tool_arguments,
    resolve_tool_name,
)
from .turn_history import acted_on, newest_round


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


def _required(schema: probatio.Schema) -> set[str]:
    """Names of the schema's required keys."""
    if not isinstance(schema.schema, Mapping):
        return set()
    return {
        str(key.schema)
        for key in schema.schema
        if isinstance(key, probatio.Required) and isinstance(key.schema, str)
    }


def fit_to_schema(
    name: str, args: dict[str, Any], tool: llm.Tool | None
) -> dict[str, Any]:
    """Drop optional arguments the tool's schema rejects; never invent any.

    If the arguments are valid, or still invalid without those (a required one is
    wrong or missing), they are returned unchanged and the tool reports the error.
    """
    if tool is None or not args:
        return args
    try:
        tool.parameters(args)
    except probatio.MultipleInvalid as err:
        bad = {str(e.path[0]) for e in err.errors if e.path}
    except probatio.Invalid:
        return args
    else:
        return args
    drop = bad - _required(tool.parameters)
    kept = {key: value for key, value in args.items() if key not in drop}
    if not drop or bad & set(kept):
        return args
    try:
        tool.parameters(kept)
    except probatio.Invalid:
        return args
    LOGGER.debug(
        "Tool call %s: dropped optional arguments its schema rejects: %s",
        name,
        {key: args[key] for key in drop},
    )
    return kept


def tool_call_deltas(
    calls: list[ToolCallBuilder], parts: PromptParts, llm_api: llm.APIInstance | None
) -> list[dict[str, Any]]:
    """Return the deltas for finished calls: the calls, then refusals of bad ones."""
    tools = {tool.name: tool for tool in llm_api.tools} if llm_api else {}
    inputs: list[llm.ToolInput] = []
    refusals: list[dict[str, Any]] = []
    for call in calls:
        name = resolve_tool_name(call.name, parts.tool_names)
        call_id = call.id or ulid_util.ulid_now()
        raw = call.parsed if call.parsed is not None else call.arguments
        problem: Exception
        schema = parts.tool_parameters(name)
        try:
            parsed = drop_unknown_arguments(parse_tool_arguments(raw), schema)
        except ToolArgumentsError as err:
            problem = err
        else:
            if copied := parsed.keys() - (args := drop_copied_enums(parsed, schema)):
                LOGGER.debug(
                    "Tool call %s: dropped arguments that list their whole enum: %s",
                    name,
                    sorted(copied),
                )
            if llm_api is not None:
                args = fit_to_schema(name, args, tools.get(name))
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


def _call_key(tool_input: llm.ToolInput) -> str:
    """Return a tool call's name and arguments as one comparable string."""
    return json.dumps([tool_input.tool_name, tool_input.tool_args], sort_keys=True)


def failed_calls(chat_log: conversation.ChatLog) -> dict[str, str]:
    """Return the failed calls of the newest round of tool calls, with why."""
    failed: dict[str, str] = {}
    for call, result in newest_round(chat_log):
        if call.external or result is None or not result.error:
            continue
        data = result.data if isinstance(result.data, dict) else {}
        failed[_call_key(call)] = str(
            data.get("error_text") or data.get("error") or "it failed"
        )
    return failed


def repeated_failure(
    deltas: list[dict[str, Any]], failed: dict[str, str]
) -> AgentError | None:
    """Return the error for a call the model repeats right after it failed."""
    for delta in deltas:
        for call in delta.get("tool_calls") or ():
            if (reason := failed.get(_call_key(call))) is not None:
                return AgentError(
                    "llm_tool_repeated",
                    tool=call.tool_name.rsplit("__", 1)[-1],
                    reason=reason,
                )
    return None


def done_calls(chat_log: conversation.ChatLog) -> dict[str, list[str]]:
    """Return this turn's calls that succeeded, with the names of what they acted on."""
    results: dict[str, llm.ToolResult] = {}
    done: dict[str, list[str]] = {}
    for content in reversed(chat_log.content):
        if isinstance(content, conversation.UserContent):
            break
        if isinstance(content, conversation.ToolResultContent):
            if not content.result.error:
                results[content.tool_call_id] = content.result
        elif isinstance(content, conversation.AssistantContent):
            for call in content.tool_calls or ():
                if not call.external and (result := results.get(call.id)):
                    done[_call_key(call)] = acted_on(result.data, "name")
    return done


def repeated_success(
    deltas: list[dict[str, Any]], done: dict[str, list[str]]
) -> AgentError | None:
    """Return the answer when the model only repeats calls already done this turn.

    Small models call a tool again after it worked instead of answering, until
    the loop limit; the action is done, so the turn ends with a short sentence.
    """
    if any("tool_calls" not in delta for delta in deltas):
        return None  # a refused call is not a repeat
    calls = [call for delta in deltas for call in delta["tool_calls"]]
    if not calls or any(_call_key(call) not in done for call in calls):
        return None
    names = dict.fromkeys(
        name
        for call in calls
        for name in done[_call_key(call)] or [call.tool_name.rsplit("__", 1)[-1]]
    )
    return AgentError("llm_tool_done", targets=", ".join(names))
