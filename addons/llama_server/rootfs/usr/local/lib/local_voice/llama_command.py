"""Start llama-server from the llama_server add-on's options.

Run by the s6 service `llama_server`: fetches the GGUF model from Hugging Face (unless
a local `model_path` is set), then replaces itself with llama-server. The API key is
passed in the environment (LLAMA_API_KEY), not on the command line, so that `ps` does
not show it.

With more models in the `models` option, llama-server starts as a router: a generated
`--models-preset` file has a section per model (its file and the options' flags, its
own context size if given), and the router loads each on the first request that names
it, keeping at most `models_max` loaded.

With `role: rpc_worker` the add-on runs ggml-rpc-server instead: this machine's GPU
holds layers of a model that the llama-server of another machine loads, which lists
this one in its `rpc_servers` (`--rpc`). A worker has no model and announces nothing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
import re
import socket
import subprocess
import sys
import time

from fetch_model import ModelFile, ensure_file
from launcher import (
    Addon,
    Command,
    ConfigError,
    Options,
    Payloads,
    extra_args,
    main as launcher_main,
    text_option,
)

PORT = 8080
BINARY = "/usr/local/bin/llama-server"
RPC_PORT = 50052  # ggml-rpc-server's own default
RPC_BINARY = "/usr/local/bin/ggml-rpc-server"
RPC_WAIT = 120.0  # seconds a server waits for its workers (machines boot apart)
_LOGGER = logging.getLogger("local_voice")
_SPLIT = re.compile(r"-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")


def gguf_parts(filename: str) -> list[str]:
    """List all files of a split GGUF (`x-00001-of-00003.gguf`), or `filename`.

    llama-server is given the first part and loads the others from the same folder,
    so every part has to be fetched.
    """
    match = _SPLIT.search(filename)
    if match is None:
        return [filename]
    count = int(match["count"])
    stem = filename[: match.start()]
    return [f"{stem}-{index:05d}-of-{count:05d}.gguf" for index in range(1, count + 1)]


def resolve_model(options: Options, models_dir: Path) -> Path:
    """Return the GGUF file to load: `model_path`, or fetched from Hugging Face."""
    if local := text_option(options, "model_path"):
        path = Path(local)
        if not path.is_file():
            msg = (
                f"model_path '{local}' is not a file: copy the GGUF to /share "
                "(for example /share/models/model.gguf) or clear model_path to "
                "download model_file from model_repo"
            )
            raise ConfigError(msg)
        return path
    repo, filename = (
        text_option(options, "model_repo"),
        text_option(options, "model_file"),
    )
    if not repo or not filename:
        msg = "Set model_repo and model_file (a Hugging Face GGUF), or model_path"
        raise ConfigError(msg)
    token = text_option(options, "hf_token") or None
    paths = [
        ensure_file(
            ModelFile(repo, part, repo_option="model_repo", file_option="model_file"),
            models_dir,
            token=token,
        )
        for part in gguf_parts(filename)
    ]
    return paths[0]


def model_name(path: Path) -> str:
    """Return the name a router serves a model file under: its file name, bare."""
    return _SPLIT.sub("", path.name).removesuffix(".gguf")


def resolve_models(options: Options, models_dir: Path) -> dict[str, tuple[Path, int]]:
    """Return each model to serve, by name, with its file and context size.

    The model of `model_repo`/`model_file` (or `model_path`) first, then each entry
    of the `models` option: a `path`, or a `repo` and `file` fetched as above.
    """
    context = int(options["context_size"])
    main = resolve_model(options, models_dir)
    models = {model_name(main): (main, context)}
    for number, entry in enumerate(options.get("models") or [], 1):
        where = f"models entry {number}"
        if not entry.get("path") and not (entry.get("repo") and entry.get("file")):
            raise ConfigError(f"{where}: give its path, or its repo and file")
        own = {
            "model_path": entry.get("path") or "",
            "model_repo": entry.get("repo") or "",
            "model_file": entry.get("file") or "",
        }
        try:
            path = resolve_model({**options, **own}, models_dir)
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from err
        name = entry.get("name") or model_name(path)
        if name in models:
            msg = f"{where}: the name '{name}' is taken: give the entry another name"
            raise ConfigError(msg)
        models[name] = (path, int(entry.get("context_size") or context))
    return models


def router_preset(options: Options, models: dict[str, tuple[Path, int]]) -> str:
    """Return the router's `--models-preset` file: one section per model.

    Keys are llama-server's long options; each model gets the options' flags.
    """
    sections = []
    for name, (path, context) in models.items():
        lines = [
            f"[{name}]",
            f"model = {path}",
            "jinja = true",
            f"ctx-size = {context}",
            f"parallel = {options['parallel']}",
            f"flash-attn = {options['flash_attention']}",
            f"batch-size = {options['batch_size']}",
            f"ubatch-size = {options['ubatch_size']}",
        ]
        if options.get("swa_full", True):
            lines.append("swa-full = true")
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def build_router_command(
    options: Options, preset: Path, count: int, *, binary: str, host: str, port: int
) -> Command:
    """Build the router's command line (`extra_args` reach every model)."""
    if rpc_servers(options):
        # A worker serves one client at a time, and each model of a router is a
        # server of its own: the second would wait on the worker for ever.
        msg = (
            "rpc_servers works with one model: clear the models option, or "
            "rpc_servers (an RPC worker serves one llama-server at a time)"
        )
        raise ConfigError(msg)
    models_max = int(options.get("models_max") or count)
    argv = [
        binary,
        "--host", host,
        "--port", str(port),
        "--models-preset", str(preset),
        "--models-max", str(models_max),
        "--no-webui",
    ]  # fmt: skip
    argv += extra_args(options)
    return Command(argv, *_key_env(options))


