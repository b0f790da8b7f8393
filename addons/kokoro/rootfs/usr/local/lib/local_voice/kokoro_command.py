"""Start the Kokoro Wyoming server from the kokoro add-on's options.

Run by the s6 service `kokoro`: fetches the Kokoro ONNX model and the chosen voice from
Hugging Face, then replaces itself with `wyoming_kokoro` (the server in this folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from fetch_model import ModelFile, ensure_file
from launcher import (
    Addon,
    Command,
    Options,
    main as launcher_main,
    wyoming_discovery,
)

PORT = 10200
MODEL_REPO = "onnx-community/Kokoro-82M-v1.0-ONNX"
# The repository's commit the add-on was checked against (its files page, 2026-11):
# a later change to the repository cannot change what a fresh install fetches.
MODEL_REVISION = "1939ad2a8e416c0acfeecc08a694d14ef25f2231"
HERE = Path(__file__).resolve().parent


def model_files(options: Options) -> tuple[ModelFile, ModelFile]:
    """Return the ONNX model and the voice file the options ask for."""
    return (
        ModelFile(
            MODEL_REPO,
            f"onnx/{options['model']}.onnx",
            MODEL_REVISION,
            file_option="model",
        ),
        ModelFile(
            MODEL_REPO,
            f"voices/{options['voice']}.bin",
            MODEL_REVISION,
            file_option="voice",
        ),
    )


def build_command(
    options: Options,
    model: Path,
    voices_dir: Path,
    *,
    python: str,
    host: str,
    port: int,
) -> Command:
    """Build the wyoming_kokoro command line for these options."""
    argv = [
        python, "-m", "wyoming_kokoro",
        "--uri", f"tcp://{host}:{port}",
        "--model", str(model),
        "--voices-dir", str(voices_dir),
        "--voice", str(options["voice"]),
        "--speed", str(options["speed"]),
        "--volume", str(options["volume"]),
    ]  # fmt: skip
    return Command(argv, {"PYTHONPATH": str(HERE)})


# Announced to local_voice (its tts service) and to Home Assistant's Wyoming.
discovery = wyoming_discovery("tts")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--python", default=sys.executable, help="Python with kokoro-onnx"
    )


def _prepare(args: argparse.Namespace, options: Options) -> Command:
    model_spec, voice_spec = model_files(options)
    model = ensure_file(model_spec, args.models_dir)
    voice = ensure_file(voice_spec, args.models_dir)
    return build_command(
        options, model, voice.parent, python=args.python, host=args.host, port=args.port
    )


ADDON = Addon(__doc__.splitlines()[0], PORT, _prepare, discovery, _add_arguments)


def main(argv: list[str] | None = None) -> int:
    """Start the TTS server (or print its command with --dry-run)."""
    return launcher_main(ADDON, argv)


if __name__ == "__main__":
    sys.exit(main())
