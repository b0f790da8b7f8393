"""Command line of the Kokoro Wyoming server: load the model once, then serve."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
import logging
from pathlib import Path
import sys
import time

from .server import serve
from .synthesizer import KokoroOnnx, Synthesizer, voice_language


def build_parser() -> argparse.ArgumentParser:
    """Describe the arguments (kokoro_command.py builds a command line for them)."""
    parser = argparse.ArgumentParser(prog="wyoming_kokoro", description=__doc__)
    parser.add_argument("--uri", required=True, help="tcp://HOST:PORT to listen on")
    parser.add_argument("--model", type=Path, required=True, help="Kokoro .onnx model")
    parser.add_argument(
        "--voices-dir", type=Path, required=True, help="folder of voice .bin files"
    )
    parser.add_argument("--voice", default="af_heart", help="default voice")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="0.5 (slow) to 2.0 (fast)"
    )
    parser.add_argument(
        "--volume", type=float, default=1.0, help="gain applied to the audio"
    )
    parser.add_argument("--samples-per-chunk", type=int, default=1024)
    parser.add_argument(
        "--no-streaming",
        action="store_true",
        help="do not offer synthesize streaming (clients send sentence by sentence)",
    )
    parser.add_argument("--debug", action="store_true", help="log every sentence")
    return parser


def load_kokoro(args: argparse.Namespace) -> Synthesizer:
    """Load the ONNX model and the voices found in --voices-dir."""
    return KokoroOnnx(args.model, args.voices_dir, volume=args.volume)


def main(
    argv: list[str] | None = None,
    load: Callable[[argparse.Namespace], Synthesizer] = load_kokoro,
) -> int:
    """Load the model once for the whole process, then serve until stopped."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="[%(asctime)s] %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    synthesizer = load(args)
    if args.voice not in synthesizer.voices():
        logging.getLogger(__name__).error(
            "Voice %s is not in %s", args.voice, args.voices_dir
        )
        return 1
    # ONNX Runtime plans its first run slowly: pay for it now, not on the first answer.
    started = time.monotonic()
    synthesizer.synthesize("Ready.", args.voice, args.speed, voice_language(args.voice))
    logging.getLogger(__name__).info("Warmed up in %.1f s", time.monotonic() - started)
    asyncio.run(
        serve(
            args.uri,
            synthesizer,
            default_voice=args.voice,
            speed=args.speed,
            samples_per_chunk=args.samples_per_chunk,
            streaming=not args.no_streaming,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
