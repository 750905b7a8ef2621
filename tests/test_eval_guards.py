"""``r1-aqa eval`` before and around the model: bad arguments and inputs end in one clear error, every bad clip is
listed before the model loads, finished outputs are never silently overwritten or redone, and resume keeps its
promises (per-batch flush, torn last line cut, input order, every setting that changes predictions)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from helpers import N_ITEMS, RECIPE, eval_argv, make_parquet, run_eval

from r1_aqa.cli import build_parser, main
from r1_aqa.evaluate import benchmarks, predict
from r1_aqa.evaluate.paths import meta_path
from r1_aqa.evaluate.resume import PartialRecords, partial_path


def _usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--help"])
    options = capsys.readouterr().out.split("options:", 1)[1]
    entries = {}  # option -> its help text
    for line in options.splitlines():
        if line.startswith("  -"):
            name = line.split()[0].rstrip(",")
            entries[name] = line
        elif line.strip():
            entries[name] += " " + line.strip()
    for option in ("--benchmark", "--engine", "--template", "--max-new-tokens", "--permutations", "--dtype",
                   "--batch-size", "--limit", "--audio-dir", "--max-audio-seconds"):
        assert "(default:" in entries[option], entries[option]
    assert "0 = original" not in entries["--permutations"] and "K >= 1" in entries["--permutations"]


@pytest.mark.parametrize("flag", ["--batch-size", "--limit", "--permutations", "--max-new-tokens"])
def test_non_positive_counts_are_usage_errors(flag, mmau_file, tiny_model_dir, tmp_path, capsys):
    err = _usage_error(eval_argv(mmau_file, tiny_model_dir, tmp_path / "p.json", flag, "0"), capsys)
    assert f"argument {flag}: must be >= 1, got 0" in err


def test_more_permutations_than_option_orders(mmau_file, tiny_model_dir, tmp_path, capsys):
    assert main(eval_argv(mmau_file, tiny_model_dir, tmp_path / "p.json", "--permutations", "3")) == 2
    assert "item item-0 has 2 options, so only 2 distinct orders" in capsys.readouterr().err


def test_wrong_benchmark_flag_names_the_right_one(mmau_file, tiny_model_dir, tmp_path, capsys):
    mmsu = tmp_path / "mmsu.parquet"
    pd.DataFrame([{"key": "k", "question": "q", "options": ["a", "b"], "answer_index": 0,
                   "category": "perception-x", "audio": None}]).to_parquet(mmsu)
    mmar = tmp_path / "MMAR-meta.jsonl"
    mmar.write_text(json.dumps({"id": "m", "audio_path": "a.wav", "modality": "sound"}) + "\n")
    for data, benchmark, hint in ((mmsu, "mmau", "--benchmark mmsu"), (tmp_path, "mmau", "--benchmark mmsu"),
                                  (mmau_file, "mmsu", "--benchmark mmau"), (mmar, "mmau", "--benchmark mmar"),
                                  (mmau_file, "mmar", "--benchmark mmau")):
        argv = eval_argv(mmau_file, tiny_model_dir, tmp_path / "p.json")
        argv[argv.index("--benchmark") + 1] = benchmark
        argv[argv.index("--data") + 1] = str(data)
        assert main(argv) == 2
        assert f"{data}: looks like" in (err := capsys.readouterr().err) and hint in err, err


def test_undecodable_input_file_is_named(mmau_file, tiny_model_dir, tmp_path, capsys):
    latin = tmp_path / "latin1.json"
    latin.write_bytes('[{"id": "é"}]'.encode("latin-1"))
    assert main(eval_argv(latin, tiny_model_dir, tmp_path / "p.json")) == 2
    assert f"{latin}: not UTF-8 text" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 not really a parquet file")
    argv = eval_argv(corrupt, tiny_model_dir, tmp_path / "p.json")
    argv[argv.index("--benchmark") + 1] = "mmsu"
    assert main(argv) == 2
    assert f"{corrupt}: not a readable parquet file" in capsys.readouterr().err


def test_missing_model_path(mmau_file, tmp_path, capsys):
    assert main(eval_argv(mmau_file, tmp_path / "nope", tmp_path / "p.json")) == 2
    assert f"{tmp_path / 'nope'}: no such model directory" in capsys.readouterr().err


def test_hub_model_id_is_accepted(mmau_file, tiny_model_dir, tmp_path):
    """A hub id in the local cache (the hub's own layout), as for a baseline of the base model."""
    snapshot = tmp_path / "hub" / "models--r1-aqa--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (tmp_path / "hub" / "models--r1-aqa--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--r1-aqa--tiny" / "refs" / "main").write_text("0" * 40)
    output = tmp_path / "pred.json"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    argv = eval_argv(mmau_file, Path("r1-aqa/tiny"), output, "--limit", "2")
    subprocess.run([sys.executable, "-m", "r1_aqa.cli", *argv], env=env, check=True, capture_output=True, timeout=300)
    assert len(json.loads(output.read_text())) == 2
    assert json.loads(meta_path(output).read_text())["model"] == "r1-aqa/tiny"


def test_every_bad_clip_is_listed_before_the_model_loads(mmau_file, tmp_path, capsys):
    records = json.loads(mmau_file.read_text())
    clips = mmau_file.parent / "test-mini-audios"
    (clips / "not-audio.wav").write_text("this is text, not audio")
    sf.write(str(clips / "empty.wav"), [], 16_000)
    records[1]["audio_id"] = "./test-mini-audios/not-audio.wav"
    records[3]["audio_id"] = "./test-mini-audios/empty.wav"
    records[4]["audio_id"] = "./test-mini-audios/gone.wav"
    data = mmau_file.parent / "bad-clips.json"
    data.write_text(json.dumps(records))
    broken = tmp_path / "broken-model"  # loading it would fail: the clips must be checked first
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen2_audio"}))
    assert main(eval_argv(data, broken, tmp_path / "p.json")) == 2
    err = capsys.readouterr().err
    assert "3 of 6 audio clips are missing or unusable" in err
    assert "item-1:" in err and "cannot decode audio" in err
    assert "item-3:" in err and "no samples" in err
    assert "item-4: ./test-mini-audios/gone.wav: file not found" in err
    assert f"(looked under {data.parent})" in err  # MMAU's clip paths are relative to its file's folder
    assert "item-0" not in err and not (tmp_path / "p.json").exists()


def test_a_benchmark_whose_clips_are_in_its_data_names_no_folder(tmp_path, capsys):
    """MMSU's clips are bytes inside its parquet: a missing one was not looked for beside the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sf.write(str(tmp_path / "tone.wav"), [0.1] * 1600, 16_000)
    row = {"key": "ok", "question": "Which?", "options": ["a", "b"], "answer_index": 0, "category": "x",
           "audio": {"bytes": (tmp_path / "tone.wav").read_bytes(), "path": "tone.wav"}}
    rows = [row, {**row, "key": "gone", "audio": {"bytes": None, "path": "gone.wav"}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mmsu.parquet")
    broken = tmp_path / "broken-model"  # never loaded: the clips are checked first
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "qwen2_audio"}))
    argv = ["eval", "--benchmark", "mmsu", "--data", str(tmp_path / "mmsu.parquet"), "--model", str(broken),
            "--output", str(tmp_path / "p.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "1 of 2 audio clips are missing or unusable:" in err and "looked under" not in err


def test_a_long_list_of_bad_clips_is_cut():
    items = [{"id": f"i{n}", "audio": f"/nowhere/{n}.wav"} for n in range(25)]
    with pytest.raises(FileNotFoundError) as e:
        benchmarks.check_audio(items, "/nowhere")
    lines = str(e.value).splitlines()
    assert lines[0] == "25 of 25 audio clips are missing or unusable (looked under /nowhere):"
    assert len(lines) == 22 and lines[-1] == "  ... and 5 more"


def test_finished_output_is_not_overwritten_or_redone(mmau_file, tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    output = tmp_path / "pred.json"
    first = run_eval(mmau_file, model, output, "--limit", "3")
    stamp = output.stat().st_mtime_ns
    capsys.readouterr()

    # The same directory trained again (other weight files): another model, refused.
    weights = model / "model.safetensors"
    original = weights.stat().st_mtime_ns
    os.utime(weights, ns=(original, original + 10**9))
    assert main(eval_argv(mmau_file, model, output, "--limit", "3")) == 2
    assert "'model_files'" in capsys.readouterr().err and output.stat().st_mtime_ns == stamp

    # Same settings and model: nothing generated, the file untouched.
    os.utime(weights, ns=(original, original))
    assert run_eval(mmau_file, model, output, "--limit", "3") == first
    assert "nothing to do" in capsys.readouterr().err and output.stat().st_mtime_ns == stamp

    # More items with the same settings: a resume that generates only the new ones.
    assert run_eval(mmau_file, model, output, "--limit", "4")[:3] == first
    assert "resuming after 3 of 4 items" in capsys.readouterr().err

    # Fewer items than the output holds: refused rather than dropping records.
    assert main(eval_argv(mmau_file, model, output, "--limit", "2")) == 2
    assert "holds 2 records this run would drop" in capsys.readouterr().err and len(json.loads(output.read_text())) == 4

    # Other settings: refused, naming --overwrite; with it, replaced.
    assert main(eval_argv(mmau_file, model, output, "--limit", "4", "--template", "think")) == 2
    err = capsys.readouterr().err
    assert "'template': ('default', 'think')" in err and "--overwrite" in err
    records = run_eval(mmau_file, model, output, "--limit", "4", "--template", "think", "--overwrite")
    assert len(records) == 4 and json.loads(meta_path(output).read_text())["template"] == "think"


def test_killed_sweep_skips_finished_checkpoints(mmau_file, tiny_model_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    for step in (1, 2):
        shutil.copytree(tiny_model_dir, run_dir / f"checkpoint-{step}")
    output = tmp_path / "out" / "pred.json"
    argv = eval_argv(mmau_file, run_dir, output, "--limit", "2", "--max-new-tokens", "4")
    capsys.readouterr()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err.count("the questions match neither MMAU test-mini file") == 1  # not once per checkpoint
    assert "| sub-category |" not in out and "pred.checkpoint-1.json: total" in out  # one line per checkpoint
    first = tmp_path / "out" / "pred.checkpoint-1.json"
    stamp = first.stat().st_mtime_ns
    second = tmp_path / "out" / "pred.checkpoint-2.json"
    expected = second.read_bytes()
    second.unlink()  # killed while evaluating the second checkpoint
    capsys.readouterr()
    assert main(argv) == 0
    assert first.stat().st_mtime_ns == stamp and "nothing to do" in capsys.readouterr().err
    assert second.read_bytes() == expected


def _partial_of(output: Path, records: list[dict]) -> None:
    header = {"_r1_aqa_eval_run": json.loads(meta_path(output).read_text())}
    partial_path(output).write_text("".join(json.dumps(x) + "\n" for x in [header, *records]))


def test_template_blocks_a_resume(mmau_file, tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "pred.json"
    records = run_eval(mmau_file, tiny_model_dir, output, "--limit", "2", "--max-new-tokens", "4")
    _partial_of(output, records[:1])
    output.unlink()
    assert main(eval_argv(mmau_file, tiny_model_dir, output, "--limit", "2", "--max-new-tokens", "4",
                      "--template", "think")) == 2
    assert "made with other settings {'template': ('default', 'think')}" in capsys.readouterr().err


def test_resume_writes_input_order_and_cuts_a_torn_line(mmau_file, tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "pred.json"
    full = run_eval(mmau_file, tiny_model_dir, output, "--batch-size", "3", "--max-new-tokens", "4")
    expected = output.read_bytes()
    _partial_of(output, full[1:][::-1])  # finished out of order (e.g. by another batch layout), item-0 missing
    with open(partial_path(output), "a") as f:
        f.write('{"id": "item-0", "model_res')  # a record cut short by a kill
    settings = json.loads(meta_path(output).read_text())
    done = PartialRecords(output, settings, predict.RESUME_SETTINGS, predict.record_key).done
    assert sorted(done) == [(f"item-{i}", 0) for i in range(1, N_ITEMS)]
    assert partial_path(output).read_text().endswith("}\n")  # the torn bytes are gone, appends start clean
    output.unlink()
    assert run_eval(mmau_file, tiny_model_dir, output, "--batch-size", "3", "--max-new-tokens", "4") == full
    assert output.read_bytes() == expected
    assert f"resuming after {N_ITEMS - 1} of {N_ITEMS} items" in capsys.readouterr().err


def test_each_batch_reaches_the_disk_before_the_next(mmau_file, tiny_model_dir, tmp_path):
    """Killed after its first batch, a run has that batch on disk (and not the rest, which is still to come)."""
    output = tmp_path / "pred.json"
    argv = [sys.executable, "-m", "r1_aqa.cli", *eval_argv(mmau_file, tiny_model_dir, output, "--batch-size", "1",
                                                        "--max-new-tokens", "48")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    partial = partial_path(output)
    deadline = time.time() + 120
    lines = 0
    while time.time() < deadline and proc.poll() is None and lines < 2:
        lines = partial.read_text().count("\n") if partial.exists() else 0
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = partial.read_text().count("\n") - 1
    assert 1 <= records < N_ITEMS, f"{records} records on disk when the first batch was seen"


def test_each_batch_is_synced_to_the_disk(mmau_file, tiny_model_dir, tmp_path, monkeypatch):
    """One fsync of the partial file per batch: a power cut loses at most the batch being generated."""
    output = tmp_path / "pred.json"
    synced = []
    fsync = os.fsync

    def counting_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    run_eval(mmau_file, tiny_model_dir, output, "--batch-size", "2", "--max-new-tokens", "2")
    assert synced.count(str(partial_path(output))) == N_ITEMS // 2


# --- score ---------------------------------------------------------------------------------------------------------


def _mmsu_record(i: int, output: str) -> dict:
    return {"id": f"mmsu-{i}", "question": "Which emotion?", "options": ["happy", "sad", "angry", "neutral"],
            "answer_index": i % 4, "category": "perception-paralinguistics-emotion", "model_output": output}


def test_score_names_the_right_benchmark(mmau_file, tmp_path, capsys):
    mmau = tmp_path / "mmau-pred.json"
    mmau.write_text(json.dumps([{**r, "model_output": r["answer"]} for r in json.loads(mmau_file.read_text())]))
    assert main(["score", "--benchmark", "mmsu", "--predictions", str(mmau)]) == 2
    assert "look like MMAU records, not MMSU: use --benchmark mmau" in capsys.readouterr().err
    mmsu = tmp_path / "mmsu-pred.json"
    mmsu.write_text(json.dumps([_mmsu_record(0, "A")]))
    assert main(["score", "--benchmark", "mmau", "--predictions", str(mmsu)]) == 2
    assert "use --benchmark mmsu" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.score.*"))


def test_mmsu_option_text_answers_get_the_strict_score_and_a_report(tmp_path, capsys):
    """R1-AQA answers with the option's text: no A-D letter, so only the strict score exists — printed, reported."""
    options = ["happy", "sad", "angry", "neutral"]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([_mmsu_record(i, options[i % 4] if i < 3 else "neutral") for i in range(4)]))
    assert main(["score", "--benchmark", "mmsu", "--predictions", str(pred), "--json"]) == 0
    out, err = capsys.readouterr()
    score = json.loads(out)
    assert score["total"] is None and score["strict"]["total"] == 100.0 and score["unparsed"] == 4
    assert "the strict score (100.00%) is the one to read" in err
    assert json.loads((tmp_path / "pred.score.json").read_text())["strict"]["n"] == 4


