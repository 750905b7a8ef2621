"""``r1-aqa demo --quick``: every stage runs for real (synth, prepare, tiny model, warm start, GRPO, eval) and the
outputs are written. The accuracy targets are for the full demo, not checked here."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from r1_aqa import cli, demo


def test_quick_demo_runs_every_stage_and_writes_its_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick"]) == 0

    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy_before", "accuracy_after", "accuracy_silence", "warm_start_count_accuracy"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["n_eval"] == demo.QUICK["n_eval"]
    assert summary["grpo_steps"] == demo.QUICK["grpo_steps"]
    assert summary["seconds"] > 0
    assert set(summary["stage_seconds"]) == {"data", "model", "eval_before", "grpo", "eval_after"}
    assert summary["smoke_run"] is True and summary["targets_met"] is None  # a smoke run is measured, not judged
    assert [r["step"] for r in summary["reward_log"]] == [1, 2]  # logged every step in a short run
    assert all(0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["format"] <= 1.0 for r in summary["reward_log"])

    # Held-out items are scored before and after, and the control really replaces every clip with silence.
    for name in ("before", "after", "silence", "count_before"):
        assert len(json.loads((out / "eval" / f"{name}.json").read_text())) == demo.QUICK["n_eval"]
    silence = json.loads((out / "eval" / "silence.json").read_text())
    assert {r["audio"] for r in silence} == {str(out / "data" / "silence.wav")}
    train = set(pd.read_parquet(out / "data" / "pitch_train.parquet")["id"])
    held_out = set(pd.read_parquet(out / "data" / "pitch_eval.parquet")["id"])
    assert len(held_out) == demo.QUICK["n_eval"] and train.isdisjoint(held_out)
    labels = pd.read_parquet(out / "data" / "pitch_eval.parquet")["answer"].value_counts()
    assert sorted(labels.index) == ["high", "low", "mid", "top"] and set(labels) == {demo.QUICK["n_eval"] // 4}

    report = (out / "report.md").read_text()
    assert "| accuracy after GRPO |" in report and "![rewards](rewards.png)" in report
    for png in ("rewards.png", "accuracy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr()
    assert "| seconds end to end |" in printed.out  # the closing table is printed
    assert "Smoke run" in printed.out and "| met |" not in printed.out and "| no |" not in printed.out
    assert f"{out / 'report.md'}" in printed.err and f"{out / 'model' / 'grpo'}" in printed.err

    # A second run into the same folder (another seed: other models) redoes every stage rather than refusing.
    first = json.loads((out / "eval" / "after.meta.json").read_text())["model_files"]
    assert cli.main(["demo", "--out", str(out), "--quick", "--seed", "1"]) == 0
    assert json.loads((out / "eval" / "after.meta.json").read_text())["model_files"] != first


def test_full_run_table_judges_each_target():
    summary = {"accuracy_before": 0.25, "warm_start_count_accuracy": 0.9, "accuracy_after": 0.5,
               "accuracy_silence": 0.25, "n_eval": 200, "seconds": 300.0}
    summary["targets_met"] = demo.targets_met(summary)
    table = demo.summary_table(summary)
    assert "Smoke run" not in table
    assert "| accuracy after GRPO | 0.500 | >= 0.6 | no |" in table and "| gain | +0.250 | >= +0.2 | yes |" in table


def test_recipe_is_a_valid_trl_config():
    from r1_aqa.training.train import parse_trl_args

    recipe = yaml.safe_load(demo.RECIPE.read_text())
    script, grpo, _ = parse_trl_args(["--config", str(demo.RECIPE), "--model_name_or_path", "m",
                                      "--dataset_path", "d.parquet", "--output_dir", "o"])
    assert grpo.max_steps == recipe["max_steps"] and grpo.num_generations == recipe["num_generations"]
    assert grpo.per_device_train_batch_size % grpo.num_generations == 0
    assert grpo.max_audio_seconds == demo.WINDOW_SECONDS


def test_format_warm_start_targets_carry_no_answer(tmp_path):
    """The pitch warm-start solutions are options drawn at random (right ~1/4 of the time); count's are the answers."""
    from r1_aqa.data.synth import make_item

    rows = []
    for i in range(400):
        item, _ = make_item("pitch", i, seed=0, seconds=0.1)
        answer = item["multi_choice"][item["answer"]]
        rows.append({"id": f"p{i}", "question": "q", "audio": "a.wav", "choices": item["multi_choice"],
                     "answer": answer, "answer_idx": item["answer"], "solution": f"<answer>{answer}</answer>"})
    pd.DataFrame(rows).to_parquet(tmp_path / "pitch.parquet")
    pd.DataFrame(rows[:10]).assign(id=lambda f: "c" + f["id"]).to_parquet(tmp_path / "count.parquet")
    out = pd.read_parquet(demo.write_warm_start_data(tmp_path / "pitch.parquet", tmp_path / "count.parquet",
                                                     tmp_path / "warm.parquet"))
    fmt, labelled = out.iloc[:400], out.iloc[400:]
    picked = [s.removeprefix("<answer>").removesuffix("</answer>") for s in fmt["solution"]]
    assert all(p in row["choices"] for p, row in zip(picked, rows))
    assert list(fmt["answer"]) == picked and [list(c)[i] for c, i in zip(fmt["choices"], fmt["answer_idx"])] == picked
    right = sum(p == row["answer"] for p, row in zip(picked, rows)) / len(rows)
    assert 0.15 < right < 0.35
    assert list(labelled["solution"]) == [r["solution"] for r in rows[:10]]


