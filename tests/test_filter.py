"""``r1-aqa filter`` on the tiny Qwen2-Audio: labels, the rule, resume after a kill, bad clips and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT, wait_for_lines, write_tone

from r1_aqa.cli import main

CHOICES = ["low", "high", "middle"]


def make_set(tmp_path: Path, answers: list[str], name: str = "set") -> Path:
    """A prepared-style parquet: one tone clip per item, the given answers, a task column."""
    rows = []
    for i, answer in enumerate(answers):
        clip = write_tone(tmp_path / f"{name}{i}.wav", freq=300.0 + 100.0 * i, seconds=0.5 + 0.25 * (i % 3))
        rows.append(dict(id=f"{name}-{i}", question=f"Which tone is number {i}?", choices=CHOICES, answer=answer,
                         answer_idx=CHOICES.index(answer), solution=f"<answer>{answer}</answer>", prompt="",
                         audio=str(clip.resolve()), duration_s=0.5, sample_rate=16_000, dataset_name="synthetic",
                         task="sound" if i % 2 else "music"))
    path = tmp_path / f"{name}.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture(scope="module")
def says_low(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model fine-tuned (``r1-aqa sft``) to answer ``<answer>low</answer>`` whatever it hears."""
    tmp = tmp_path_factory.mktemp("says-low")
    out = tmp / "model"
    assert main(["sft", "--config", str(ROOT / "examples/r1_aqa/recipes/tiny_sft.yaml"), "--model_name_or_path",
                 str(tiny_model_dir), "--dataset_path", str(make_set(tmp, ["low"] * 4)), "--output_dir", str(out),
                 "--max_steps", "25", "--learning_rate", "1e-2", "--per_device_train_batch_size", "4",
                 "--save_strategy", "no"]) == 0
    return out


def _filter(data: Path, output: Path, *models: Path, extra: tuple = ()) -> int:
    argv = ["filter", "--data", str(data), "--output", str(output), "--max-new-tokens", "8"]
    for model in models:
        argv += ["--model", str(model)]
    return main([*argv, *extra])