def _key_env(options: Options) -> tuple[dict[str, str], frozenset[str]]:
    env = {"LLAMA_API_KEY": key} if (key := text_option(options, "api_key")) else {}
    return env, frozenset(env)


def build_command(
    options: Options, model: Path, *, binary: str = BINARY, host: str, port: int
) -> Command:
    """Build the llama-server command line for these options (`--jinja` always)."""
    argv = [
        binary,
        "--host", host,
        "--port", str(port),
        "--model", str(model),
        "--jinja",
        "--ctx-size", str(options["context_size"]),
        "--parallel", str(options["parallel"]),
        "--flash-attn", str(options["flash_attention"]),
        "--batch-size", str(options["batch_size"]),
        "--ubatch-size", str(options["ubatch_size"]),
        "--no-webui",
    ]  # fmt: skip
    if options.get("swa_full", True):
        # Sliding-window models (gpt-oss, Gemma 3) otherwise drop the cache of earlier
        # turns and re-read the whole prompt on every request.
        argv.append("--swa-full")
    if servers := rpc_servers(options):
        argv += ["--rpc", ",".join(servers)]
    argv += extra_args(options)
    return Command(argv, *_key_env(options))


def rpc_servers(options: Options) -> list[str]:
    """Return the workers (`host:port`) that hold layers of this server's model."""
    return [str(server).strip() for server in options.get("rpc_servers") or []]


def wait_for_workers(servers: list[str], limit: float) -> None:
    """Wait until every RPC worker accepts a connection, at most `limit` seconds.

    llama-server exits when a worker does not answer; waiting here lets machines
    start in any order, and a worker that stays away gets a message saying what to do.
    """
    deadline = time.monotonic() + limit
    for server in servers:
        host, _, port = server.rpartition(":")
        address = (host.strip("[]"), int(port))
        logged = False
        while True:
            try:
                socket.create_connection(address, timeout=3).close()
                break
            except OSError as err:
                if time.monotonic() >= deadline:
                    msg = (
                        f"RPC worker {server} does not answer ({err}): start the "
                        "llama-server add-on there with role rpc_worker and its "
                        f"port {RPC_PORT}/tcp mapped, then list that machine's "
                        "address and port in rpc_servers"
                    )
                    raise ConfigError(msg) from err
                if not logged:
                    _LOGGER.info("Waiting for RPC worker %s", server)
                    logged = True
                time.sleep(1)


def log_devices(binary: str, servers: list[str]) -> None:
    """Log the devices llama.cpp can use here, with the RPC workers' when given.

    llama.cpp splits the layers in proportion to each device's free memory (the
    exact split is in the load log at `-lv 4`; `--tensor-split` changes it).
    """
    argv = [
        binary,
        *(["--rpc", ",".join(servers)] if servers else []),
        "--list-devices",
    ]
    try:
        listed = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        _LOGGER.warning("llama-server could not list its devices: %s", err)
        return
    _LOGGER.info("Devices llama.cpp can use (GPUs and RPC workers; none: CPU only)")
    for line in listed.splitlines():
        if line.strip() and line.strip() != "Available devices:":
            _LOGGER.info("Device: %s", line.strip())


def build_worker_command(
    options: Options, cache: Path, *, binary: str, host: str, port: int
) -> Command:
    """Build the ggml-rpc-server command line of the `rpc_worker` role.

    `--cache` keeps the tensors a server sent under `cache`, so the next load of the
    same model sends only their hashes over the network.
    """
    argv = [binary, "--host", host, "--port", str(port), "--cache"]
    argv += extra_args(options)
    return Command(argv, {"LLAMA_CACHE": str(cache)})


def discovery(options: Options, hostname: str, port: int) -> Payloads:
    """Return what is announced to Home Assistant: local_voice's llama_server.

    A worker announces nothing: it is no server Home Assistant could use.
    """
    if options.get("role") == "rpc_worker":
        return {}
    return {
        "local_voice": {
            "service": "llama_server",
            "host": hostname,
            "port": port,
            "api_key": text_option(options, "api_key"),
        }
    }


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--binary", default=BINARY, help="llama-server executable")
    parser.add_argument("--rpc-binary", default=RPC_BINARY, help="ggml-rpc-server")
    parser.add_argument("--rpc-port", type=int, default=RPC_PORT, help="worker port")
    parser.add_argument(
        "--rpc-wait", type=float, default=RPC_WAIT, help="seconds to wait for workers"
    )


def _prepare(args: argparse.Namespace, options: Options) -> Command:
    if options.get("role") == "rpc_worker":
        log_devices(args.binary, [])
        return build_worker_command(
            options,
            args.models_dir / "rpc-cache",
            binary=args.rpc_binary,
            host=args.host,
            port=args.rpc_port,
        )
    if servers := rpc_servers(options):
        wait_for_workers(servers, args.rpc_wait)
    log_devices(args.binary, servers)
    models = resolve_models(options, args.models_dir)
    if len(models) == 1:
        ((model, _),) = models.values()
        return build_command(
            options, model, binary=args.binary, host=args.host, port=args.port
        )
    preset = args.models_dir / "router-models.ini"
    preset.parent.mkdir(parents=True, exist_ok=True)
    preset.write_text(router_preset(options, models), encoding="utf-8")
    return build_router_command(
        options,
        preset,
        len(models),
        binary=args.binary,
        host=args.host,
        port=args.port,
    )


ADDON = Addon(__doc__.splitlines()[0], PORT, _prepare, discovery, _add_arguments)


def main(argv: list[str] | None = None) -> int:
    """Start llama-server (or print its command with --dry-run)."""
    return launcher_main(ADDON, argv)


if __name__ == "__main__":
    sys.exit(main())
