"""AudioGRPOTrainer on the tiny Qwen2-Audio with real TRL: the audio reaches every log-prob forward, row by row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import (
    RECIPE,
    ROOT,
    audio_params,
    audio_token_counts,
    favour_token,
    make_parquet,
    make_trainer,
    unused_audio_params,
)


@pytest.mark.parametrize("family_dir", ["tiny_model_dir", "tiny_omni_dir"])
def test_every_audio_tower_and_projector_tensor_changes(family_dir, request, tmp_path):
    trainer = make_trainer(request.getfixturevalue(family_dir), make_parquet(tmp_path), tmp_path / "out")
    unused = unused_audio_params(trainer)  # the Omni encoder keeps an embedding its forward never reads
    assert len(unused) <= 1, unused
    before = audio_params(trainer.model)
    trainer.train()
    after = audio_params(trainer.model)
    assert len(before) >= 39
    unchanged = [n for n in before if torch.equal(before[n], after[n]) and n not in unused]
    assert not unchanged, f"{len(unchanged)}/{len(before)} audio tensors unchanged after 2 steps: {unchanged[:5]}"
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"audio/cut_at_cap_ratio", "kl", "completions/mean_length", "rewards/accuracy_reward/mean"} <= logged


def test_each_logprob_forward_gets_its_own_prompts_features(tiny_model_dir, tmp_path):
    from r1_aqa.audio import load_audio
    from r1_aqa.families.loading import load_processor

    parquet = make_parquet(tmp_path, n=4)
    trainer = make_trainer(
        tiny_model_dir, parquet, tmp_path / "out", per_device_train_batch_size=4, num_generations=2,
        gradient_accumulation_steps=2, num_iterations=2, max_steps=2,
    )
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model  # beta > 0: TRL's own copy
    seen, passes = [], {"policy": 0, "reference": 0}

    def watch(name):
        def hook(module, args, kwargs):
            if kwargs.get("use_cache") is False:  # TRL's log-prob passes (old, reference, policy), not generate
                passes[name] += 1
                keys = ("input_ids", "input_features", "feature_attention_mask")
                missing = [k for k in keys if kwargs.get(k) is None]
                assert not missing, f"a {name} log-prob pass without {missing}"
                seen.append({k: kwargs[k].clone() for k in keys})
        return hook

    trainer.model.register_forward_pre_hook(watch("policy"), with_kwargs=True)
    trainer.ref_model.register_forward_pre_hook(watch("reference"), with_kwargs=True)
    trainer.train()

    processor = load_processor(tiny_model_dir)
    df = pd.read_parquet(parquet)
    expected = {}
    for i, row in df.iterrows():
        text = f"Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{row.question}"
        enc = processor(text=[text], audio=[load_audio(row.audio)], sampling_rate=16_000, return_tensors="pt")
        expected[i] = (enc["input_features"][0], enc["feature_attention_mask"][0])
    audio_id = trainer.audio_token_id
    # 2 optimizer steps x 2 micro-batches of 4 rows (policy), plus the old (policy) and reference passes over each
    # 8-row generation batch in chunks of 4
    assert passes["reference"] >= 2 and passes["policy"] >= 4, passes
    prompts_seen = set()
    for batch in seen:
        assert batch["input_features"].size(0) == batch["input_ids"].size(0)
        for ids, feats, fmask in zip(batch["input_ids"], batch["input_features"], batch["feature_attention_mask"]):
            text = processor.tokenizer.decode(ids, skip_special_tokens=True)
            i = int(re.search(r"number (\d+)\?", text).group(1))
            prompts_seen.add(i)
            want_feats, want_mask = expected[i]
            assert torch.equal(fmask, want_mask), f"row for question {i} got another clip's mask"
            assert torch.allclose(feats, want_feats, atol=1e-6), f"row for question {i} got another clip's features"
            assert int((ids == audio_id).sum()) > 0
    assert prompts_seen == set(range(4))


def test_cli_train_saves_loadable_checkpoints_and_resumes(tiny_model_dir, tmp_path):
    from safetensors import safe_open

    from r1_aqa.cli import main
    from r1_aqa.families.loading import load_model
    from r1_aqa.training.train import parse_trl_args, train

    parquet = make_parquet(tmp_path)
    out = tmp_path / "out"
    args = ["--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(parquet),
            "--output_dir", str(out)]
    # The audio options travel in the trainer's config (AudioGRPOConfig) and each checkpoint records them.
    assert main(["train", *args, "--max_steps", "2", "--max_audio_seconds", "1.25", "--min_signal_share", "0.25",
                 "--share_prompt", "false"]) == 0
    saved = torch.load(out / "checkpoint-2" / "training_args.bin", weights_only=False)
    assert type(saved).__name__ == "AudioGRPOConfig"
    assert (saved.max_audio_seconds, saved.min_signal_share, saved.share_prompt) == (1.25, 0.25, False)
    for folder in (out, out / "checkpoint-2"):
        model = load_model(folder, device="cpu")  # transformers; and the hub's weight names, which vLLM reads
        assert type(model).__name__ == "Qwen2AudioForConditionalGeneration"
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            names = list(f.keys())
        hub_prefixes = ("audio_tower.", "multi_modal_projector.", "language_model.")
        assert all(n.startswith(hub_prefixes) for n in names), names[:3]
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2

    trainer = train(*parse_trl_args([*args, "--max_steps", "3", "--resume_from_checkpoint", str(out / "checkpoint-2")]))
    steps = [e["step"] for e in trainer.state.log_history if "loss" in e]
    assert steps == [1, 2, 3] and trainer.state.global_step == 3


def test_train_help_lists_trl_flags(capsys):
    from r1_aqa.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--trl-help"])
    assert "--num_generations" in capsys.readouterr().out


def test_policy_never_samples_the_audio_token(tiny_model_dir, tmp_path):
    """With an LM head that favours <|AUDIO|>, rollouts still hold only the prompt's audio tokens."""
    from r1_aqa.audio import load_audio

    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", max_steps=1, learning_rate=1e-9)
    model, audio_id = trainer.model, trainer.audio_token_id
    favour_token(model, audio_id)
    row = trainer.train_dataset[0]
    processor = trainer.processing_class
    text = processor.apply_chat_template([row["prompt"]], add_generation_prompt=True, tokenize=False)[0]
    enc = processor(text=[text] * 4, audio=[load_audio(row["audio"])] * 4, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        free = model.generate(**enc, do_sample=True, max_new_tokens=6)[:, enc["input_ids"].size(1):]
    assert (free == audio_id).any(), "the rigged head should make <|AUDIO|> likely without suppression"

    counts, prompt_counts = audio_token_counts(trainer)
    trainer.train()  # a sampled <|AUDIO|> would fail here: "audio features and audio tokens do not match"
    assert counts and set(counts) <= prompt_counts


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_are_of_the_distribution_the_rollouts_sample_from(temperature, tiny_model_dir, tmp_path):
    """The rollouts never sample <|AUDIO|> and sample at the recipe's temperature, so every log-prob pass scores
    completions under that distribution: with a head that favours <|AUDIO|>, the log-probs equal a log-softmax of
    logits / temperature over the other tokens."""
    from r1_aqa.audio import load_audio

    trainer = make_trainer(tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", max_steps=1,
                           temperature=temperature)
    model, audio_id, processor = trainer.model.eval(), trainer.audio_token_id, trainer.processing_class
    favour_token(model, audio_id)
    row = trainer.train_dataset[0]
    text = processor.apply_chat_template([row["prompt"]], add_generation_prompt=True, tokenize=False)[0]
    enc = processor(text=[text + "<answer>low</answer>"], audio=[load_audio(row["audio"])], sampling_rate=16_000,
                    return_tensors="pt")
    k = len(processor.tokenizer("<answer>low</answer>")["input_ids"])
    features = {key: value for key, value in enc.items() if key not in ("input_ids", "attention_mask")}
    trainer._audio_keys = list(features)
    with torch.no_grad(), trainer._audio_for({**features, "audio_clip": torch.tensor([0])}):
        logps, _, _ = trainer._get_per_token_logps_and_entropies(model, enc["input_ids"], enc["attention_mask"], k)
        logits = model(**enc).logits[:, -k - 1 : -1] / temperature
    targets = enc["input_ids"][:, -k:]
    full = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    without = logits.index_fill(-1, torch.tensor([audio_id]), float("-inf")).log_softmax(-1)
    torch.testing.assert_close(logps, without.gather(-1, targets[..., None])[..., 0], rtol=1e-5, atol=1e-4)
    assert (logps - full).max() > 100, "the rigged head should put almost all the mass on <|AUDIO|> somewhere"


@pytest.mark.parametrize("recipe", sorted(str(p) for p in (ROOT / "examples/r1_aqa/recipes").rglob("*.yaml")))
def test_recipes_parse_with_trls_parser(recipe):
    from r1_aqa.training.sft import parse_sft_args
    from r1_aqa.training.train import parse_trl_args

    # use_cpu: bf16 recipes are validated against the machine's devices; sft*.yaml are `r1-aqa sft` recipes
    sft = Path(recipe).name.startswith(("sft", "tiny_sft"))
    parse = parse_sft_args if sft else parse_trl_args
    script_args, training_args, model_args = parse(["--config", recipe, "--use_cpu", "true"])
    assert script_args.template in ("default", "think") and (model_args.model_name_or_path or "tiny" in recipe)
    if not sft:
        assert training_args.num_generations >= 2 and training_args.loss_type == "grpo"


@pytest.mark.parametrize("model", ["qwen2_5_omni_7b", "qwen2_audio_7b"])
def test_weak_to_strong_recipes_carry_audiomcqs_settings(model):
    from r1_aqa.training.sft import parse_sft_args
    from r1_aqa.training.train import parse_trl_args

    recipes = ROOT / "examples/r1_aqa/recipes" / model / "weak_to_strong"
    script, args, _ = parse_trl_args(["--config", str(recipes / "grpo_strong.yaml"), "--use_cpu", "true"])
    assert (args.num_generations, args.beta, args.learning_rate, args.lr_scheduler_type) == (8, 0.001, 1e-6, "cosine")
    assert (args.temperature, args.top_k, args.max_completion_length, args.max_steps) == (1.5, 4, 128, 2000)
    assert script.reward_funcs == ["accuracy", "format"] and args.reward_weights == [2.0, 0.5]
    assert args.per_device_train_batch_size == 8 and not args.freeze_audio_tower and script.template == "default"
    sft_script, sft_args, _ = parse_sft_args(["--config", str(recipes / "sft_weak.yaml"), "--use_cpu", "true"])
    assert sft_script.reasoning_column is None and sft_args.bf16 and sft_args.max_length >= 1024


def test_faithful_recipe_matches_r1_aqa():
    from r1_aqa.training.train import parse_trl_args

    recipe = str(ROOT / "examples/r1_aqa/recipes/qwen2_audio_7b/grpo_r1_aqa.yaml")
    _, args, model_args = parse_trl_args(["--config", recipe, "--use_cpu", "true"])
    assert (args.loss_type, args.beta, args.num_generations, args.temperature) == ("grpo", 0.04, 8, 1.0)
    assert (args.max_completion_length, args.learning_rate, args.max_steps, args.save_steps) == (256, 1e-6, 1000, 100)
    assert args.bf16 and args.seed == 42 and model_args.model_name_or_path == "Qwen/Qwen2-Audio-7B-Instruct"
    gpus = 8
    completions = args.per_device_train_batch_size * args.gradient_accumulation_steps * gpus
    assert completions // args.num_generations == 16 and completions == 128


def test_omni_lm_head_runs_on_the_read_positions_only(tiny_omni_dir, tmp_path):
    """The Omni thinker takes no ``logits_to_keep``: generate's prefill reads 1 position and a log-prob pass the
    completion's, so the LM head gets only those; the log-probs equal the model's own full-length logits (each row in
    full: a shared-prompt pass reads its packed rows' positions, tests/test_share_prompt.py)."""
    trainer = make_trainer(tiny_omni_dir, make_parquet(tmp_path), tmp_path / "out", max_steps=1, learning_rate=0.0,
                           share_prompt=False)
    model, calls = trainer.model, []

    def on_forward(module, args, kwargs, output):
        inputs = {k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        calls.append((kwargs.get("use_cache") is not False, inputs, output.logits.detach().clone()))

    model.register_forward_hook(on_forward, with_kwargs=True)
    trainer.train()
    generate = [logits for generating, _, logits in calls if generating]
    passes = [(inputs, logits) for generating, inputs, logits in calls if not generating]
    assert generate and all(logits.size(1) == 1 for logits in generate)  # the prefill and every decode step
    assert passes, "no log-prob pass of the policy"
    model.eval()
    for inputs, logits in passes:  # the policy's old/loss passes, weights unchanged (learning rate 0)
        assert logits.size(1) < inputs["input_ids"].size(1)
        with torch.no_grad():
            full = model(**inputs, use_cache=False).logits
        torch.testing.assert_close(logits, full[:, -logits.size(1):], rtol=1e-5, atol=1e-5)
