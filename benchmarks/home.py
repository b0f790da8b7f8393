"""A home like real ones, for the benchmarks that talk to Assist in the test harness.

Its devices really change state when Assist's intents call their services, so that
what a command did is read from the state machine: core integrations configured by
YAML, each device backed by hidden, unexposed helpers (`input_boolean`,
`input_number`, `input_select`, all named `*.backing_*`):

* lights, switches, fans, covers and locks: `template` entities on an input_boolean
  (lights also on an input_number for their brightness);
* thermostats: `template` climate entities whose target temperature is an
  input_number and whose current temperature is the room's sensor;
* media players: `universal` media players whose state is an input_select and whose
  volume is an input_number (play, pause, volume and on/off change them);
* sensors: `template` sensors with fixed values, for questions;
* two real `input_boolean` switches (guest mode, vacation mode) and the
  `shopping_list` to-do list;
* a kitchen satellite device that can run timers (a handler records their events).

The areas are the onboarding's (Living Room, Kitchen, Bedroom) and four more, some on
floors; some devices are in no area (as a new install leaves them), some names share
a word ("Kitchen ceiling", "Kitchen counter"; "Front door", "Back door", "Garage
door"), and one device is not exposed to Assist (it must never change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_homeassistant_custom_component.common import MockConfigEntry

from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import (
    async_expose_entity,
)
from homeassistant.components.intent import (
    TimerEventType,
    TimerInfo,
    async_register_timer_handler,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
)
from homeassistant.setup import async_setup_component

FLOORS = {"ground": "Ground floor", "upstairs": "Upstairs"}
# area key -> (name, floor key): the onboarding's three, then four more.
AREAS: dict[str, tuple[str, str | None]] = {
    "living_room": ("Living Room", "ground"),
    "kitchen": ("Kitchen", "ground"),
    "bedroom": ("Bedroom", "upstairs"),
    "hallway": ("Hallway", "ground"),
    "bathroom": ("Bathroom", "upstairs"),
    "kids_room": ("Kids Room", "upstairs"),
    "office": ("Office", None),
}


@dataclass(frozen=True)
class Device:
    """One device of the home, in its initial state.

    `state`: "on"/"off" (light, switch, fan, input_boolean), "open"/"closed" (cover),
    "locked"/"unlocked" (lock), "playing"/"paused"/"idle"/"off" (media player), the
    value (sensor), the target temperature (climate), the item count (todo).
    `level`: a light's brightness (0-255) or a media player's volume (0-1).
    """

    entity_id: str
    name: str
    area: str | None
    state: str
    level: float = 0
    exposed: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.entity_id.split(".")[0]

    @property
    def key(self) -> str:
        return self.entity_id.split(".")[1]


DEVICES: list[Device] = [
    Device("light.kitchen_ceiling", "Kitchen ceiling", "kitchen", "off"),
    Device("light.kitchen_counter", "Kitchen counter", "kitchen", "off"),
    Device("light.floor_lamp", "Floor lamp", "living_room", "on", 180),
    Device("light.living_room_ceiling", "Living room ceiling", "living_room", "off"),
    Device("light.bedroom_light", "Bedroom light", "bedroom", "off"),
    Device("light.bedside_lamp", "Bedside lamp", "bedroom", "off"),
    Device("light.hallway_light", "Hallway light", "hallway", "on", 255),
    Device("light.mirror_light", "Mirror light", "bathroom", "off"),
    Device("light.desk_lamp", "Desk lamp", "office", "on", 200),
    Device("light.night_light", "Night light", "kids_room", "off"),
    Device("light.porch_light", "Porch light", None, "off"),
    Device("light.garden_lights", "Garden lights", None, "off"),
    Device("switch.coffee_machine", "Coffee machine", "kitchen", "off"),
    Device("switch.dishwasher", "Dishwasher", "kitchen", "off"),
    Device("switch.monitor", "Monitor", "office", "on"),
    Device("switch.electric_blanket", "Electric blanket", "bedroom", "off"),
    Device("switch.christmas_tree", "Christmas tree", None, "off"),
    Device("switch.garden_pump", "Garden pump", None, "off"),
    Device("switch.server_rack", "Server rack", "office", "on", exposed=False),
    Device("fan.bedroom_fan", "Bedroom fan", "bedroom", "off"),
    Device("fan.extractor_fan", "Extractor fan", "bathroom", "on"),
    Device("fan.ceiling_fan", "Ceiling fan", "living_room", "off"),
    Device(
        "cover.living_room_blinds",
        "Living room blinds",
        "living_room",
        "open",
        extra={"device_class": "blind"},
    ),
    Device(
        "cover.bedroom_blinds",
        "Bedroom blinds",
        "bedroom",
        "open",
        extra={"device_class": "blind"},
    ),
    Device(
        "cover.garage_door",
        "Garage door",
        None,
        "closed",
        extra={"device_class": "garage"},
    ),
    Device(
        "cover.kitchen_window",
        "Kitchen window",
        "kitchen",
        "closed",
        extra={"device_class": "window"},
    ),
    Device("lock.front_door", "Front door", None, "locked"),
    Device("lock.back_door", "Back door", "kitchen", "unlocked"),
    Device(
        "climate.thermostat",
        "Thermostat",
        "living_room",
        "21",
        extra={"current": "sensor.living_room_temperature"},
    ),
    Device(
        "climate.bedroom_heater",
        "Bedroom heater",
        "bedroom",
        "19",
        extra={"current": "sensor.bedroom_temperature"},
    ),
    Device("media_player.tv", "TV", "living_room", "playing", 0.3),
    Device("media_player.kitchen_speaker", "Kitchen speaker", "kitchen", "paused", 0.5),
    Device("media_player.kids_speaker", "Kids speaker", "kids_room", "off", 0.2),
    Device(
        "sensor.living_room_temperature",
        "Living room temperature",
        "living_room",
        "20.5",
        extra={"unit": "°C", "device_class": "temperature"},
    ),
    Device(
        "sensor.bedroom_temperature",
        "Bedroom temperature",
        "bedroom",
        "18.6",
        extra={"unit": "°C", "device_class": "temperature"},
    ),
    Device(
        "sensor.kitchen_temperature",
        "Kitchen temperature",
        "kitchen",
        "22.1",
        extra={"unit": "°C", "device_class": "temperature"},
    ),
    Device(
        "sensor.outdoor_temperature",
        "Outdoor temperature",
        None,
        "7.5",
        extra={"unit": "°C", "device_class": "temperature"},
    ),
    Device(
        "sensor.bathroom_humidity",
        "Bathroom humidity",
        "bathroom",
        "68",
        extra={"unit": "%", "device_class": "humidity"},
    ),
    Device(
        "sensor.power_usage",
        "Power usage",
        None,
        "412",
        extra={"unit": "W", "device_class": "power"},
    ),
    Device("input_boolean.guest_mode", "Guest mode", None, "off"),
    Device("input_boolean.vacation_mode", "Vacation mode", None, "off"),
    Device("todo.shopping_list", "Shopping list", "kitchen", "2"),
]
BY_ID = {device.entity_id: device for device in DEVICES}
SHOPPING_LIST = ["Bread", "Coffee"]  # the list's items before each conversation
SATELLITES = (
    "kitchen",
    "bedroom",
    "living_room",
    "hallway",
)  # voice satellites, by area
TIMER_SATELLITE = "kitchen"  # the one that can run timers
MEDIA_STATES = ["playing", "paused", "idle", "off"]

# A snapshot: every device's (state, attributes), plus the shopping list's items.
Snapshot = dict[str, tuple[str, dict[str, Any]]]
ITEMS = "todo.shopping_list#items"


def _backing(device: Device, suffix: str = "") -> str:
    return f"backing_{device.key}{suffix}"


def _is_on(helper: str) -> str:
    return f"{{{{ is_state('input_boolean.{helper}', 'on') }}}}"


def _set(domain: str, service: str, helper: str, **data: Any) -> dict[str, Any]:
    action = {
        "action": f"{domain}.{service}",
        "target": {"entity_id": f"{domain}.{helper}"},
    }
    return action | ({"data": data} if data else {})


def _switched(device: Device, on: str, off: str) -> dict[str, Any]:
    """A template entity's config: name, ids, and its two actions on its helper."""
    helper = _backing(device)
    return {
        "name": device.name,
        "unique_id": f"home_{device.key}",
        "default_entity_id": device.entity_id,
        on: _set("input_boolean", "turn_on", helper),
        off: _set("input_boolean", "turn_off", helper),
    }


