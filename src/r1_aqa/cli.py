"""The ``r1-aqa`` command. Each subcommand lives in its stage's module, which provides ``HELP``,
``add_arguments(parser)`` and ``run(args)``; modules keep heavy imports (torch, transformers, TRL, vLLM) inside
functions so that ``r1-aqa --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "tiny-model": "r1_aqa.tiny",
    "synth": "r1_aqa.data.synth",
    "prepare": "r1_aqa.data.prepare",
    "train": "r1_aqa.train",
    "eval": "r1_aqa.evaluate.runner",
    "score": "r1_aqa.evaluate.scoring",
    "demo": "r1_aqa.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1-aqa",
        description="GRPO post-training of audio language models for audio question answering (R1-AQA on TRL).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            continue  # stage not installed in this build
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # bad input: the message names the file, line or id
        print(f"r1-aqa {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
