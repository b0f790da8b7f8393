"""Turn an add-on's options into the command that starts its server.

Shared by the three local_voice add-ons. Written once, in addons/shared/; since an
add-on's Docker build context is only its own folder, scripts/sync-addon-shared copies
it into each add-on (tests/addons/test_shared_code.py keeps the copies equal). Each
add-on's `<name>_command.py` says what its options mean; this module does the rest
the same way for all three: read `/data/options.json`, fetch the model, log the
command (secrets hidden), then print it (`--dry-run`, what the tests use) or replace
this process with it, so that s6 supervises the server itself. `--discovery SERVICE`
prints the payload the discovery service sends to Home Assistant for SERVICE.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import shlex
import sys
from typing import Any, NoReturn

from fetch_model import FetchError

_LOGGER = logging.getLogger("local_voice")

OPTIONS = Path("/data/options.json")
MODELS_DIR = Path("/config/models")
ALL_INTERFACES = "0.0.0.0"  # the add-on network: Home Assistant reaches it there

type Options = Mapping[str, Any]
type Payloads = dict[str, dict[str, Any]]


class ConfigError(Exception):
    """An option value the server cannot start with; the message says which."""


@dataclass(frozen=True)
class Command:
    """A server command line and the environment variables it needs on top."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    secret_env: frozenset[str] = frozenset()

    def describe(self) -> str:
        """Render the command for the log, secret values replaced by ***."""
        env = [
            f"{key}={'***' if key in self.secret_env else shlex.quote(value)}"
            for key, value in sorted(self.env.items())
        ]
        return shlex.join(self.argv) + "".join(f" [{item}]" for item in env)

    def as_json(self) -> str:
        """Render the exact command, secrets included, as `--dry-run` prints it."""
        return json.dumps({"argv": self.argv, "env": self.env})


@dataclass(frozen=True)
class Addon:
    """What one add-on plugs into the shared launcher."""

    description: str
    port: int
    prepare: Callable[[argparse.Namespace, Options], Command]
    discovery: Callable[[Options, str, int], Payloads]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda _parser: None


def load_options(path: Path) -> dict[str, Any]:
    """Read the options the Supervisor wrote (validated against config.yaml)."""
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        msg = f"Cannot read the add-on options from {path}: {err}"
        raise ConfigError(msg) from err
    if not isinstance(options, dict):
        msg = f"{path} does not hold an options object"
        raise ConfigError(msg)
    return options


def text_option(options: Options, key: str) -> str:
    """Return an optional text option, "" when it is missing, null or blank."""
    value = options.get(key)
    return "" if value is None else str(value).strip()


def extra_args(options: Options, key: str = "extra_args") -> list[str]:
    """Split the free-form extra arguments option the way a shell would."""
    try:
        return shlex.split(text_option(options, key))
    except ValueError as err:
        msg = f"Option '{key}' is not a valid argument list: {err}"
        raise ConfigError(msg) from err


def wyoming_discovery(service: str) -> Callable[[Options, str, int], Payloads]:
    """Return the discovery of a Wyoming server, whatever its options.

    Two messages: local_voice's `service` (asr or tts), and Home Assistant's own
    Wyoming integration, which reads a URI.
    """

    def payloads(options: Options, hostname: str, port: int) -> Payloads:
        del options  # the same whatever the options
        return {
            "local_voice": {"service": service, "host": hostname, "port": port},
            "wyoming": {"uri": f"tcp://{hostname}:{port}"},
        }

    return payloads


def configure_logging() -> None:
    """Log lines as the add-on log shows them; keep per-request HTTP chatter out."""
    logging.basicConfig(
        level=logging.INFO,
        format="[%(asctime)s] %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "httpx2", "httpcore", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _discovery_payload(addon: Addon, options: Options, args: argparse.Namespace) -> str:
    """Return the JSON payload of the discovery message for `args.discovery`."""
    payloads = addon.discovery(options, args.hostname, args.port)
    if not payloads:
        return ""  # nothing to announce with these options (the run script says so)
    if args.discovery not in payloads:
        msg = f"This add-on announces {sorted(payloads)}, not '{args.discovery}'"
        raise ConfigError(msg)
    return json.dumps(payloads[args.discovery])


def main(addon: Addon, argv: list[str] | None = None) -> int:
    """Run the command line shared by the add-ons' `<name>_command.py`."""
    parser = argparse.ArgumentParser(description=addon.description)
    parser.add_argument("--options", type=Path, default=OPTIONS)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--host", default=ALL_INTERFACES, help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=addon.port, help="port to listen on"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the command")
    parser.add_argument("--discovery", metavar="SERVICE", help="print its payload")
    parser.add_argument("--hostname", default="", help="this add-on's host name")
    addon.add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        options = load_options(args.options)
        if args.discovery is not None:
            if payload := _discovery_payload(addon, options, args):
                print(payload)
            return 0
        command = addon.prepare(args, options)
    except (ConfigError, FetchError) as err:
        _LOGGER.error("%s", err)  # noqa: TRY400 - the message is the whole story
        return 1
    _LOGGER.info("Starting: %s", command.describe())
    if args.dry_run:
        print(command.as_json())
        return 0
    return _exec(command)


def _exec(command: Command) -> NoReturn:
    """Become the server: s6 then supervises it directly, signals reach it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command.argv[0], command.argv, {**os.environ, **command.env})
