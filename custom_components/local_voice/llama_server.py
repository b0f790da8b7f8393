"""Small async client for llama.cpp's llama-server HTTP API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp

from .const import REQUEST_TIMEOUT_SECONDS


class LlamaServerError(Exception):
    """Base error talking to llama-server."""


class CannotConnect(LlamaServerError):
    """The server could not be reached, or is still loading its model."""


class InvalidAuth(LlamaServerError):
    """The server refused the API key."""


class NotLlamaServer(LlamaServerError):
    """Something answers, but it is not llama-server."""


@dataclass(frozen=True, slots=True)
class ServerProps:
    """What local_voice needs to know of a running llama-server (from /props)."""

    model: str
    n_ctx: int
    total_slots: int
    supports_tools: bool
    supports_vision: bool
    build: str

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> ServerProps:
        """Parse /props; raise NotLlamaServer when its shape is not llama-server's."""
        try:
            settings = props["default_generation_settings"]
            caps = props.get("chat_template_caps") or {}
            path = str(props.get("model_alias") or props["model_path"])
            return cls(
                model=path.rsplit("/", 1)[-1],
                n_ctx=int(settings["n_ctx"]),
                total_slots=max(1, int(props.get("total_slots", 1))),
                supports_tools=bool(caps.get("supports_tools", False)),
                supports_vision=bool((props.get("modalities") or {}).get("vision")),
                build=str(props.get("build_info", "")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise NotLlamaServer(f"unexpected /props answer: {err!r}") from err


class LlamaServerClient:
    """Talks to one llama-server over Home Assistant's shared aiohttp session."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, api_key: str | None = None
    ) -> None:
        """Store the session and address; no I/O happens here."""
        self.session = session
        self.url = url.rstrip("/")
        self.api_key = api_key or None

    @property
    def headers(self) -> dict[str, str]:
        """Return the auth header llama-server's --api-key expects."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _get_json(self, path: str) -> Any:
        """GET a JSON document, mapping transport and HTTP failures to our errors."""
        try:
            async with self.session.get(
                f"{self.url}{path}",
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            ) as resp:
                if resp.status == HTTPStatus.UNAUTHORIZED:
                    raise InvalidAuth(f"{path}: HTTP 401")
                if resp.status == HTTPStatus.SERVICE_UNAVAILABLE:
                    raise CannotConnect(f"{path}: server is loading its model")
                if resp.status == HTTPStatus.NOT_FOUND:
                    raise NotLlamaServer(f"{path}: HTTP 404")
                if resp.status != HTTPStatus.OK:
                    raise CannotConnect(f"{path}: HTTP {resp.status}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise CannotConnect(f"{self.url}{path}: {err!r}") from err
        except ValueError as err:
            raise NotLlamaServer(f"{path}: answer is not JSON") from err

    async def async_get_props(self) -> ServerProps:
        """Check the server end to end: alive, key accepted, and really llama-server.

        /health is public even with --api-key, so /v1/models is what proves the key.
        """
        health = await self._get_json("/health")
        if not isinstance(health, dict) or health.get("status") != "ok":
            raise NotLlamaServer(f"unexpected /health answer: {health!r}")
        models = await self._get_json("/v1/models")
        if not isinstance(models, dict) or not isinstance(models.get("data"), list):
            raise NotLlamaServer("unexpected /v1/models answer")
        props = await self._get_json("/props")
        if not isinstance(props, dict):
            raise NotLlamaServer("unexpected /props answer")
        return ServerProps.from_props(props)
