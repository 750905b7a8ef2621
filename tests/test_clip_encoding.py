"""One audio-encoder pass per distinct clip (and once per generation batch when frozen), on the tiny models with
real TRL: the same loss and gradients as the model's own per-row encoding, and the encoder called as often as promised.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import SPLIT, audio_params, make_parquet, make_trainer, record_step

from r1_aqa.training.encoder import audio_towers

@pytest.mark.parametrize("family_dir, checkpointing", [("tiny_model_dir", False), ("tiny_omni_dir", True)])
def test_one_pass_per_clip_and_frozen_give_the_per_row_loss_and_gradients(family_dir, checkpointing, request, tmp_path):
    model_dir = request.getfixturevalue(family_dir)
    parquet = make_parquet(tmp_path, n=2)
    modes = {"per_row": dict(share_clip_encodings=False), "per_clip": {}, "frozen": dict(freeze_audio_tower=True)}
    runs = {}
    for mode, kwargs in modes.items():
        trainer = make_trainer(model_dir, parquet, tmp_path / mode, **kwargs, max_steps=1,
                               gradient_checkpointing=checkpointing, max_grad_norm=1e9, **SPLIT)  # unclipped
        runs[mode] = record_step(trainer)
    base = runs["per_row"]
    tower = {n for n in base["grads"] if "audio_tower." in n}
    assert tower and len(base["loss"]) == 2
    for mode in ("per_clip", "frozen"):
        run = runs[mode]
        # the same rollouts (sampled from the same logits), so everything after them is comparable
        assert torch.equal(run["batch"]["completion_ids"], base["batch"]["completion_ids"]), mode
        for logits, want in zip(run["generate"], base["generate"], strict=True):
            torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5, msg=lambda m: f"{mode} generate: {m}")
        for key in ("old_per_token_logps", "ref_per_token_logps"):
            torch.testing.assert_close(run["batch"][key], base["batch"][key], rtol=1e-5, atol=1e-6, msg=mode + key)
        # frozen: fewer encoder calls draw fewer random numbers (the encoder's layerdrop draw), so TRL's shuffle deals
        # the rows to the micro-batches differently; their summed loss (and the gradient) does not depend on it
        losses, want = torch.stack(run["loss"]), torch.stack(base["loss"])
        if mode == "frozen":
            losses, want = losses.sum(), want.sum()
        torch.testing.assert_close(losses, want, rtol=1e-5, atol=1e-7)
        expected = set(base["grads"]) - (tower if mode == "frozen" else set())
        assert set(run["grads"]) == expected, mode
        for name in expected:
            torch.testing.assert_close(run["grads"][name], base["grads"][name], rtol=1e-5, atol=1e-7,
                                       msg=lambda m, name=name: f"{mode} {name}: {m}")


def count_encodings(tower, n_window: int | None) -> list[tuple[int, int, int]]:
    """Per call of ``tower``: (audio rows it got, distinct clips among them, clips its encoder layers actually ran).

    Rows are told apart by their features; the Omni encoder runs windows of ``2 * n_window`` mel frames, so its work
    is counted in windows.
    """
    calls: list[list[int]] = []

    def on_call(module, args, kwargs):
        features = args[0] if args else kwargs["input_features"]
        lens = kwargs.get("feature_lens")
        rows = features.split(lens.tolist(), dim=1) if lens is not None else list(features)
        distinct = {}
        for row in rows:
            distinct.setdefault((tuple(row.shape), row.float().sum().item(), row.float().abs().sum().item()), row)
        windows = [math.ceil(r.size(1) / (2 * n_window)) for r in distinct.values()] if lens is not None else None
        calls.append([len(rows), sum(windows) if windows else len(distinct), 0])

    def on_encode(module, args):
        calls[-1][2] += args[0].size(0)

    tower.register_forward_pre_hook(on_call, with_kwargs=True)
    tower.conv1.register_forward_pre_hook(on_encode)
    return calls


@pytest.mark.parametrize("family_dir", ["tiny_model_dir", "tiny_omni_dir"])
def test_the_encoder_runs_once_per_distinct_clip_in_each_forward(family_dir, request, tmp_path):
    model_dir = request.getfixturevalue(family_dir)
    # Each row in full (with share_prompt every forward already hands the tower one row per group)
    trainer = make_trainer(model_dir, make_parquet(tmp_path, n=4), tmp_path / "out", max_steps=2, **SPLIT,
                           share_prompt=False)
    assert trainer.ref_model is not None
    n_window = getattr(trainer.model.config.audio_config, "n_window", None)
    policy = count_encodings(audio_towers(trainer.model)[0], n_window)
    reference = count_encodings(audio_towers(trainer.ref_model)[0], n_window)
    trainer.train()
    # one generation batch of 8 rows (4 micro-steps): generate, the old pass in 2 chunks and 4 loss passes
    # (policy); the reference pass in 2 chunks. Every one encodes each distinct clip of its rows once.
    assert len(policy) == 1 + 2 + 4 and len(reference) == 2, (policy, reference)
    for name, calls in (("policy", policy), ("reference", reference)):
        assert all(encoded == distinct for _, distinct, encoded in calls), (name, calls)
    assert any(rows > distinct for rows, distinct, _ in policy + reference), "no forward had a repeated clip"


@pytest.mark.parametrize("family_dir", ["tiny_model_dir", "tiny_omni_dir"])
def test_a_frozen_encoder_is_unchanged_and_runs_once_per_generation_batch(family_dir, request, tmp_path):
    model_dir = request.getfixturevalue(family_dir)
    trainer = make_trainer(model_dir, make_parquet(tmp_path, n=4), tmp_path / "out", max_steps=4,
                           freeze_audio_tower=True, **SPLIT)
    n_window = getattr(trainer.model.config.audio_config, "n_window", None)
    policy = count_encodings(audio_towers(trainer.model)[0], n_window)
    reference = count_encodings(audio_towers(trainer.ref_model)[0], n_window)
    before = audio_params(trainer.model)
    trainer.train()
    after = audio_params(trainer.model)
    changed = sorted(n for n in before if not torch.equal(before[n], after[n]))
    tower = [n for n in before if "audio_tower." in n]
    assert not [n for n in changed if n in tower], changed
    if family_dir == "tiny_model_dir":  # Qwen2-Audio's projector is outside the tower and still trains
        assert changed and all("multi_modal_projector" in n for n in changed)
    # 4 steps of 2 micro-steps, a generation every 4 micro-steps: 2 generation batches of 2 prompts (2 clips) each,
    # encoded once each (generate, old and loss passes reuse them: 1 + 2 + 4 tower calls per batch that encode nothing)
    encoded = [(distinct, n) for _, distinct, n in policy if n]
    assert encoded == [(2, 2), (2, 2)] and len(policy) == 2 * (1 + 1 + 2 + 4), policy
    assert len(policy) > 1 and not any(n for _, _, n in reference), "the reference should reuse the frozen encodings"


def test_a_reference_whose_encoder_differs_encodes_its_own_clips(tiny_model_dir, tmp_path):
    from r1_aqa.families.loading import load_model

    model = load_model(tiny_model_dir, device="cpu")
    with torch.no_grad():
        audio_towers(model)[0].conv1.weight.add_(0.1)  # the policy starts from another encoder than the reference
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path, n=4), tmp_path / "out", model=model, max_steps=2,
                           freeze_audio_tower=True, **SPLIT)
    reference = count_encodings(audio_towers(trainer.ref_model)[0], None)
    trainer.train()
    assert len(reference) == 2 and all(encoded == distinct for _, distinct, encoded in reference), reference


def test_lora_one_pass_per_clip_and_frozen(tiny_model_dir, tmp_path):
    """PEFT: the reference pass is the policy with its adapter disabled, through the same wrapped tower."""
    from peft import LoraConfig

    parquet = make_parquet(tmp_path, n=2)
    everywhere = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")  # the encoder's layers too
    runs = {}
    for mode, share in (("per_row", False), ("per_clip", True)):
        trainer = make_trainer(tiny_model_dir, parquet, tmp_path / mode, max_steps=1, max_grad_norm=1e9, **SPLIT,
                               trainer_kwargs=dict(peft_config=everywhere), share_clip_encodings=share)
        runs[mode] = record_step(trainer)
    base, run = runs["per_row"], runs["per_clip"]
    assert trainer.ref_model is None and any("audio_tower" in n and "lora_" in n for n in base["grads"])
    assert torch.equal(run["batch"]["completion_ids"], base["batch"]["completion_ids"])
    torch.testing.assert_close(run["batch"]["ref_per_token_logps"], base["batch"]["ref_per_token_logps"],
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.stack(run["loss"]), torch.stack(base["loss"]), rtol=1e-5, atol=1e-7)
    assert set(run["grads"]) == set(base["grads"])
    for name in base["grads"]:
        torch.testing.assert_close(run["grads"][name], base["grads"][name], rtol=1e-5, atol=1e-7)

    frozen = dict(freeze_audio_tower=True)
    with pytest.raises(ValueError, match="inside the audio tower"):
        make_trainer(tiny_model_dir, parquet, tmp_path / "bad", trainer_kwargs=dict(peft_config=everywhere), **frozen)
    text_only = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)")
    trainer = make_trainer(tiny_model_dir, parquet, tmp_path / "frozen", max_steps=2, **SPLIT,
                           trainer_kwargs=dict(peft_config=text_only), **frozen)
    calls = count_encodings(audio_towers(trainer.model)[0], None)
    trainer.train()
    # one generation batch: encoded once; generate, old, reference (adapter off) and loss passes reuse it
    assert [(d, n) for _, d, n in calls if n] == [(2, 2)] and len(calls) == 1 + 1 + 2 + 2 + 4, calls


def test_a_frozen_projector_alone_keeps_training_the_encoder(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "out",
                           freeze_audio_projector=True)
    before = audio_params(trainer.model)
    trainer.train()
    after = audio_params(trainer.model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    projector = {n for n in before if "multi_modal_projector" in n}
    assert projector and not changed & projector
    assert len(changed) >= len(before) - len(projector) - 1  # the tower's position table is frozen by transformers