def test_items_answered_without_listening_are_weak(says_low, tiny_model_dir, tmp_path):
    """The model answers "low" with or without audio: items whose answer is "low" are weak, the others strong."""
    data = make_set(tmp_path, ["low", "high", "low", "middle", "low", "high"])
    out = tmp_path / "labelled.parquet"
    assert _filter(data, out, says_low) == 0
    labelled = pd.read_parquet(out)
    assert list(labelled["id"]) == list(pd.read_parquet(data)["id"])
    assert list(labelled["audio_contribution"]) == ["weak", "strong", "weak", "strong", "weak", "strong"]
    assert list(labelled["m0_silence_correct"]) == list(labelled["m0_audio_correct"]) == [1, 0, 1, 0, 1, 0]
    report = json.loads((tmp_path / "labelled.filter.json").read_text())
    assert (report["weak"], report["strong"], report["labelled"]) == (3, 3, 6)
    assert report["accuracy"] == {"audio": 50.0, "silence": 50.0, "gap": 0.0, "answers": 6}
    assert report["groups"]["task"]["music"] == {"n": 3, "weak": 3, "strong": 0, "audio": 100.0, "silence": 100.0,
                                                 "gap": 0.0, "answers": 3}
    assert "**3 weak**" in (tmp_path / "labelled.filter.md").read_text()
    assert (tmp_path / "labelled.filter.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "labelled.parquet.partial.jsonl").exists()

    # --keep on the labelled file takes the subset without a model; two voters, 3 samples each, keep strong
    assert main(["filter", "--data", str(out), "--output", str(tmp_path / "weak.parquet"), "--keep", "weak"]) == 0
    assert list(pd.read_parquet(tmp_path / "weak.parquet")["id"]) == ["set-0", "set-2", "set-4"]
    voted = tmp_path / "voted.parquet"
    assert _filter(data, voted, says_low, tiny_model_dir, extra=("--samples", "3", "--temperature", "0.5",
                                                                 "--keep", "strong", "--batch-size", "4")) == 0
    voted = pd.read_parquet(voted)
    assert set(voted["audio_contribution"]) == {"strong"}
    assert {"m0_audio_correct", "m0_silence_correct", "m1_audio_correct", "m1_silence_correct"} <= set(voted)
    # the "low" items: says_low is right 3 of 3 times with silence, the random model never: 3 of 6 is no majority
    assert list(voted["id"]) == [f"set-{i}" for i in range(6)]
    assert list(voted["m0_silence_correct"]) == [3, 0, 3, 0, 3, 0] and set(voted["m1_silence_correct"]) == {0}
    assert list(voted["silence_correct_share"]) == [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]


def test_the_label_comes_from_the_silent_answers(tiny_model_dir, tmp_path):
    """Answers with audio and with silence that disagree: the label follows the silent ones (answers read back from
    a partial file, as a resumed run does: no generation)."""
    data = make_set(tmp_path, ["low", "high", "low", "high"])
    out = tmp_path / "out.parquet"
    settings = {"data": str(data.resolve()), "models": [str(Path(tiny_model_dir).resolve())], "engine": "hf",
                "dtype": "float32", "template": "default", "max_new_tokens": 8, "max_audio_seconds": None,
                "samples": 1, "temperature": 1.0, "seed": 0, "limit": None, "batch_size": 8}
    # (right with audio, right with silence) per item
    outcomes = {"set-0": (1, 0), "set-1": (0, 1), "set-2": (1, 1), "set-3": (0, 0)}
    lines = [{"_r1_aqa_eval_run": settings}]
    for item, correct in outcomes.items():
        lines += [{"id": item, "model": 0, "condition": c, "responses": ["<answer>?</answer>"], "correct": n}
                  for c, n in zip(("audio", "silence"), correct)]
    out.with_name(out.name + ".partial.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _filter(data, out, tiny_model_dir) == 0
    labelled = pd.read_parquet(out)
    assert list(labelled["audio_contribution"]) == ["strong", "weak", "weak", "strong"]
    assert list(labelled["m0_audio_correct"]) == [1, 0, 1, 0] and list(labelled["m0_silence_correct"]) == [0, 1, 1, 0]


def test_ctrl_c_and_resume_gives_the_identical_file(says_low, tmp_path, capsys):
    data = make_set(tmp_path, ["low", "high"] * 4)
    out = tmp_path / "out.parquet"
    flags = ["--max-new-tokens", "8", "--samples", "2", "--batch-size", "1"]
    argv = [sys.executable, "-m", "r1_aqa.cli", "filter", "--data", str(data), "--model", str(says_low),
            "--output", str(out), *flags]
    partial = out.with_name(out.name + ".partial.jsonl")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    wait_for_lines(proc, partial, 4)  # the settings line and 3 answer sets
    exited = proc.poll()
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert exited is None and not out.exists(), "the run ended before it was stopped"
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"r1-aqa filter: interrupted; the answers so far are in {partial}: the "
                                            "same command resumes from them")
    with open(partial, "a") as f:
        f.write('{"id": "set-7", "mod')  # a record cut short by a kill
    assert main(["filter", "--data", str(data), "--model", str(says_low), "--output", str(out),
                 "--max-new-tokens", "8", "--samples", "3"]) == 2  # other settings: refused
    assert "other settings" in capsys.readouterr().err
    assert main(["filter", "--data", str(data), "--model", str(says_low), "--output", str(out), *flags]) == 0
    ref = tmp_path / "ref.parquet"
    assert main(["filter", "--data", str(data), "--model", str(says_low), "--output", str(ref), *flags]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref))
    assert not partial.exists()


