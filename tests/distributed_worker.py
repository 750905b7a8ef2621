"""Process entry of the multi-process tests (``test_distributed.py``), started by ``accelerate launch`` or ``torchrun``:

    accelerate launch --config_file CFG tests/distributed_worker.py RECORD.json [r1-aqa train flags ...]

It runs ``r1-aqa train`` itself (``r1_aqa.cli.main``: train, final save, end of training) with ``--reward_funcs
distributed_worker.length_reward`` and records on every rank what the tests check: the rows, rewards and advantages
of each generation batch, a digest of every parameter after training (ZeRO-3 shards gathered), the logged metrics
and, with vLLM, the engine's greedy tokens for the first training row after a final weight sync. Rank 0 writes the
records of all ranks to RECORD.json before the run ends.
"""

from __future__ import annotations

import hashlib
import sys

import torch

from r1_aqa.files import write_json
from r1_aqa.training.rewards import completion_text
from r1_aqa.training.trainer import AudioGRPOTrainer

VLLM_NEW_TOKENS = 8
_rewards: list[list] = []  # (id, reward) of the rows this rank scored in the current generation batch
_batches: list[dict] = []


def length_reward(completions: list, id: list[str], **kwargs) -> list[float]:  # noqa: A002 (the dataset's column)
    """Varies within a group (completion length mod 5), so advantages and gradients are not zero."""
    values = [float(len(completion_text(c)) % 5) for c in completions]
    _rewards.append(list(zip(id, values, strict=True)))
    return values


def _digests(model) -> dict[str, str]:
    """sha1 of every parameter's float32 bytes; under ZeRO-3 each rank gathers the full tensors first."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    params = dict(model.named_parameters())
    if is_deepspeed_zero3_enabled():
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(params.values())):
            return {n: hashlib.sha1(p.detach().float().cpu().numpy().tobytes()).hexdigest() for n, p in params.items()}
    return {n: hashlib.sha1(p.detach().float().cpu().numpy().tobytes()).hexdigest() for n, p in params.items()}


def _vllm_greedy(trainer) -> list[int]:
    from vllm import SamplingParams

    from r1_aqa.audio import load_audio
    from r1_aqa.families.vllm_audio import audio_request, collapse_audio_tokens

    trainer.sync_vllm_weights()
    row, processor = trainer.train_dataset[0], trainer.processing_class
    text = processor.apply_chat_template([row["prompt"]], add_generation_prompt=True, tokenize=False)[0]
    clip = load_audio(row["audio"])
    ids = processor(text=[text], audio=[clip], sampling_rate=16_000)["input_ids"][0]
    request = audio_request(collapse_audio_tokens(list(ids), trainer.audio_token_id), clip)
    params = SamplingParams(temperature=0.0, max_tokens=VLLM_NEW_TOKENS, bad_words=[processor.audio_token])
    out = trainer.vllm_generation.llm.generate([request], sampling_params=params, use_tqdm=False)[0]
    return list(out.outputs[0].token_ids)


def _install(record_path: str) -> None:
    generate_and_score = AudioGRPOTrainer._generate_and_score_completions
    train = AudioGRPOTrainer.train

    def recorded_generate_and_score(self, inputs):
        _rewards.clear()
        output = generate_and_score(self, inputs)
        (scored,) = _rewards
        assert [i for i, _ in scored] == [x["id"] for x in inputs]
        _batches.append({"step": self.state.global_step, "ids": [x["id"] for x in inputs],
                         "rewards": [r for _, r in scored], "advantages": output["advantages"].tolist()})
        return output

    def recorded_train(self, *args, **kwargs):
        result = train(self, *args, **kwargs)
        model = self.accelerator.unwrap_model(self.model)
        record = {
            "rank": self.accelerator.process_index,
            "world_size": self.accelerator.num_processes,
            "batches": _batches,
            "digests": _digests(model),
            "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
            "share_prompt": self.share_prompt,
            "log_history": self.state.log_history,
            "vllm_greedy": _vllm_greedy(self) if self.use_vllm else None,
        }
        records = [None] * self.accelerator.num_processes
        torch.distributed.all_gather_object(records, record)
        if self.accelerator.is_main_process:
            write_json(record_path, records, indent=None)
        return result

    AudioGRPOTrainer._generate_and_score_completions = recorded_generate_and_score
    AudioGRPOTrainer.train = recorded_train


if __name__ == "__main__":
    import distributed_worker  # the module the reward is imported from by name, not this __main__ copy

    from r1_aqa.cli import main

    distributed_worker._install(sys.argv[1])
    sys.exit(main(["train", *sys.argv[2:], "--reward_funcs", "distributed_worker.length_reward"]))
