"""Qwen3-Omni (MoE thinker) on its tiny full-layout checkpoint: GRPO with β > 0 and the router aux loss, gradients
in the routed experts and every audio tensor, full-layout checkpoints, sft, eval (hf). vLLM (the expert sync, LoRA
on the experts): ``test_trainer_vllm.py``; tensor parallel 2: ``test_distributed.py``."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import (
    assert_qwen3_omni_full_layout,
    audio_params,
    make_parquet,
    make_trainer,
    sft_argv,
    weight_names,
    write_tone,
)

from r1_aqa.families.loading import load_model


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def test_tiny_full_layout_is_the_hubs(tiny_qwen3_omni_dir, tmp_path):
    from r1_aqa.families.tiny_model import build_tiny_model

    config = json.loads((tiny_qwen3_omni_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe" and {"talker_config", "code2wav_config"} <= set(config)
    assert config["enable_audio_output"] is True  # as on the hub; checkpoints saved from it turn it off
    assert {n.split(".")[0] for n in weight_names(tiny_qwen3_omni_dir)} == {"thinker", "talker", "code2wav"}
    full = load_model(tiny_qwen3_omni_dir, device="cpu")
    assert type(full).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert full.config.text_config.num_experts == 4
    thinker = load_model(build_tiny_model(tmp_path / "thinker", family="qwen3-omni", layout="thinker"), device="cpu")
    assert same_weights(full, thinker)


def _batch(directory, tmp_path):
    from r1_aqa.audio import load_audio
    from r1_aqa.families.loading import load_processor
    from r1_aqa.prompts import build_messages, format_prompt

    processor = load_processor(directory)
    text = processor.apply_chat_template(build_messages(format_prompt("Which tone?", ["low", "high"])),
                                         add_generation_prompt=True, tokenize=False)
    clips = [load_audio(write_tone(tmp_path / f"{i}.wav", freq=300.0 * (i + 1), seconds=1.0 + i)) for i in range(2)]
    return processor(text=[text] * 2, audio=clips, sampling_rate=16_000, text_kwargs={"padding": True},
                     return_tensors="pt")


def test_routed_experts_and_only_they_receive_gradients(tiny_qwen3_omni_dir, tmp_path):
    model = load_model(tiny_qwen3_omni_dir, device="cpu").train()
    enc = _batch(tiny_qwen3_omni_dir, tmp_path)
    layers = model.model.layers
    routed: dict[int, set[int]] = {}

    def record(i):
        def hook(module, args, output):  # (router logits, routing weights, selected experts) of every token
            routed.setdefault(i, set()).update(output[2].flatten().tolist())
        return hook

    for i, layer in enumerate(layers):
        layer.mlp.gate.register_forward_hook(record(i))
    out = model(**enc, output_router_logits=True)
    (out.logits.float().pow(2).mean() + out.aux_loss).backward()
    assert sorted(routed) == list(range(len(layers)))
    for i, layer in enumerate(layers):
        experts = layer.mlp.experts
        for name in ("gate_up_proj", "down_proj"):
            grad = getattr(experts, name).grad
            assert grad is not None, name
            with_grad = {e for e in range(grad.size(0)) if grad[e].abs().sum() > 0}
            assert with_grad == routed[i], (i, name, with_grad, routed[i])
        assert layer.mlp.gate.weight.grad.abs().sum() > 0  # the router learns from the aux loss
    assert all(len(r) >= 2 for r in routed.values())


def test_grpo_with_kl_and_router_aux_loss_saves_full_layout(tiny_qwen3_omni_dir, tmp_path):
    """The loss is the policy loss plus exactly ``router_aux_loss_coef × aux`` (logged as ``aux_loss``); with β > 0
    the reference is the thinker class; every trainable audio tensor and some expert changes; checkpoints are in
    the full layout and reload as the trained model."""
    out = tmp_path / "out"
    trainer = make_trainer(tiny_qwen3_omni_dir, make_parquet(tmp_path), out, beta=0.04, max_steps=2,
                           save_strategy="steps", save_steps=2)
    assert type(trainer.ref_model).__name__ == "Qwen3OmniMoeThinkerForConditionalGeneration"
    assert trainer.aux_loss_enabled and trainer.router_aux_loss_coef == pytest.approx(0.01)
    compute_loss, seen = trainer._compute_loss, []

    def loss_with_and_without_aux(model, inputs):
        loss = compute_loss(model, inputs)
        aux = trainer._metrics["train"]["aux_loss"][-1]
        trainer.aux_loss_enabled = False
        try:
            with torch.no_grad():
                without = compute_loss(model, inputs)
        finally:
            trainer.aux_loss_enabled = True
        seen.append((loss.item(), without.item(), aux, trainer.current_gradient_accumulation_steps))
        return loss

    trainer._compute_loss = loss_with_and_without_aux
    before = audio_params(trainer.model)
    experts_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if ".experts." in n}
    trainer.train()
    assert seen
    for loss, without, aux, accumulation in seen:
        assert aux > 0
        assert loss - without == pytest.approx(trainer.router_aux_loss_coef * aux / accumulation, rel=1e-4, abs=1e-9)
    logged = {k for e in trainer.state.log_history for k in e}
    assert {"aux_loss", "kl"} <= logged
    after = audio_params(trainer.model)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad and n in before}
    assert len(trainable) >= 20
    assert not [n for n in trainable if torch.equal(before[n], after[n])]
    assert all(not torch.equal(p, dict(trainer.model.named_parameters())[n]) for n, p in experts_before.items())
    trainer.save_model(str(out))
    for folder in (out, out / "checkpoint-2"):
        assert_qwen3_omni_full_layout(folder)
        assert same_weights(load_model(folder, device="cpu"), trainer.model)


def test_sft_and_eval_hf(tiny_qwen3_omni_dir, tmp_path):
    from r1_aqa.evaluate.benchmarks import load_items
    from r1_aqa.evaluate.predict import evaluate
    from r1_aqa.training.sft import parse_sft_args, sft

    parquet = make_parquet(tmp_path, n=4)
    out = tmp_path / "sft"
    trainer = sft(*parse_sft_args(sft_argv(tiny_qwen3_omni_dir, parquet, out, "--max_steps", "6",
                                           "--learning_rate", "1e-2", "--per_device_train_batch_size", "4")))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert_qwen3_omni_full_layout(out)
    del trainer
    records = evaluate(load_items("mmau", parquet), out, tmp_path / "pred.json", benchmark="mmau", data=parquet,
                       max_new_tokens=8)
    assert len(records) == 4 and all("model_response" in r for r in records)


def test_a_frozen_projector_is_both_projection_layers(tiny_qwen3_omni_dir, tmp_path):
    """Qwen3-Omni's projector is the end of its audio encoder, ``proj1`` and ``proj2`` (to the LM width): frozen,
    neither changes while the rest of the encoder trains."""
    trainer = make_trainer(tiny_qwen3_omni_dir, make_parquet(tmp_path), tmp_path / "out", max_steps=1,
                           freeze_audio_projector=True)
    before = audio_params(trainer.model)
    trainer.train()
    after = audio_params(trainer.model)
    projector = {n for n in before if ".proj1." in n or ".proj2." in n}
    assert len(projector) == 4  # two layers, weight and bias
    assert all(torch.equal(before[n], after[n]) for n in projector)
    assert any(not torch.equal(before[n], after[n]) for n in before.keys() - projector)


def test_resume_loads_the_checkpoints_experts(tiny_qwen3_omni_dir, tmp_path):
    """A checkpoint holds each expert's weights apart (the hub's names), the model fused ones: resuming loads them
    (through transformers' conversion), not the base model's."""
    parquet, out = make_parquet(tmp_path), tmp_path / "out"
    make_trainer(tiny_qwen3_omni_dir, parquet, out, max_steps=1, save_strategy="steps", save_steps=1).train()
    trained = load_model(out / "checkpoint-1", device="cpu")
    assert not same_weights(trained, load_model(tiny_qwen3_omni_dir, device="cpu"))
    resumed = make_trainer(tiny_qwen3_omni_dir, parquet, tmp_path / "again", max_steps=1)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-1"))  # at max_steps already: loads, trains nothing
    assert same_weights(trained, resumed.model)
