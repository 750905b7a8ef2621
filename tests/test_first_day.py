"""A new user's mistakes through the real CLI: each ends in one line naming the argument, file or row and what to do,
exit 2 (130 for Ctrl-C), no traceback, nothing written; input checks fire before torch is imported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import (
    RECIPE,
    ROOT,
    SFT_RECIPE,
    eval_argv,
    make_parquet,
    run_eval,
    wait_for_lines,
)

from r1_aqa.cli import main
from r1_aqa.evaluate.resume import partial_path

# Runs the CLI, then says whether torch was imported by the time it returned.
PROBE = ("import sys; from r1_aqa.cli import main; code = main(sys.argv[1:]); "
         "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(code)")


def cli(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> tuple[int, str, str]:
    """``r1-aqa ARGV`` in a fresh interpreter: exit code, the error line (asserted to be the only one on stderr,
    without a traceback) and whether torch was imported."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                          env={k: v for k, v in env.items() if v is not None}, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-3000:]
    return done.returncode, lines[0], done.stdout.strip().splitlines()[-1]


def _train(model, parquet, out, *extra, config=RECIPE, command="train") -> list:
    return [command, "--config", config, "--model_name_or_path", model, "--dataset_path", parquet,
            "--output_dir", out, *extra]


@pytest.fixture
def data(tmp_path) -> Path:
    return make_parquet(tmp_path)


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A directory that passes as a model before anything loads (the checks must fire before it is read)."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    return tmp_path / "model"


def _typo_recipe(tmp_path, base=RECIPE):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(Path(base).read_text() + "learnig_rate: 1.0e-5\n")
    return recipe


def _not_parquet(tmp_path):
    (tmp_path / "notes.parquet").write_text("question,answer\n")
    return tmp_path / "notes.parquet"


def _no_solution(tmp_path):
    frame = pd.read_parquet(make_parquet(tmp_path)).drop(columns=["solution"])
    frame.to_parquet(tmp_path / "raw.parquet")
    return tmp_path / "raw.parquet"


def _lost_clips(tmp_path):
    parquet = make_parquet(tmp_path)
    (tmp_path / "tone1.wav").unlink()
    (tmp_path / "tone3.wav").unlink()
    return parquet


# (what to change, the expected line); each case gets the tiny recipe, a model directory, a parquet and an output.
TRAIN_MISTAKES = {
    "negative max_steps": (lambda p, d, m: _train(m, d, p / "out", "--max_steps", "-3"),
                           "--max_steps -3: must be a step count >= 1, or -1 to train num_train_epochs epochs"),
    "max_steps 0": (lambda p, d, m: _train(m, d, p / "out", "--max_steps=0"), "--max_steps 0: must be"),
    "recipe key typo": (lambda p, d, m: _train(m, d, p / "out", config=_typo_recipe(p)),
                        "unknown key 'learnig_rate' (did you mean 'learning_rate'?)"),
    "flag typo": (lambda p, d, m: _train(m, d, p / "out", "--lerning_rate", "1e-4"),
                  "--lerning_rate: unknown argument (did you mean 'learning_rate'?)"),
    "not a parquet": (lambda p, d, m: _train(m, _not_parquet(p), p / "out"),
                      "notes.parquet: not a parquet file"),
    "a folder of parquets": (lambda p, d, m: _train(m, p, p / "out"),
                             "a directory, not a parquet file (it holds train.parquet: pass one)"),
    "missing column": (lambda p, d, m: _train(m, _no_solution(p), p / "out"), "missing column(s) ['solution']"),
    "lost clips": (lambda p, d, m: _train(m, _lost_clips(p), p / "out"),
                   "2 of 4 clips do not exist"),
    "no such model dir": (lambda p, d, m: _train(p / "runs" / "nope", d, p / "out"),
                          "runs/nope: no such model directory"),
    "GRPO recipe for sft": (lambda p, d, m: _train(m, d, p / "out", command="sft"), "unknown key 'beta'"),
    "sft recipe key typo": (lambda p, d, m: _train(m, d, p / "out", command="sft",
                                                   config=_typo_recipe(p, SFT_RECIPE)),
                            "unknown key 'learnig_rate'"),
    "sft reasoning column": (lambda p, d, m: _train(m, d, p / "out", "--reasoning_column", "thinking",
                                                    command="sft", config=SFT_RECIPE),
                             "missing column(s) ['thinking']"),
    "negative epochs": (lambda p, d, m: _train(m, d, p / "out", "--num_train_epochs", "-1"),
                        "--num_train_epochs -1: must be >= 0"),
    "no epochs and no max_steps": (lambda p, d, m: _train(m, d, p / "out", "--num_train_epochs", "0", "--max_steps",
                                                          "-1"),
                                   "--num_train_epochs 0: must be > 0 (or set --max_steps)"),
    "negative learning rate": (lambda p, d, m: _train(m, d, p / "out", "--learning_rate", "-0.1"),
                               "--learning_rate -0.1: must be >= 0"),
    "sft negative learning rate": (lambda p, d, m: _train(m, d, p / "out", "--learning_rate=-0.1", command="sft",
                                                          config=SFT_RECIPE),
                                   "--learning_rate -0.1: must be >= 0"),
    "output_dir a file": (lambda p, d, m: _train(m, d, d), "train.parquet: a file, not a directory"),
}