def configuration() -> dict[str, dict[str, Any]]:
    """The YAML configuration of the home, per component."""
    booleans: dict[str, Any] = {}
    numbers: dict[str, Any] = {}
    selects: dict[str, Any] = {}
    template: dict[str, list[dict[str, Any]]] = {}
    universal: list[dict[str, Any]] = []
    for device in DEVICES:
        helper = _backing(device)
        entity: dict[str, Any] | None = None
        if device.domain in ("light", "switch", "fan", "cover", "lock"):
            booleans[helper] = {"name": helper}
        match device.domain:
            case "light":
                level = _backing(device, "_level")
                numbers[level] = {"name": level, "min": 0, "max": 255, "step": 1}
                entity = _switched(device, "turn_on", "turn_off") | {
                    "state": _is_on(helper),
                    "level": f"{{{{ states('input_number.{level}') | int }}}}",
                    "set_level": [
                        _set(
                            "input_number", "set_value", level, value="{{ brightness }}"
                        ),
                        _set("input_boolean", "turn_on", helper),
                    ],
                }
            case "switch" | "fan":
                entity = _switched(device, "turn_on", "turn_off")
                entity["state"] = _is_on(helper)
            case "cover":
                entity = _switched(device, "open_cover", "close_cover")
                entity["state"] = (
                    f"{{{{ 'open' if is_state('input_boolean.{helper}', 'on')"
                    " else 'closed' }}"
                )
                entity["device_class"] = device.extra["device_class"]
            case "lock":
                entity = _switched(device, "lock", "unlock")
                entity["state"] = _is_on(helper)
            case "sensor":
                entity = {
                    "name": device.name,
                    "unique_id": f"home_{device.key}",
                    "default_entity_id": device.entity_id,
                    "state": device.state,
                    "unit_of_measurement": device.extra["unit"],
                    "device_class": device.extra["device_class"],
                    "state_class": "measurement",
                }
            case "climate":
                numbers[helper] = {"name": helper, "min": 5, "max": 30, "step": 0.5}
                entity = {
                    "name": device.name,
                    "unique_id": f"home_{device.key}",
                    "default_entity_id": device.entity_id,
                    "hvac_modes": "{{ ['heat'] }}",
                    "hvac_mode": "heat",
                    "current_temperature": (
                        f"{{{{ states('{device.extra['current']}') | float(0) }}}}"
                    ),
                    "target_temperature": f"{{{{ states('input_number.{helper}') }}}}",
                    "min_temperature": 5,
                    "max_temperature": 30,
                    "target_temperature_step": 0.5,
                    "temperature_unit": "°C",
                    "set_hvac_mode": [],
                    "set_temperature": [
                        _set(
                            "input_number",
                            "set_value",
                            helper,
                            value="{{ temperature }}",
                        )
                    ],
                }
            case "media_player":
                volume = _backing(device, "_volume")
                selects[helper] = {"name": helper, "options": MEDIA_STATES}
                numbers[volume] = {"name": volume, "min": 0, "max": 1, "step": 0.01}
                universal.append(_media_player(device, helper, volume))
            case "input_boolean":
                booleans[device.key] = {"name": device.name}
        if entity is not None:
            template.setdefault(device.domain, []).append(entity)
    return {
        "input_boolean": booleans,
        "input_number": numbers,
        "input_select": selects,
        "template": [template],
        "media_player": universal,
    }


