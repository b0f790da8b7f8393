"""Tool-call arguments as small models write them: parsed, and repaired when clear."""

from __future__ import annotations

import ast
from collections.abc import Mapping
import contextlib
import json
import re
from typing import Any

_FENCE = re.compile(r"^```(?:json|JSON)?\s*(.*?)\s*```$", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class ToolArgumentsError(ValueError):
    """Tool-call arguments that could not be read, even after repair."""


def _scan_json(text: str) -> tuple[str | None, str]:
    """Read JSON text once, minding strings and escapes.

    Return the text up to the end of its first balanced object (None if it has
    none), and what would close the strings, arrays and objects left open at its end.
    """
    depth = 0
    stack: list[str] = []
    in_string = escape = False
    for index, char in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return text[: index + 1], ""
            if stack:
                stack.pop()
    return None, ('"' if in_string else "") + "".join(reversed(stack))


def _candidates(raw: str) -> list[str]:
    """Repairs to try, least invasive first."""
    text = raw.strip()
    if match := _FENCE.match(text):
        text = match.group(1).strip()
    candidates = [text]
    balanced, closing = _scan_json(text)
    if balanced and balanced != text:
        candidates.append(balanced)  # trailing chatter after the object
    candidates.append(_TRAILING_COMMA.sub(r"\1", text))
    if text.startswith("{") and balanced is None:
        candidates.append(_TRAILING_COMMA.sub(r"\1", text + closing))  # cut off
    return candidates


def _as_object(value: Any) -> dict[str, Any] | None:
    """Accept a dict, or a JSON string holding one (double-encoded arguments)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


# What small models write for an argument they mean to leave out.
_NULL_WORDS = frozenset(("", "none", "null", "n/a"))


def _clean(args: dict[str, Any]) -> dict[str, Any]:
    """Decode JSON-string values that hold lists/objects; drop null arguments."""
    cleaned: dict[str, Any] = {}
    for key, value in args.items():
        if value is None or (
            isinstance(value, str) and value.strip().lower() in _NULL_WORDS
        ):
            continue
        cleaned[str(key)] = value
        if isinstance(value, str) and value[:1] + value[-1:] in ("[]", "{}"):
            with contextlib.suppress(ValueError):
                cleaned[str(key)] = json.loads(value)
    return cleaned


def parse_tool_arguments(raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """Parse a tool call's arguments, repairing small models' mistakes when clear.

    Repairs: empty → {}; code fences; text after the object; trailing commas;
    double-encoded JSON; Python-literal dicts (single quotes, True/None); an object
    cut off at the end; list/object values sent as JSON strings; null arguments
    (also "none", "null" or "" as a string).
    Raises ToolArgumentsError when the intent is not clear.
    """
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return _clean(dict(raw))
    if not raw.strip():
        return {}
    error: Exception | None = None
    for candidate in _candidates(raw):
        try:
            value = json.loads(candidate)
        except ValueError as err:
            error = error or err
            continue
        if (obj := _as_object(value)) is not None:
            return _clean(obj)
        error = error or ValueError(f"expected an object, got {type(value).__name__}")
    try:
        value = ast.literal_eval(_candidates(raw)[0])
    except ValueError, SyntaxError, MemoryError, RecursionError:
        pass
    else:
        if isinstance(value, dict):
            return _clean(value)
    raise ToolArgumentsError(f"{error}" if error else "not a JSON object")


def drop_unknown_arguments(
    args: dict[str, Any], parameters: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Drop arguments the tool's schema does not have (small models invent some)."""
    if not parameters or parameters.get("additionalProperties") is True:
        return args
    properties = parameters.get("properties")
    if not isinstance(properties, Mapping):
        return args
    return {key: value for key, value in args.items() if key in properties}


def drop_copied_enums(
    args: dict[str, Any], parameters: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Drop optional list arguments that name every value their schema allows.

    Qwen 0.5B, asked for the kitchen light, sometimes sends HassTurnOn the whole
    `device_class` enum copied from the schema. Such a filter chooses nothing, yet
    it excludes everything without a class (every light), so the call finds nothing.
    """
    properties = parameters.get("properties") if parameters else None
    if not isinstance(properties, Mapping):
        return args
    required = set(parameters.get("required") or ()) if parameters else set()

    def copies_enum(key: str, value: Any) -> bool:
        spec = properties.get(key)
        items = spec.get("items") if isinstance(spec, Mapping) else None
        enum = items.get("enum") if isinstance(items, Mapping) else None
        return (
            key not in required
            and isinstance(enum, list)
            and len(enum) > 1
            and isinstance(value, list)
            and all(isinstance(item, str) for item in value)
            and set(map(str, enum)) <= set(value)
        )

    return {key: value for key, value in args.items() if not copies_enum(key, value)}


def resolve_tool_name(name: str, tool_names: set[str]) -> str:
    """Map a tool name the model shortened (no `domain__` prefix) to the real one."""
    if name in tool_names or not name:
        return name
    matches = [tool for tool in tool_names if tool.endswith(f"__{name}")]
    if len(matches) == 1:
        return matches[0]
    lowered = {tool.lower(): tool for tool in tool_names}
    return lowered.get(name.lower(), name)


def tool_call_in_text(
    text: str, tool_names: set[str]
) -> tuple[str, dict[str, Any]] | None:
    """Find a tool call the model wrote as text: `{"name": ..., "arguments": ...}`.

    The object may sit in a code fence or `<tool_call>` tags, with chatter around
    it; the name must be one of the offered tools. Return (name, arguments).
    """
    start, end = text.find("{"), text.rfind("}")
    if start < 0:
        return None
    # Without the fence or tags around it; an object cut off keeps its tail.
    body = text[start : end + 1] if end > start else text[start:]
    try:
        call = parse_tool_arguments(body)
    except ToolArgumentsError:
        return None
    if isinstance(function := call.get("function"), Mapping):
        call = {**call, **function}  # {"function": {"name", "arguments"}}
    name = call.get("name")
    if not isinstance(name, str):
        return None
    name = resolve_tool_name(name, tool_names)
    if name not in tool_names:
        return None
    raw = call.get("arguments", call.get("parameters"))
    try:
        arguments = parse_tool_arguments(
            raw if isinstance(raw, str | Mapping) else None
        )
    except ToolArgumentsError:
        return None
    return name, arguments


def looks_like_sentence(text: str) -> bool:
    """Whether text is prose to say, not JSON or markup a parser choked on."""
    stripped = text.strip()
    return bool(stripped) and stripped[0] not in "{[<`" and "{" not in stripped
