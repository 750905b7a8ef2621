"""One rank of a 2-process colocated vLLM run with tensor parallel 2 (``test_distributed.py``): the tiny Qwen3-Omni
given as argv[1], results to argv[2]-RANK.json. Greedy vLLM vs the policy at the start and after an expert update
synced in place, then 2 GRPO steps (TP-group requests gathered, TRL's log-prob gap)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import conftest  # noqa: F401  (offline settings, vLLM's CPU defaults)
from helpers import make_parquet, make_trainer, perturb_params, vllm_and_hf_greedy

from r1_aqa.audio import load_audio


def main(model: str, out: str) -> None:
    rank = os.environ["RANK"]
    data = Path(f"{out}-data-{rank}")
    data.mkdir(parents=True, exist_ok=True)
    trainer = make_trainer(model, make_parquet(data), Path(out) / "run", use_vllm=True, vllm_mode="colocate",
                           vllm_max_model_length=1024, vllm_tensor_parallel_size=2, learning_rate=2e-2)
    row = trainer.train_dataset[0]
    clip = load_audio(row["audio"])
    vllm_start, hf_start, _, _ = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    perturb_params(trainer.accelerator.unwrap_model(trainer.model), "mlp.experts", scale=0.5, seed=0)
    trainer.sync_vllm_weights()
    vllm_experts, hf_experts, _, _ = vllm_and_hf_greedy(trainer, row["prompt"], clip)
    trainer.train()
    key = "sampling/sampling_logp_difference/mean"
    Path(f"{out}-{rank}.json").write_text(json.dumps({
        "vllm_start": vllm_start, "hf_start": hf_start, "vllm_experts": vllm_experts, "hf_experts": hf_experts,
        "gaps": [e[key] for e in trainer.state.log_history if key in e]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