def test_balanced_held_out_labels_cycle_and_positions_stay_random():
    from r1_aqa.data.synth import TASKS, make_item

    items = [make_item("pitch", i, seed=1, seconds=0.1, balanced=True)[0] for i in range(200)]
    words = TASKS["pitch"][1]
    assert [words.index(r["multi_choice"][r["answer"]]) for r in items] == [i % 4 for i in range(200)]
    assert {r["answer"] for r in items} == {0, 1, 2, 3}


def test_a_missed_target_exits_non_zero_with_one_line_saying_what_to_try(tmp_path, capsys):
    """A judged run (no --quick) whose GRPO cannot learn (learning rate 0, an override passed to the recipe)."""
    sizes = [f"--{k.replace('_', '-')}={v}" for k, v in demo.QUICK.items()]
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), *sizes, "--learning_rate", "0"]) == 1
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("r1-aqa demo: target missed:")]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["accuracy_after"] == summary["accuracy_before"]  # lr 0 reached GRPO: nothing learned
    assert "gain +0.000 < +0.2" in line and "docs/experiments.md" in line
    assert f"held-out items {demo.QUICK['n_eval']} < 200" in line and "--n-eval 200" in line
    assert ("silent-audio" in line) == (summary["accuracy_silence"] > 0.35)  # only the targets it missed


def test_an_unknown_recipe_override_is_refused_before_any_stage(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--quick", "--bogus_flag", "3"]) == 2
    assert "--bogus_flag" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def _diagnosed(tmp_path, said: dict[str, list[str]], shares: list[float]) -> str:
    """``demo.diagnose`` on held-out records whose right answer -> what the model said, and GRPO's signal shares."""
    records = [{"answer": a, "model_output": o} for a, outputs in said.items() for o in outputs]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "after.json").write_text(json.dumps(records))
    (tmp_path / "model" / "grpo").mkdir(parents=True)
    (tmp_path / "model" / "grpo" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": i, "loss": 0.0, "signal/share": s}) + "\n" for i, s in enumerate(shares)))
    return demo.diagnose(tmp_path)


def test_the_diagnosis_names_one_answer_for_most_items(tmp_path):
    said = {"low": ["high"] * 5, "mid": ["high"] * 5, "high": ["high"] * 5, "top": ["top"] * 5}
    assert _diagnosed(tmp_path, said, [0.9]) == "the model gives one answer ('high') to 75% of the held-out items"


def test_the_diagnosis_names_merged_classes_and_missing_signal(tmp_path):
    said = {"low": ["low"] * 5, "mid": ["low"] * 4 + ["mid"], "high": ["high"] * 5, "top": ["high"] * 5}
    text = _diagnosed(tmp_path, said, [0.9, 0.5, 0.1, 0.1, 0.1])
    assert text == ("it learned 2 of 4 answers; items of 'mid' (0.20), 'top' (0.00) are mostly answered 'high' "
                    "(classes merged); GRPO had almost no signal at the end (groups with signal: 10%)")
