"""Each server kind's runtime data, and the coordinators that poll the servers.

`entry.runtime_data` is a `LlamaServerData` or a `WyomingData`: what the platforms,
diagnostics and the entity base share for one server. The coordinators poll, so
entities follow the server's availability.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from wyoming.info import Info

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .const import (
    CONF_MODEL,
    DOMAIN,
    LOGGER,
    SPEECH_TIMINGS_KEPT,
    UPDATE_INTERVAL_SECONDS,
)
from .llama_server.client import LlamaServerClient
from .llama_server.errors import InvalidAuth, LlamaServerError
from .llama_server.props import ServerProps
from .llama_server.url import strip_user_info
from .slots import SlotManager
from .wyoming_client.errors import WyomingError
from .wyoming_client.server import WyomingServer

type LlamaConfigEntry = ConfigEntry[LlamaServerData]
type WyomingConfigEntry = ConfigEntry[WyomingData]
type LocalVoiceConfigEntry = ConfigEntry[LlamaServerData | WyomingData]


@dataclass
class LlamaServerData:
    """A llama-server entry's client, coordinator and slot manager."""

    client: LlamaServerClient
    coordinator: LlamaServerCoordinator
    slots: SlotManager


@dataclass
class WyomingData:
    """A Wyoming entry's server, coordinator and recent request timings."""

    server: WyomingServer
    coordinator: WyomingCoordinator
    #: Per-request stage timings (STT time, time to first audio, audio length),
    #: newest last, shown in diagnostics so users can tune their set-up.
    timings: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=SPEECH_TIMINGS_KEPT)
    )


def subentry_model(props: ServerProps, subentry: ConfigSubentry) -> str | None:
    """Return the model a subentry's requests name on this server (None: one model)."""
    return props.model_for(subentry.data.get(CONF_MODEL))


class LlamaServerCoordinator(DataUpdateCoordinator[ServerProps]):
    """Polls llama-server's /props: model, context size, slots, tool support.

    It tells the slot manager the slot count, and when the server is back after
    being unreachable or has restarted between two polls (a restart empties the slots).
    """

    config_entry: LlamaConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry[Any],
        client: LlamaServerClient,
        slots: SlotManager,
    ) -> None:
        """Keep the client it polls with and the slot manager it informs."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {strip_user_info(client.url)}",
            update_interval=timedelta(seconds=UPDATE_INTERVAL_SECONDS),
        )
        self.client = client
        self.slots = slots
        #: On a router: each model's slot manager (its slots are its child server's).
        self.model_slots: dict[str, SlotManager] = {}
        #: The agents' models were asked for (once, at start).
        self._models_asked = False
        #: On a router: the seconds a turn last waited for each model to load.
        self.load_seconds: dict[str, float] = {}

    def slots_for(self, model: str | None) -> SlotManager:
        """Return the slot manager of a router's model; the server's own otherwise."""
        if model is None:
            return self.slots
        if model not in self.model_slots:
            self.model_slots[model] = self.slots.sibling()
        return self.model_slots[model]

    async def _async_update_data(self) -> ServerProps:
        """Fetch the server's properties; a refused key starts reauthentication."""
        try:
            props = await self.client.async_get_props()
        except InvalidAuth as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="invalid_auth"
            ) from err
        except LlamaServerError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="server_unavailable",
                translation_placeholders={
                    "server": strip_user_info(self.client.url),
                    "error": str(err),
                },
            ) from err
        if props.router:
            return await self._async_follow_models(props)
        self.slots.follow(props.total_slots)
        restarted = self.data is not None and props.instance != self.data.instance
        if not self.last_update_success or restarted:
            self.slots.server_back()
        return props

    async def _async_follow_models(self, props: ServerProps) -> ServerProps:
        """Read each loaded model of a router; tell its slot manager what it has.

        A model loaded since the last poll (or again) has empty slots: its agents
        warm them. A model not loaded has none, so nothing is warmed onto it: a
        warm-up would load it (and, past `--models-max`, unload another).
        """
        if not self._models_asked:
            self._models_asked = True
            await self._async_load_used_models(props)
        before = self.data.loaded if self.data is not None else {}
        loaded: dict[str, ServerProps] = {}
        for name, status in props.models:
            slots = self.slots_for(name)
            model = None
            if status == "loaded":
                model = await self.client.async_get_model_props(name)
            if model is None:
                if name in before:
                    LOGGER.info("%s: model %s was unloaded", self.name, name)
                slots.follow(0)
                continue
            loaded[name] = model
            slots.follow(model.total_slots)
            previous = before.get(name)
            if previous is None or previous.instance != model.instance:
                LOGGER.info(
                    "%s: model %s is loaded: %d slots of %d tokens",
                    self.name,
                    name,
                    model.total_slots,
                    model.n_ctx,
                )
                slots.server_back()
        return replace(props, loaded=loaded)

    @callback
    def note_load(self, model: str, seconds: float) -> None:
        """Keep how long a turn waited for its model to load (a router's switch)."""
        LOGGER.info(
            "%s: a turn waited %.1f s for model %s to load", self.name, seconds, model
        )
        self.load_seconds[model] = round(seconds, 1)
        self.async_update_listeners()

    async def _async_load_used_models(self, props: ServerProps) -> None:
        """At start, load the models this entry's agents use, if the router keeps all.

        As a server of one model has its model loaded when it starts. Past
        `--models-max`, loading them would only unload one another: each is loaded
        by its first chat instead.
        """
        used = {
            subentry_model(props, subentry)
            for subentry in self.config_entry.subentries.values()
        }
        if props.models_max and len(used) > props.models_max:
            return
        for name, status in props.models:
            if name in used and status == "unloaded":
                LOGGER.info("%s: loading model %s for its agents", self.name, name)
                try:
                    await self.client.async_load_model(name)
                except LlamaServerError as err:
                    LOGGER.warning("%s: model %s not loaded: %s", self.name, name, err)

    async def async_recheck(self, err: Exception) -> None:
        """Re-poll after a failed request; a refused key starts reauthentication.

        A 401 from the chat endpoint alone (a proxy in front of the server, say)
        would pass the poll, so it starts reauthentication itself.
        """
        if isinstance(err, InvalidAuth):
            self.config_entry.async_start_reauth(self.hass)
        await self.async_request_refresh()


class WyomingCoordinator(DataUpdateCoordinator[Info]):
    """Polls a Wyoming server's info: the voices, languages and models it offers."""

    config_entry: WyomingConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: ConfigEntry[Any], server: WyomingServer
    ) -> None:
        """Keep the server it describes."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {server}",
            update_interval=timedelta(seconds=UPDATE_INTERVAL_SECONDS),
        )
        self.server = server

    async def _async_update_data(self) -> Info:
        """Describe the server."""
        try:
            return await self.server.async_describe()
        except WyomingError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="server_unavailable",
                translation_placeholders={
                    "server": str(self.server),
                    "error": str(err),
                },
            ) from err
