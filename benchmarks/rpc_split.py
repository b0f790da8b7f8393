"""What spreading a model over RPC workers costs: the same server, alone and split.

llama-server and ggml-rpc-server from `scripts/backends --rpc` (the add-on image's
llama.cpp release, built for this CPU), Qwen2.5-Coder-0.5B, on loopback:

* local: llama-server with every layer on this machine (2 threads);
* split: the same llama-server with `--rpc` over two workers (1 thread each, the
  same 2 cores), layers shared between them, as the add-on's `rpc_servers` does.

Each side reads the same ~1,000-token prompt with the cache off and writes 64 tokens,
runs alternating. It prints the servers' own prompt and generation speeds (medians),
how long each took to start (the split one's first start sends the weights to the
workers; the restart finds them in the workers' `--cache`), and on the last lines
`rpc_prompt_ratio` and `rpc_gen_ratio` (split ÷ local speed: below 1 is what the
network hops cost). Loopback has no real network: on a LAN every token's activations
cross it too, so these are the least a split costs.

    scripts/backends --rpc && .venv/bin/python benchmarks/rpc_split.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Any
import urllib.request

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.backends import (  # noqa: E402
    BACKENDS,
    QWEN,
    Backend,
    require,
    running,
    start,
)

RPC = BACKENDS / "llama.cpp-rpc"
PROMPT = " ".join(
    f"Room {n} has a lamp, a heater and a window sensor." for n in range(90)
)


def server_argv(*extra: str, threads: int = 2) -> list[str]:
    """The llama-server command: Qwen 0.5B, every layer offloaded, one slot."""
    argv = [str(RPC / "llama-server"), "-m", str(QWEN), "-c", "4096", "-np", "1"]
    argv += ["-t", str(threads), "-ngl", "all", "--no-webui"]
    return [*argv, "--host", "127.0.0.1", "--port", "{port}", *extra]


def ask(server: Backend) -> dict[str, Any]:
    """Send the prompt uncached; return the server's timings."""
    body = {
        "messages": [{"role": "user", "content": f"{PROMPT}\nList the rooms."}],
        "max_tokens": 64,
        "temperature": 0,
        "cache_prompt": False,
        "ignore_eos": True,
    }
    request = urllib.request.Request(
        f"{server.url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return dict(json.loads(response.read())["timings"])


def started(name: str, argv: list[str], work: Path) -> tuple[Backend, float]:
    """Start a server; return it and the seconds until it answered /health."""
    began = time.monotonic()
    server = start(name, argv, "http", work, timeout=600)
    return server, time.monotonic() - began


def main() -> None:
    """Run both sides alternately and print their speeds and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    require(QWEN, RPC / "llama-server", RPC / "ggml-rpc-server")
    speeds: dict[str, dict[str, list[float]]] = {
        side: {"prompt": [], "gen": []} for side in ("local", "split")
    }
    with tempfile.TemporaryDirectory(prefix="rpc-split-") as tmp:
        work = Path(tmp)
        worker = [str(RPC / "ggml-rpc-server"), "-H", "127.0.0.1", "-p", "{port}"]
        worker += ["-t", "1", "--cache"]
        with (
            running(start("worker-a", worker, "tcp", work)) as first,
            running(start("worker-b", worker, "tcp", work)) as second,
        ):
            endpoints = f"{first.host}:{first.port},{second.host}:{second.port}"
            split_argv = server_argv("--rpc", endpoints)
            local, local_start = started("local", server_argv(), work)
            split, split_start = started("split", split_argv, work)
            with running(local), running(split):
                for _ in range(args.runs):
                    for side, server in (("local", local), ("split", split)):
                        timings = ask(server)
                        speeds[side]["prompt"].append(timings["prompt_per_second"])
                        speeds[side]["gen"].append(timings["predicted_per_second"])
                prompt_n = ask(local)["prompt_n"]
            split.stop()
            again, split_restart = started("split-again", split_argv, work)
            again.stop()
    print(f"prompt: {prompt_n} tokens uncached, 64 written, {args.runs} runs each")
    print(
        f"start: local {local_start:.1f} s; split {split_start:.1f} s, "
        f"{split_restart:.1f} s again (weights from the workers' cache)"
    )
    medians = {
        side: {kind: statistics.median(values) for kind, values in kinds.items()}
        for side, kinds in speeds.items()
    }
    for side, kinds in medians.items():
        print(
            f"{side}: prompt {kinds['prompt']:.1f} tok/s, "
            f"generation {kinds['gen']:.1f} tok/s"
        )
    prompt_ratio = medians["split"]["prompt"] / medians["local"]["prompt"]
    gen_ratio = medians["split"]["gen"] / medians["local"]["gen"]
    print(f"rpc_prompt_ratio={prompt_ratio:.2f}")
    print(f"rpc_gen_ratio={gen_ratio:.2f}")


if __name__ == "__main__":
    main()
