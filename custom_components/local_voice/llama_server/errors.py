"""Every way a request to llama-server can fail, and the one HTTP status mapping.

Each error carries a translation key (strings.json `exceptions`) and its placeholders,
so the agent can tell the user in words what went wrong; `str(err)` is for logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
import re
from typing import Any, ClassVar

from .url import strip_user_info


class LlamaServerError(Exception):
    """A request to llama-server failed."""

    translation_key: ClassVar[str] = "llm_http_error"
    #: The coordinator should re-check the server (down, restarting, key refused).
    refresh_server: ClassVar[bool] = False

    def __init__(self, description: str, /, **placeholders: Any) -> None:
        """Keep a description for logs and the placeholders for the user's words."""
        super().__init__(strip_user_info(description))
        self.translation_placeholders = {
            k: strip_user_info(str(v)) for k, v in placeholders.items()
        }


class CannotConnect(LlamaServerError):
    """The server could not be reached."""

    translation_key = "llm_cannot_connect"
    refresh_server = True


class ServerLoading(CannotConnect):
    """The server answers 503: it is still loading its model."""

    translation_key = "llm_loading"


class ConnectionLost(CannotConnect):
    """The connection broke while the server was answering."""

    translation_key = "llm_connection_lost"


class ReadTimeout(CannotConnect):
    """The server sent no data for too long (keep-alive comments are not data)."""

    translation_key = "llm_timeout"


class InvalidAuth(LlamaServerError):
    """The server refused the API key."""

    translation_key = "llm_auth_failed"
    refresh_server = True


class NotLlamaServer(LlamaServerError):
    """Something answers, but it is not llama-server."""


class ModelNotLoaded(LlamaServerError):
    """A router was asked about one of its models that is not loaded."""


class ModelUnavailable(LlamaServerError):
    """A router has no such model, or could not load it."""

    translation_key = "llm_model_unavailable"


class ContextOverflow(LlamaServerError):
    """The prompt does not fit the server's context (n_ctx per slot)."""

    translation_key = "llm_context_overflow"

    def __init__(self, description: str, /, *, tokens: int, n_ctx: int) -> None:
        """Keep the prompt's size and the slot's context as numbers too."""
        super().__init__(description, tokens=tokens, n_ctx=n_ctx)
        self.tokens = tokens
        self.n_ctx = n_ctx


class StreamError(LlamaServerError):
    """The answer could not be read: bad data, or an error event inside the stream."""

    translation_key = "llm_malformed_stream"


class ErrorInStream(StreamError):
    """The server reported an error in the middle of a streamed answer."""

    translation_key = "llm_stream_error"


class TruncatedStream(StreamError):
    """The stream ended before the answer was finished."""

    translation_key = "llm_truncated_stream"


class UnparsableToolCall(LlamaServerError):
    """llama-server's tool parser rejected the model's output (HTTP 500 or in-stream).

    The agent retries such a turn once with `tool_choice: "none"` and reads the
    model's raw text itself; the parser's message is never said.
    """

    translation_key = "llm_unparsable_tool_call"


class AnswerDeadline(LlamaServerError):
    """The answer took longer than the overall deadline (keep-alives or not)."""

    translation_key = "llm_answer_deadline"


class AnswerTooLong(LlamaServerError):
    """The answer grew past the size limit."""

    translation_key = "llm_answer_too_long"


class AnswerOverBudget(LlamaServerError):
    """The server went on streaming past the request's own `max_tokens`."""

    translation_key = "llm_answer_over_budget"


# llama-server's message when its tool-call parser cannot read the model's output.
_TOOL_PARSE_FAILURE = "does not match the expected"
# A router's messages: "model 'x' not found", "model name=x failed to load", and,
# for a GET with autoload=false, "model is not loaded".
_MODEL_UNAVAILABLE = re.compile(r"^model .*(?:not found|failed to load)")
_MODEL_NOT_LOADED = "model is not loaded"


def is_tool_parse_failure(message: str) -> bool:
    """Whether an error message is llama-server's tool parser giving up."""
    return _TOOL_PARSE_FAILURE in message


def error_message(body: Any, fallback: str) -> tuple[str, Mapping[str, Any]]:
    """Return (message, error object) of an OpenAI-style error body."""
    if isinstance(body, Mapping) and isinstance(error := body.get("error"), Mapping):
        return str(error.get("message") or fallback), error
    if isinstance(body, Mapping) and isinstance(error, str):
        return error, {}
    return fallback, {}


def error_for_status(
    status: int, message: str, error: Mapping[str, Any] | None = None
) -> LlamaServerError:
    """Map an HTTP error status (and llama-server's error object) to an error."""
    where = f"HTTP {status}: {message}"
    if error and error.get("type") == "exceed_context_size_error":
        return ContextOverflow(
            where,
            tokens=int(error.get("n_prompt_tokens", 0)),
            n_ctx=int(error.get("n_ctx", 0)),
        )
    if status == HTTPStatus.UNAUTHORIZED:
        return InvalidAuth(where, status=status, message=message)
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        return ServerLoading(where, status=status, message=message)
    if status == HTTPStatus.NOT_FOUND:
        return NotLlamaServer(where, status=status, message=message)
    if message == _MODEL_NOT_LOADED:
        return ModelNotLoaded(where)
    if _MODEL_UNAVAILABLE.match(message):
        return ModelUnavailable(where, message=message)
    if is_tool_parse_failure(message):
        return UnparsableToolCall(where, message=message)
    return LlamaServerError(where, status=status, message=message)