def test_bad_clip_is_reported_and_left_unlabelled(says_low, tmp_path):
    data = make_set(tmp_path, ["low", "high", "low"])
    frame = pd.read_parquet(data)
    Path(frame.audio[1]).write_bytes(b"RIFF not really a wav")
    out = tmp_path / "out.parquet"
    assert _filter(data, out, says_low) == 0
    labelled = pd.read_parquet(out)
    assert labelled["audio_contribution"][[0, 2]].tolist() == ["weak", "weak"]
    assert pd.isna(labelled["audio_contribution"][1]) and pd.isna(labelled["m0_audio_correct"][1])
    report = json.loads((tmp_path / "out.filter.json").read_text())
    assert [u["id"] for u in report["unlabelled"]] == ["set-1"] and "cannot decode" in report["unlabelled"][0]["reason"]
    assert _filter(data, tmp_path / "strong.parquet", says_low, extra=("--keep", "strong")) == 2  # none is strong
    assert not (tmp_path / "strong.parquet").exists()


def test_bad_input_is_one_clear_error(tiny_model_dir, tmp_path, capsys):
    data = make_set(tmp_path, ["low", "high"])
    assert main(["filter", "--data", str(data), "--output", str(tmp_path / "o.parquet"), "--keep", "strong"]) == 2
    err = capsys.readouterr().err
    assert "not labelled" in err and "r1-aqa filter" in err and "--model" in err
    pd.read_parquet(data).drop(columns=["solution", "choices"]).to_parquet(tmp_path / "bare.parquet")
    assert _filter(tmp_path / "bare.parquet", tmp_path / "o.parquet", tiny_model_dir) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['choices', 'solution']" in err and "r1-aqa prepare" in err
    assert not (tmp_path / "o.parquet").exists()


def test_filter_help(capsys):
    with pytest.raises(SystemExit):
        main(["filter", "--help"])
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--samples", "--temperature", "--keep", "--engine", "--weak-above"))


def test_weak_to_strong_script_runs_the_three_stages(says_low, tmp_path):
    """examples/r1_aqa/run_weak_to_strong.sh on the tiny model, one process: filter, SFT on weak, GRPO on strong."""
    data = make_set(tmp_path, ["low", "high", "low", "middle"])
    out = tmp_path / "w2s"
    recipes = ROOT / "examples/r1_aqa/recipes"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MODEL": str(says_low), "DATA": str(data), "OUT": str(out), "ENGINE": "hf", "LAUNCH": sys.executable,
           "SFT_RECIPE": str(recipes / "tiny_sft.yaml"), "GRPO_RECIPE": str(recipes / "tiny_grpo.yaml"),
           "FILTER_ARGS": "--max-new-tokens 8", "SFT_ARGS": "--max_steps 1 --save_strategy no",
           "GRPO_ARGS": "--max_steps 1 --save_strategy no"}
    done = subprocess.run(["bash", str(ROOT / "examples/r1_aqa/run_weak_to_strong.sh")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(pd.read_parquet(out / "data" / "weak.parquet")["id"]) == ["set-0", "set-2"]
    assert list(pd.read_parquet(out / "data" / "strong.parquet")["id"]) == ["set-1", "set-3"]
    for stage in ("sft", "grpo"):
        assert (out / stage / "model.safetensors").exists() and (out / stage / "config.json").exists()
    assert "[3/3] GRPO on the strong subset" in done.stdout


@pytest.mark.vllm
def test_vllm_engine_gives_the_hf_labels(says_low, tmp_path):
    """The vLLM engine's greedy and seeded sampled answers label the set as the hf engine does."""
    data = make_set(tmp_path, ["low", "high", "low", "middle"])
    flags = ("--samples", "3", "--temperature", "0.3")
    assert _filter(data, tmp_path / "hf.parquet", says_low, extra=flags) == 0
    assert _filter(data, tmp_path / "vllm.parquet", says_low, extra=(*flags, "--engine", "vllm")) == 0
    hf, vllm = pd.read_parquet(tmp_path / "hf.parquet"), pd.read_parquet(tmp_path / "vllm.parquet")
    assert list(vllm["audio_contribution"]) == list(hf["audio_contribution"]) == ["weak", "strong", "weak", "strong"]
    assert list(vllm["m0_silence_correct"]) == [3, 0, 3, 0]