def _media_player(device: Device, helper: str, volume: str) -> dict[str, Any]:
    """A universal media player: state and volume on helpers, its commands set them."""

    def select(option: str) -> dict[str, Any]:
        return _set("input_select", "select_option", helper, option=option)

    return {
        "platform": "universal",
        "name": device.name,
        "unique_id": f"home_{device.key}",
        "state_template": f"{{{{ states('input_select.{helper}') }}}}",
        "attributes": {"volume_level": f"input_number.{volume}"},
        "commands": {
            # On: idle when it was off; a player already on keeps its state.
            "turn_on": _set(
                "input_select",
                "select_option",
                helper,
                option=f"{{{{ 'idle' if is_state('input_select.{helper}', 'off')"
                f" else states('input_select.{helper}') }}}}",
            ),
            "turn_off": select("off"),
            "media_play": select("playing"),
            "media_pause": select("paused"),
            "media_stop": select("idle"),
            "volume_set": _set(
                "input_number", "set_value", volume, value="{{ volume_level }}"
            ),
        },
    }


def create_areas(
    hass: HomeAssistant,
    floors: dict[str, str],
    areas: dict[str, tuple[str, str | None]],
) -> dict[str, str]:
    """Create the floors and the areas (each on its floor key, or none); area ids."""
    floor_ids = {
        key: fr.async_get(hass).async_create(name).floor_id
        for key, name in floors.items()
    }
    registry = ar.async_get(hass)
    return {
        key: registry.async_create(name, floor_id=floor_ids.get(floor or "")).id
        for key, (name, floor) in areas.items()
    }