def test_flags_are_read_as_trl_reads_them():
    from r1_aqa.checks import flag_values

    known = {"reward_funcs", "max_steps", "bf16", "gradient_checkpointing", "learning_rate"}
    argv = ["--reward_funcs", "accuracy", "format", "--max_steps=-3", "--bf16", "--no_gradient_checkpointing",
            "--learning_rate", "1e-5"]
    assert flag_values(argv, known) == {"reward_funcs": ["accuracy", "format"], "max_steps": "-3", "bf16": True,
                                        "gradient_checkpointing": False, "learning_rate": "1e-5"}
    assert flag_values(["--learning_r", "1"], known) == {"learning_rate": "1"}  # argparse takes abbreviations
    with pytest.raises(ValueError, match="--lerning_rate: unknown argument \\(did you mean 'learning_rate'"):
        flag_values(["--lerning-rate", "1"], known)
    with pytest.raises(ValueError, match="--max: ambiguous, it could be --max_audio_seconds, --max_steps"):
        flag_values(["--max", "1"], known | {"max_audio_seconds"})
    with pytest.raises(ValueError, match="accuracy: unexpected argument"):
        flag_values(["accuracy", "--bf16"], known)
    assert flag_values(["--max_steps", "-1", "--bf16", "false"], known) == {"max_steps": "-1", "bf16": "false"}


def test_dashed_flags_are_read_as_trl_reads_them():
    """TRL's parser takes ``--max-audio-seconds`` for ``--max_audio_seconds``; the early check must not refuse it."""
    from r1_aqa.checks import flag_values
    from r1_aqa.training.train import parse_trl_args

    argv = ["--max-audio-seconds", "2", "--learning-rate=0.5", "--no-gradient-checkpointing", "--max-st", "3"]
    known = {"max_audio_seconds", "learning_rate", "gradient_checkpointing", "max_steps"}
    assert flag_values(argv, known) == {"max_audio_seconds": "2", "learning_rate": "0.5",
                                        "gradient_checkpointing": False, "max_steps": "3"}
    _, training, _ = parse_trl_args(["--model_name_or_path", ".", "--dataset_path", ".", "--output_dir", "o",
                                          "--use_cpu", "true", "--bf16", "false", *argv])
    assert (training.max_audio_seconds, training.learning_rate, training.gradient_checkpointing,
            training.max_steps) == (2.0, 0.5, False, 3)


@pytest.mark.parametrize("case", TRAIN_MISTAKES)
def test_training_input_is_checked_before_torch_loads(case, data, model_dir, tmp_path):
    make, expected = TRAIN_MISTAKES[case]
    code, line, torch = cli(make(tmp_path, data, model_dir))
    assert code == 2 and expected in line, line
    assert line.startswith(f"r1-aqa {make(tmp_path, data, model_dir)[0]}: error: ")
    assert torch == "torch not imported"
    assert not (tmp_path / "out").exists()


def test_vllm_rollouts_need_the_30_s_window(data, tmp_path):
    from r1_aqa.families.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny", window_seconds=2)  # tiny-model's default
    code, line, torch = cli(_train(model, data, tmp_path / "out", "--use_vllm", "true"))
    assert code == 2 and line == (f"r1-aqa train: error: --use_vllm true: {model} has a 2 s audio window and vLLM "
                                  "needs 30 s: build the tiny model with `r1-aqa tiny-model DIR --window-seconds 30`, "
                                  "or roll out with HF generate (--use_vllm false)")
    assert torch == "torch not imported" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra", [(), ("--fp16", "false")])
def test_gpu_recipe_on_a_cpu_says_what_to_do(extra, data, model_dir, tmp_path):
    recipe = ROOT / "examples/r1_aqa/recipes/qwen2_audio_7b/grpo_r1_aqa.yaml"
    code, line, _ = cli(_train(model_dir, data, tmp_path / "out", *extra, config=recipe))
    assert code == 2 and "sets bf16: true, which needs a GPU" in line and "--bf16 false --use_cpu true" in line
    assert "assign use_cpu" not in line and not (tmp_path / "out").exists()