def test_a_score_of_no_items_is_null():
    from r1_aqa.benchmarks.mmau import BENCHMARK as MMAU

    record = {"id": "a", "task": "sound", "difficulty": "easy", "question": "q", "choices": ["x", "y"],
              "answer": "x", "model_output": "x"}
    score = MMAU.score([record, {**record, "id": "b", "model_output": None}])
    assert score["task"] == {"sound": 100.0, "music": None, "speech": None}
    assert score["difficulty"]["hard"] is None and score["total"] == 100.0
    assert MMAU.score([{**record, "model_output": None}])["total_all"] == 0.0
    assert MMAU.score([])["total_all"] is None


# --- a quiet console ---------------------------------------------------------------------------------------------


def test_known_harmless_warnings_are_hidden_and_errors_said_once(tmp_path):
    """TRL's vLLM-range warning (5 times per import) is hidden; --verbose shows it; rank > 0 keeps a shared error to
    itself."""
    parquet = make_parquet(tmp_path, n=1)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "out" / "checkpoint-1").mkdir(parents=True)  # refused after TRL has loaded, before the model
    argv = [sys.executable, "-m", "r1_aqa.cli", "train", "--config", RECIPE, "--model_name_or_path",
            str(tmp_path / "m"), "--dataset_path", str(parquet), "--output_dir", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for rank, flags, warned, said in (("0", [], False, True), ("1", ["--verbose"], True, False)):
        result = subprocess.run([*argv, *flags], env={**env, "RANK": rank}, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 2
        assert ("TRL currently supports vLLM versions" in result.stderr) == warned, result.stderr[-2000:]
        assert result.stderr.count("already holds 1 checkpoint(s)") == int(said)