@dataclass
class Home:
    """The home set up in a Home Assistant: its areas, satellites and timer events."""

    hass: HomeAssistant
    area_ids: dict[str, str]
    satellites: dict[str, str]  # area key -> device id
    timers: list[tuple[TimerEventType, TimerInfo]] = field(default_factory=list)

    async def reset(self) -> None:
        """Put every device back in its initial state; forget timers and list items."""
        for device in DEVICES:
            helper = _backing(device)
            match device.domain:
                case "light" | "switch" | "fan" | "cover" | "lock":
                    on = device.state in ("on", "open", "locked")
                    await self._set(f"input_boolean.{helper}", on)
                    if device.domain == "light":
                        await self._set(f"input_number.{helper}_level", device.level)
                case "input_boolean":
                    await self._set(device.entity_id, device.state == "on")
                case "climate":
                    await self._set(f"input_number.{helper}", float(device.state))
                case "media_player":
                    await self._set(f"input_select.{helper}", device.state)
                    await self._set(f"input_number.{helper}_volume", device.level)
        await self._reset_shopping_list()
        self._cancel_timers()
        self.timers.clear()
        await self.hass.async_block_till_done()

    async def _set(self, entity_id: str, value: bool | float | str) -> None:
        """Set a helper: an input_boolean on or off, an input_number, an option."""
        domain = entity_id.split(".", maxsplit=1)[0]
        data: dict[str, Any] = {"entity_id": entity_id}
        if isinstance(value, bool):
            service = "turn_on" if value else "turn_off"
        elif isinstance(value, str):
            service, data["option"] = "select_option", value
        else:
            service, data["value"] = "set_value", value
        await self.hass.services.async_call(domain, service, data, blocking=True)

    async def _reset_shopping_list(self) -> None:
        items = await self.shopping_list()
        if items == SHOPPING_LIST:
            return
        if uids := await self._item_uids():
            # By uid: by summary, one call removes one of several "Milk" items.
            await self.hass.services.async_call(
                "todo",
                "remove_item",
                {"entity_id": "todo.shopping_list", "item": uids},
                blocking=True,
            )
        for item in SHOPPING_LIST:
            await self.hass.services.async_call(
                "todo",
                "add_item",
                {"entity_id": "todo.shopping_list", "item": item},
                blocking=True,
            )

    def _cancel_timers(self) -> None:
        from homeassistant.components.intent.timers import (  # noqa: PLC0415
            TIMER_DATA,
        )

        manager = self.hass.data[TIMER_DATA]
        for timer_id in list(manager.timers):
            manager.cancel_timer(timer_id)

    async def shopping_list(self) -> list[str]:
        """The summaries of the shopping list's items, in order."""
        return [str(item["summary"]) for item in await self._items()]

    async def _item_uids(self) -> list[str]:
        return [str(item["uid"]) for item in await self._items()]

    async def _items(self) -> list[dict[str, Any]]:
        response = await self.hass.services.async_call(
            "todo",
            "get_items",
            {"entity_id": "todo.shopping_list"},
            blocking=True,
            return_response=True,
        )
        assert response is not None
        return response["todo.shopping_list"]["items"]  # type: ignore[index,call-overload,no-any-return]

    async def snapshot(self) -> Snapshot:
        """Every device's state and attributes (exposed or not), the list's items."""
        shot: Snapshot = {}
        for device in DEVICES:
            state = self.hass.states.get(device.entity_id)
            assert state is not None, device.entity_id
            shot[device.entity_id] = (state.state, dict(state.attributes))
        shot[ITEMS] = ("", {"items": await self.shopping_list()})
        return shot