@pytest.mark.parametrize("model", ["./x", "runs/nope", "runs/nope/"])
def test_a_local_looking_model_path_is_not_asked_of_the_hub(model, mmau_file, tmp_path):
    (tmp_path / "runs").mkdir()  # `runs/nope` would be a valid hub id, but runs/ is a local directory
    code, line, torch = cli(eval_argv(mmau_file, model, tmp_path / "p.json"), cwd=tmp_path,
                            env={"HF_HUB_OFFLINE": None, "TRANSFORMERS_OFFLINE": None})
    assert code == 2 and line == f"r1-aqa eval: error: --model {model}: no such model directory"
    assert torch == "torch not imported" and not (tmp_path / "p.json").exists()


def test_a_hub_id_with_the_hub_offline_fails_at_once(mmau_file, tmp_path):
    code, line, torch = cli(eval_argv(mmau_file, "Qwen/Not-Cached", tmp_path / "p.json"),
                            env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert code == 2 and "Qwen/Not-Cached: no such model directory, and not in the hub cache" in line
    assert torch == "torch not imported"


def test_a_folder_of_prepared_parquets_is_not_taken_for_mmsu(mmau_file, tiny_model_dir, tmp_path):
    folder = tmp_path / "prepared"
    assert main(["prepare", "mmau", "--input", str(mmau_file), "--output", str(folder / "mmau.parquet"),
                 "--workers", "1"]) == 0
    code, line, _ = cli(eval_argv(folder, tiny_model_dir, tmp_path / "p.json"))
    assert code == 2 and "a directory of parquet files from `r1-aqa prepare` (mmau.parquet): pass one" in line
    assert "MMSU" not in line and not (tmp_path / "p.json").exists()


def test_a_sweep_never_shares_a_name_with_one_models_output(mmau_file, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run_dir / "checkpoint-1")
    single = tmp_path / "single" / "pred.json"
    single.parent.mkdir()
    single.write_text("[]")
    code, line, _ = cli(eval_argv(mmau_file, run_dir, single, "--limit", "1"))
    assert code == 2 and f"--output {single} holds the predictions of one model" in line
    assert sorted(p.name for p in single.parent.iterdir()) == ["pred.json"]

    swept = tmp_path / "swept" / "pred.json"
    swept.parent.mkdir()
    swept.with_name("pred.checkpoint-1.json").write_text("[]")
    code, line, _ = cli(eval_argv(mmau_file, tiny_model_dir, swept, "--limit", "1"))
    assert code == 2 and "pred.checkpoint-1.json beside it is from a sweep" in line
    assert sorted(p.name for p in swept.parent.iterdir()) == ["pred.checkpoint-1.json"]


def test_score_refuses_predictions_made_for_another_benchmark(tmp_path):
    predictions = tmp_path / "pred.json"  # eval's output on a prepared synth parquet: no benchmark's own fields
    predictions.write_text(json.dumps([{"id": "a", "question": "Which?", "choices": ["low", "high"],
                                        "answer": "low", "model_output": "low"}]))
    predictions.with_name("pred.meta.json").write_text(json.dumps({"benchmark": "mmau"}))
    code, line, _ = cli(["score", "--benchmark", "mmsu", "--predictions", predictions])
    assert code == 2 and "made by `r1-aqa eval --benchmark mmau` (pred.meta.json)" in line
    assert "use --benchmark mmau" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.json", "pred.meta.json"]


def test_keeping_a_label_no_row_has_is_an_error(tmp_path):
    frame = pd.read_parquet(make_parquet(tmp_path))
    frame["audio_contribution"] = ["strong", "strong", None, "strong"]
    frame.to_parquet(tmp_path / "labelled.parquet")
    code, line, _ = cli(["filter", "--data", tmp_path / "labelled.parquet", "--keep", "weak",
                         "--output", tmp_path / "weak.parquet"])
    assert code == 2 and "--keep weak: none of the 4 rows is weak (0 weak, 3 strong, 1 unlabelled)" in line
    assert not (tmp_path / "weak.parquet").exists()


def test_filter_input_mistakes(data, tmp_path):
    code, line, torch = cli(["filter", "--data", tmp_path, "--model", "./x", "--output", tmp_path / "o.parquet"],
                            cwd=tmp_path, env={"HF_HUB_OFFLINE": None})
    assert code == 2 and line == "r1-aqa filter: error: --model ./x: no such model directory"
    code, line, torch = cli(["filter", "--data", tmp_path, "--keep", "weak", "--output", tmp_path / "o.parquet"])
    assert code == 2 and line.endswith(f"--data {tmp_path}: a directory, not a parquet file (it holds train.parquet: "
                                       "pass one)")
    assert torch == "torch not imported" and not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("reader", ["avqa", "mmau", "mmar"])
def test_prepare_input_that_is_a_directory(reader, tmp_path):
    code, line, _ = cli(["prepare", reader, "--input", tmp_path, "--output", tmp_path / "out.parquet"])
    assert code == 2 and line.startswith(f"r1-aqa prepare: error: {tmp_path}: is a directory, not a")
    assert "MMSU" not in line and not (tmp_path / "out.parquet").exists()


def test_eval_refuses_a_prepared_parquet_of_another_benchmark(mmau_file, tiny_model_dir, tmp_path):
    data = tmp_path / "mmau.parquet"
    assert main(["prepare", "mmau", "--input", str(mmau_file), "--output", str(data), "--workers", "1"]) == 0
    before = sorted(tmp_path.iterdir())
    argv = eval_argv(data, tiny_model_dir, tmp_path / "out" / "pred.json")
    code, line, torch = cli([*argv[:2], "mmsu", *argv[3:]])
    assert code == 2 and line == f"r1-aqa eval: error: {data}: prepared from MMAU data, not MMSU: use --benchmark mmau"
    assert torch == "torch not imported" and sorted(tmp_path.iterdir()) == before


def test_synth_into_a_folder_holding_a_task_needs_overwrite(tmp_path):
    folder = tmp_path / "synth"
    assert main(["synth", str(folder), "--n", "6", "--seconds", "0.1"]) == 0
    clips = sorted((folder / "audio").iterdir())
    jsonl = (folder / "pitch.jsonl").read_bytes()
    code, line, torch = cli(["synth", folder, "--n", "3", "--seed", "1", "--task", "count", "--seconds", "0.1"])
    assert code == 2 and line == (f"r1-aqa synth: error: {folder} already holds a task (pitch.jsonl): pass "
                                  "--overwrite to replace it (its clips are removed), or choose another folder")
    assert torch == "torch not imported"
    assert sorted((folder / "audio").iterdir()) == clips and (folder / "pitch.jsonl").read_bytes() == jsonl
    assert main(["synth", str(folder), "--n", "3", "--seed", "1", "--task", "count", "--seconds", "0.1",
                 "--overwrite"]) == 0
    rows = [json.loads(r) for r in (folder / "count.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in folder.iterdir()) == ["audio", "count.jsonl"]
    assert sorted((folder / "audio").iterdir()) == sorted(folder / r["audio_path"] for r in rows)


def test_ctrl_c_then_the_same_overwrite_command_resumes_to_the_same_bytes(mmau_file, tiny_model_dir,
                                                                           tmp_path, capsys):
    """An ``eval --overwrite`` over an older output, stopped by Ctrl-C mid-run, exits 130 with one line; started
    again, the same command resumes its own partial file and writes the bytes of an uninterrupted run."""
    output = tmp_path / "pred.json"
    # an older output, other settings
    run_eval(mmau_file, tiny_model_dir, output, "--max-new-tokens", "2", "--limit", "2")
    argv = eval_argv(mmau_file, tiny_model_dir, output, "--batch-size", "1", "--overwrite")
    proc = subprocess.Popen([sys.executable, "-m", "r1_aqa.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    partial = partial_path(output)
    wait_for_lines(proc, partial, 3)  # the settings line and two items
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"r1-aqa eval: interrupted; the items done so far are kept beside {output} (*.partial*.jsonl): the same "
        "command resumes from them")
    done = partial.read_text().count("\n") - 1
    assert 2 <= done < 6

    capsys.readouterr()
    records = run_eval(mmau_file, tiny_model_dir, output, "--batch-size", "1", "--overwrite")
    assert f"resuming after {done} of 6 items" in capsys.readouterr().err
    reference = run_eval(mmau_file, tiny_model_dir, tmp_path / "ref.json", "--batch-size", "1")
    assert records == reference and output.read_bytes() == (tmp_path / "ref.json").read_bytes()
    assert not partial.exists()


NOISE = ("Setting accelerator to CPU", "The tokenizer has new PAD/BOS/EOS tokens", "Writing model shards",
         "Loading weights")


def test_a_training_run_shows_only_its_own_lines(tiny_model_dir, data, tmp_path):
    """Library notices known to be harmless and the hub's shard bars stay out of the run's bar unless --verbose."""
    argv = [sys.executable, "-m", "r1_aqa.cli", "sft", "--config", str(SFT_RECIPE), "--model_name_or_path",
            str(tiny_model_dir), "--dataset_path", str(data), "--max_steps", "1", "--save_strategy", "no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    for flags, shown in (([], False), (["--verbose"], True)):
        out = tmp_path / f"out{len(flags)}"
        done = subprocess.run([*argv, "--output_dir", str(out), *flags], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert [n for n in NOISE if n in done.stderr + done.stdout] == (list(NOISE) if shown else []), done.stderr
