"""What local_voice knows of a running llama-server: its /props, a router's models.

The model, its context size and slots, and what its chat template can do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import hashlib
from typing import Any

from .errors import NotLlamaServer

# How a chat template reads the clock (to write today's date, or the time).
_CLOCK = "strftime_now"


def _fingerprint(marker: Any) -> str:
    """Return a short hash of a per-process random marker ("" without one)."""
    if not marker:
        return ""
    return hashlib.sha256(str(marker).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class ServerProps:
    """What local_voice needs to know of a running llama-server (from /props)."""

    model: str
    n_ctx: int
    total_slots: int
    supports_tools: bool
    supports_vision: bool
    build: str
    #: The chat template writes the current time (so every prompt starts anew).
    template_reads_clock: bool = False
    #: Tells this server process from the next one, where the server says: a hash
    #: of the `media_marker` llama-server draws at random when it starts (hashed,
    #: as the marker guards prompts against injected media).
    instance: str = ""
    #: A router's models, by name, with their status ("loaded", "unloaded",
    #: "loading", "failed"); empty for a server of one model.
    models: tuple[tuple[str, str], ...] = ()
    #: Each loaded model's own properties (a router's child servers).
    loaded: Mapping[str, ServerProps] = field(default_factory=dict)
    #: How many models a router keeps loaded (`--models-max`; 0: no limit).
    models_max: int = 0

    @property
    def router(self) -> bool:
        """Return True for a router: several models behind one address."""
        return bool(self.models)

    @property
    def model_names(self) -> list[str]:
        """Return a router's models, by name."""
        return [name for name, _ in self.models]

    def model_for(self, chosen: str | None) -> str | None:
        """Return the model a router's requests name; None on a one-model server.

        The chosen one, else a loaded one, else the first listed.
        """
        if not self.router:
            return None
        loaded = [name for name, status in self.models if status == "loaded"]
        return chosen or next(iter(loaded), self.models[0][0])

    @classmethod
    def from_router(cls, props: Mapping[str, Any], models: list[Any]) -> ServerProps:
        """Parse a router's /props and its model list."""
        try:
            listed = tuple(
                (str(model["id"]), str(model["status"]["value"])) for model in models
            )
        except (KeyError, TypeError) as err:
            raise NotLlamaServer(f"unexpected router model list: {err!r}") from err
        if not listed:
            raise NotLlamaServer("the router has no models")
        return cls(
            model="llama-server router",
            n_ctx=0,
            total_slots=0,
            supports_tools=False,
            supports_vision=False,
            build=str(props.get("build_info", "")),
            models=listed,
            models_max=int(props.get("max_instances") or 0),
        )

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
                template_reads_clock=_CLOCK in str(props.get("chat_template", "")),
                instance=_fingerprint(props.get("media_marker")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise NotLlamaServer(f"unexpected /props answer: {err!r}") from err
