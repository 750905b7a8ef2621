"""``r1-aqa omni-layout``: convert a thinker-only Omni checkpoint into the hub's full layout that vLLM loads.

The layouts and the conversion belong to the Omni families (``r1_aqa.families._omni``); this module is the command
and the check that refuses a checkpoint vLLM cannot load.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HELP = ("Convert a thinker-only Omni checkpoint (e.g. model_type qwen2_5_omni_thinker) into the hub's full layout "
        "that vLLM loads (thinker. weight names, the base model's full config).")


def check_vllm_layout(path: str | os.PathLike) -> None:
    """Refuse, with the way out, a checkpoint vLLM cannot load for training rollouts or evaluation."""
    from . import family_of

    family_of(path).check_vllm(path)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="thinker-only Omni directory (a checkpoint of an earlier run)")
    parser.add_argument("--base", required=True,
                        help="the full checkpoint it was trained from (directory or cached hub id; only its "
                        "config.json is read), e.g. Qwen/Qwen2.5-Omni-7B")
    parser.add_argument("--output", help="write the converted checkpoint here (default: convert in place)")


def _thinker_family(checkpoint: str):
    """The Omni family whose thinker-only checkpoint this is, or a ``ValueError`` naming the file."""
    from . import NAMES, get_family, read_config

    config, config_file = read_config(checkpoint)
    omni = [get_family(n) for n in NAMES if get_family(n).has_full_layout]
    for family in omni:
        if config.get("model_type") == family.thinker_model_type:
            return family
    raise ValueError(f"{config_file}: model_type {config.get('model_type')!r} is not a "
                     + ", nor a ".join(f"{f.title} thinker" for f in omni))


def run(args) -> None:
    import shutil
    import tempfile

    from . import read_config

    family = _thinker_family(args.checkpoint)
    base, base_file = read_config(args.base)
    if not family.is_full_layout(base):
        raise ValueError(f"{base_file}: --base must be a full {family.title} checkpoint, not model_type "
                         f"{base.get('model_type')!r} (e.g. {family.hub_id})")
    if not args.output:
        family.write_full_layout(args.checkpoint, base)
        target = Path(args.checkpoint)
    else:
        target = Path(args.output)
        if target.exists():
            raise ValueError(f"{target} exists; choose a new --output directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            shutil.copytree(args.checkpoint, tmp, dirs_exist_ok=True)
            family.write_full_layout(tmp, base)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"r1-aqa omni-layout: {target} is in the full {family.title} layout (vLLM loads it)", file=sys.stderr)