async def async_setup_home(hass: HomeAssistant) -> Home:
    """Set up the home in a (test) Home Assistant, in its initial state."""
    config = configuration()
    for component in ("homeassistant", "conversation", "intent", "llm", "todo"):
        assert await async_setup_component(hass, component, {}), component
    for component in ("input_boolean", "input_number", "input_select", "template"):
        assert await async_setup_component(
            hass, component, {component: config[component]}
        )
    assert await async_setup_component(
        hass, "media_player", {"media_player": config["media_player"]}
    )
    shopping = MockConfigEntry(domain="shopping_list", title="Shopping list")
    shopping.add_to_hass(hass)
    assert await hass.config_entries.async_setup(shopping.entry_id)
    await hass.async_block_till_done()

    area_ids = create_areas(hass, FLOORS, AREAS)
    entities = er.async_get(hass)
    for device in DEVICES:
        entry = entities.async_get(device.entity_id)
        assert entry is not None, f"{device.entity_id} has no registry entry"
        entities.async_update_entity(
            device.entity_id,
            area_id=area_ids[device.area] if device.area else None,
            name=device.name if device.domain == "todo" else None,
        )
        async_expose_entity(hass, conversation.DOMAIN, device.entity_id, device.exposed)
    for entry in list(entities.entities.values()):
        if entry.entity_id.split(".")[1].startswith("backing_"):
            async_expose_entity(hass, conversation.DOMAIN, entry.entity_id, False)

    home = Home(hass, area_ids, {})
    owner = MockConfigEntry(domain="home_satellites")
    owner.add_to_hass(hass)
    devices = dr.async_get(hass)
    for key in SATELLITES:
        satellite = devices.async_get_or_create(
            config_entry_id=owner.entry_id,
            identifiers={("home_satellites", key)},
            name=f"{AREAS[key][0]} satellite",
        )
        home.satellites[key] = devices.async_update_device(
            satellite.id, area_id=area_ids[key]
        ).id  # type: ignore[union-attr]
    async_register_timer_handler(
        hass,
        home.satellites[TIMER_SATELLITE],
        lambda kind, info: home.timers.append((kind, info)),
    )
    # A universal player renders its state template on the first change only.
    for device in DEVICES:
        if device.domain == "media_player":
            await home._set(f"input_select.{_backing(device)}", "idle")
    await home.reset()
    return home
