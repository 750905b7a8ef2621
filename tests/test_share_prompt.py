"""Each prompt once per group in the log-prob passes (``share_prompt``), on every family's tiny model with real TRL:
log-probs, entropies, the MoE router aux loss and gradients equal the unshared pass's, and every pass packs."""

from __future__ import annotations

import pytest
import torch
from helpers import FIXTURES, ROOT, SPLIT, make_parquet, make_trainer, record_step, write_tone

from r1_aqa.audio import load_audio
from r1_aqa.training.trainer import _BatchAudio

# Rows of one chunked pass: (question, clip, clip index, completion length). Two clip lengths and two questions give
# prompts of three lengths (left-padded); q1/tone0 holds 3 rows, split across the two chunks of 4; q1/tone2 has the
# prompt ids of q1/tone0 (a clip of the same length) but another clip, as a refill round's group: it must not join.
ROWS = [("q0", 1, 0, 5), ("q1", 0, 1, 7), ("q0", 1, 0, 2), ("q1", 2, 3, 7),
        ("q1", 0, 1, 0), ("q1", 2, 3, 4), ("q0", 1, 0, 6), ("q1", 0, 1, 3)]
COMPLETION = 7


def batch(trainer, tmp_path):
    """Prompt + completion ids, mask, audio features and clip indices of ``ROWS`` as the trainer builds them."""
    clips = [write_tone(tmp_path / f"tone{i}.wav", freq=300.0 + 170 * i, seconds=s)
             for i, s in enumerate((1.0, 1.5, 1.0))]
    questions = {"q0": "Which tone is it?", "q1": "Is the tone low, middle or high? Answer with one word."}
    prompts = [[{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": questions[q]}]}]
               for q, *_ in ROWS]
    sources = [str(clips[c]) for _, c, _, _ in ROWS]
    trainer._batch_audio = _BatchAudio(sources=sources, waveforms=[load_audio(s) for s in sources])
    prompt_ids, _, features = trainer._tokenize_prompts(prompts)
    trainer._batch_audio = None
    width = max(map(len, prompt_ids))
    pad, audio = trainer._tokenizer.pad_token_id, trainer.audio_token_id
    generator = torch.Generator().manual_seed(0)
    vocab = trainer.model.get_input_embeddings().weight.size(0)
    ids, mask = [], []
    for prompt, (_, _, _, n) in zip(prompt_ids, ROWS, strict=True):
        completion = torch.randint(0, vocab, (COMPLETION,), generator=generator)
        completion[completion == audio] = 0
        completion[n:] = pad
        ids.append([pad] * (width - len(prompt)) + prompt + completion.tolist())
        mask.append([0] * (width - len(prompt)) + [1] * len(prompt) + [1] * n + [0] * (COMPLETION - n))
    clip_index = torch.tensor([c for *_, c, _ in ROWS])
    return torch.tensor(ids), torch.tensor(mask), features, clip_index


def logprob_pass(trainer, ids, mask, features, clips, aux: bool, chunk: int = 4):
    """Log-probs, entropies, aux loss and the gradients of a weighted sum of them, in chunks of ``chunk`` rows."""
    model = trainer.model
    model.zero_grad()
    with trainer._audio_for({**features, "audio_clip": clips}):
        logps, entropies, aux_loss = trainer._get_per_token_logps_and_entropies(
            model, ids, mask, COMPLETION, batch_size=chunk, compute_entropy=True, compute_aux_loss=aux)
    kept = mask[:, -COMPLETION:].bool()
    weights = torch.linspace(0.5, 1.5, kept.numel()).view_as(kept)
    objective = (logps * weights)[kept].sum() + 0.3 * (entropies * weights)[kept].sum()
    (objective + (aux_loss if aux else 0.0)).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logps.detach()[kept], entropies.detach()[kept], aux_loss, grads


@pytest.mark.parametrize("family, split", [*((f, False) for f in FIXTURES), ("qwen2-audio", True),
                                           ("qwen3-omni", True)])
def test_shared_prompt_pass_equals_the_unshared_one(family, split, request, tmp_path, monkeypatch):
    """Also with each group's completions split over packed rows of at most 2, in one chunk of 8 (groups of 3 rows
    become packed rows of 2 and 1, each with its own prompt copy; the router aux loss weighs each copy's tokens by
    its rows)."""
    from r1_aqa.training import share_prompt

    if split:
        monkeypatch.setattr(share_prompt, "completions_per_row", lambda *args: 2)
    trainer = make_trainer(request.getfixturevalue(FIXTURES[family]), make_parquet(tmp_path), tmp_path / "out")
    assert trainer.share_prompt, trainer.share_prompt_reason
    ids, mask, features, clips = batch(trainer, tmp_path)
    aux = trainer.aux_loss_enabled
    assert aux == (family == "qwen3-omni")
    chunk = 8 if split else 4
    shared = logprob_pass(trainer, ids, mask, features, clips, aux, chunk)
    trainer.share_prompt = False
    unshared = logprob_pass(trainer, ids, mask, features, clips, aux, chunk)
    for name, a, b in zip(("log-probs", "entropies"), shared, unshared):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5, msg=lambda m, name=name: f"{family} {name}: {m}")
    if aux:
        torch.testing.assert_close(shared[2], unshared[2], rtol=1e-6, atol=1e-7)
    grads, want = shared[3], unshared[3]
    assert set(grads) == set(want) and any("audio_tower" in n for n in want)
    for name in want:
        torch.testing.assert_close(grads[name], want[name], rtol=1e-4, atol=1e-5,
                                   msg=lambda m, name=name: f"{family} {name}: {m}")


def decoder_rows(trainer) -> dict[str, list[int]]:
    """Per model (policy, reference), the rows each log-prob forward feeds its language model; and the rows of HF
    generate's prefills (its forwards of more than one position)."""
    seen: dict[str, list[int]] = {"policy": [], "reference": [], "prefill": []}
    for name, model in (("policy", trainer.model), ("reference", trainer.ref_model)):
        if model is None:  # PEFT: the reference pass is the policy without its adapter
            continue
        def count(module, args, kwargs, name=name):
            tokens = kwargs.get("input_ids")
            shape = (tokens if tokens is not None else kwargs["inputs_embeds"]).shape
            if kwargs.get("use_cache") is False:  # a log-prob pass
                seen[name].append(shape[0])
            elif shape[1] > 1:
                seen["prefill"].append(shape[0])
        trainer.family.decoder(trainer._core(model)).register_forward_pre_hook(count, with_kwargs=True)
    return seen


@pytest.mark.parametrize("family_dir, checkpointing, variant", [
    ("tiny_model_dir", False, None), ("tiny_omni_dir", True, None), ("tiny_af3_dir", False, None),
    ("tiny_qwen3_omni_dir", True, None), ("tiny_voxtral_dir", False, None), ("tiny_model_dir", True, "lora"),
    ("tiny_model_dir", False, "frozen"),
])
def test_a_training_step_with_shared_prompts_equals_the_unshared_one(family_dir, checkpointing, variant, request,
                                                                     tmp_path):
    """2 prompts x 4 completions, shuffled by TRL into 2 micro-batches of 4 (groups split across them), the old pass
    (num_iterations 2) and the reference pass in chunks of 4: the same rollouts (HF generate prefills each prompt
    once), log-probs, losses and gradients; every log-prob forward of the policy and of the reference feeds one
    packed row per group. Also with LoRA everywhere (the reference pass is the policy without its adapter) and with
    a frozen encoder (the generation batch's cached encodings)."""
    from peft import LoraConfig

    extra = {"lora": dict(trainer_kwargs=dict(peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))),
             "frozen": dict(freeze_audio_tower=True), None: {}}[variant]
    model_dir = request.getfixturevalue(family_dir)
    parquet = make_parquet(tmp_path, n=2)
    runs, rows = {}, {}
    for share in (True, False):
        trainer = make_trainer(model_dir, parquet, tmp_path / str(share), max_steps=1, max_grad_norm=1e9,
                               gradient_checkpointing=checkpointing, **extra, share_prompt=share,
                               **SPLIT)
        rows[share] = decoder_rows(trainer)
        runs[share] = record_step(trainer)
    base, run = runs[False], runs[True]
    assert torch.equal(run["batch"]["completion_ids"], base["batch"]["completion_ids"])
    for logits, want in zip(run["generate"], base["generate"], strict=True):  # prefill (gathered back) and decoding
        torch.testing.assert_close(logits, want, rtol=1e-5, atol=1e-5)
    for key in ("old_per_token_logps", "ref_per_token_logps"):
        kept = base["batch"]["completion_mask"].bool()
        torch.testing.assert_close(run["batch"][key][kept], base["batch"][key][kept], rtol=1e-5, atol=1e-5, msg=key)
    torch.testing.assert_close(torch.stack(run["loss"]), torch.stack(base["loss"]), rtol=1e-5, atol=1e-6)
    assert set(run["grads"]) == set(base["grads"])
    for name in base["grads"]:
        torch.testing.assert_close(run["grads"][name], base["grads"][name], rtol=1e-4, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
    if variant == "lora":  # the reference pass is the policy's (adapter off): reference and old chunks, 4 loss passes
        policy = rows[True]["policy"]
        assert set(rows[False]["policy"]) == {4} and len(rows[False]["policy"]) == len(policy) > 4, rows
        assert policy[:-4] == [1] * (len(policy) - 4) and max(policy) <= 2, rows
        return
    # unshared: 4 rows per forward; shared: the old and reference chunks hold one group, a micro-batch at most two
    assert rows[False] == {"policy": [4] * 4, "reference": [4, 4], "prefill": [8]}, rows[False]
    assert rows[True]["prefill"] == [2], rows[True]  # HF generate: each prompt's prefill once
    assert rows[True]["reference"] == [1, 1] and rows[True]["policy"][:2] == [1, 1], rows[True]
    assert all(n <= 2 for n in rows[True]["policy"]) and len(rows[True]["policy"]) == 4, rows[True]


def test_eager_attention_takes_an_additive_mask_and_equals_the_unshared_pass(tiny_omni_dir, tmp_path):
    from r1_aqa.families.loading import load_model

    model = type(load_model(tiny_omni_dir)).from_pretrained(tiny_omni_dir, attn_implementation="eager")
    trainer = make_trainer(tiny_omni_dir, make_parquet(tmp_path), tmp_path / "out", model=model)
    assert trainer.share_prompt and model.config.get_text_config()._attn_implementation == "eager"
    ids, mask, features, clips = batch(trainer, tmp_path)
    shared = logprob_pass(trainer, ids, mask, features, clips, aux=False)
    trainer.share_prompt = False
    unshared = logprob_pass(trainer, ids, mask, features, clips, aux=False)
    torch.testing.assert_close(shared[0], unshared[0], rtol=1e-5, atol=2e-5)
    for name in unshared[3]:
        torch.testing.assert_close(shared[3][name], unshared[3][name], rtol=1e-4, atol=1e-5)


def test_an_attention_without_custom_masks_falls_back_with_its_reason(tiny_model_dir, tmp_path, capfd):
    from r1_aqa.families.loading import load_model

    flex = {"text_config": "flex_attention", "audio_config": "sdpa", "": "sdpa"}  # flex in the language model only
    model = type(load_model(tiny_model_dir)).from_pretrained(tiny_model_dir, attn_implementation=flex)
    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", model=model)
    assert not trainer.share_prompt
    err = capfd.readouterr().err
    assert "share_prompt off: the flex_attention attention takes no custom 4D mask" in err, err
    off = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "off",
                       share_prompt=False)
    assert not off.share_prompt and off.share_prompt_reason is None and "share_prompt" not in capfd.readouterr().err


def test_the_recipe_key_and_flag(tmp_path):
    from r1_aqa.training.train import parse_trl_args

    recipe = str(ROOT / "examples/r1_aqa/recipes/tiny_grpo.yaml")
    assert parse_trl_args(["--config", recipe])[1].share_prompt is True  # AudioGRPOConfig's
    assert parse_trl_args(["--config", recipe, "--share_prompt", "false"])[1].share_prompt is False


def test_completions_per_row_follows_the_flops():
    from r1_aqa.training.share_prompt import completions_per_row

    assert completions_per_row(830, 128, 8, 4096) == 8  # a 7B model at 30 s: the whole group behind one prompt
    assert completions_per_row(780, 32, 8, 64) == 8  # the tiny model at 30 s
    assert completions_per_row(70, 128, 8, 64) <= 2  # the tiny model at 2 s with long answers
    assert completions_per_row(70, 8, 1, 64) == 1
