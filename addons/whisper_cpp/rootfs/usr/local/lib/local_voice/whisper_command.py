"""Start the Wyoming whisper.cpp server from the whisper_cpp add-on's options.

Run by the s6 service `whisper_cpp`: fetches `ggml-<model>.bin` from the whisper.cpp
model repository on Hugging Face, then replaces itself with `wyoming_whisper_cpp`, which
finds the file in its data folder and so never downloads anything itself.
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

PORT = 10300
MODEL_REPO = "ggerganov/whisper.cpp"


def model_file(options: Options) -> ModelFile:
    """Return the ggml file of the chosen model (`base.en`: `ggml-base.en.bin`)."""
    return ModelFile(MODEL_REPO, f"ggml-{options['model']}.bin", file_option="model")


def build_command(
    options: Options, model_dir: Path, *, python: str, host: str, port: int
) -> Command:
    """Build the wyoming_whisper_cpp command line for these options."""
    argv = [
        python, "-m", "wyoming_whisper_cpp",
        "--uri", f"tcp://{host}:{port}",
        "--model", str(options["model"]),
        "--data-dir", str(model_dir),
        "--download-dir", str(model_dir),
        "--language", str(options["language"]),
        "--beam-size", str(options["beam_size"]),
    ]  # fmt: skip
    return Command(argv)


# Announced to local_voice (its asr service) and to Home Assistant's Wyoming.
discovery = wyoming_discovery("asr")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--python", default=sys.executable, help="Python with the server"
    )


def _prepare(args: argparse.Namespace, options: Options) -> Command:
    model = ensure_file(model_file(options), args.models_dir)
    return build_command(
        options, model.parent, python=args.python, host=args.host, port=args.port
    )


ADDON = Addon(__doc__.splitlines()[0], PORT, _prepare, discovery, _add_arguments)


def main(argv: list[str] | None = None) -> int:
    """Start the ASR server (or print its command with --dry-run)."""
    return launcher_main(ADDON, argv)


if __name__ == "__main__":
    sys.exit(main())
