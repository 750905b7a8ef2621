"""`eval` over several workers on the tiny Qwen2-Audio: shares, merging into the one-process file, torchrun workers
(hf and vLLM), a killed worker resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_tone

from r1_aqa.cli import main
from r1_aqa.evaluate.paths import meta_path
from r1_aqa.evaluate.predict import is_settled
from r1_aqa.evaluate.resume import partial_path
from r1_aqa.evaluate.workers import Share, worker_units

N_ITEMS = 10
ARGS = ["--max-new-tokens", "64", "--batch-size", "1"]  # one record per flush: a killed worker leaves a partial share


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("workers")
    records = []
    for i in range(N_ITEMS):
        write_tone(root / f"{i}.wav", freq=200.0 + 90 * i, seconds=0.4 + 0.2 * i)
        records.append({"id": f"w{i}", "audio_id": f"{i}.wav", "question": "Which sound is heard?",
                        "choices": ["beep", "violin", "voice"], "answer": "beep", "task": "sound"})
    path = root / "questions.json"
    path.write_text(json.dumps(records))
    return path


def _argv(questions: Path, model: Path, output: Path, *extra: str) -> list[str]:
    return ["eval", "--data", str(questions), "--model", str(model), "--output", str(output), *ARGS, *extra]


@pytest.fixture(scope="module")
def reference(questions, tiny_model_dir, tmp_path_factory) -> Path:
    """The file one process writes."""
    output = tmp_path_factory.mktemp("one") / "pred.json"
    assert main(_argv(questions, tiny_model_dir, output)) == 0
    return output


def _meta_without_workers(output: Path) -> dict:
    meta = json.loads(meta_path(output).read_text())
    return {k: v for k, v in meta.items() if k != "workers"}


def test_worker_units_cover_every_share_once():
    for checkpoints, workers in [(1, 1), (1, 3), (2, 5), (3, 3), (7, 3)]:
        units = worker_units(checkpoints, workers)
        assert len(units) == workers and all(units)
        shares = [(c, shard, shards) for worker in units for c, shard, shards in worker]
        assert len(set(shares)) == len(shares)
        for c in range(checkpoints):  # each checkpoint is split into exactly the shards 0..S-1
            mine = sorted((shard, shards) for cc, shard, shards in shares if cc == c)
            assert mine == [(k, len(mine)) for k in range(len(mine))]
        assert max(len(w) for w in units) == -(-checkpoints // workers)  # as few engines per worker as possible
    assert worker_units(2, 5) == [[(0, 0, 3)], [(1, 0, 2)], [(0, 1, 3)], [(1, 1, 2)], [(0, 2, 3)]]


def test_each_rank_generates_only_its_share(questions, tiny_model_dir, reference, tmp_path, monkeypatch):
    """Ranks as torchrun starts them: rank 1 writes only its share; rank 0, finishing last, merges."""
    output = tmp_path / "pred.json"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(_argv(questions, tiny_model_dir, output)) == 0
    share = [json.loads(line) for line in partial_path(output, 1, 2).read_text().splitlines()[1:]]
    assert [r["id"] for r in share] == [f"w{i}" for i in range(1, N_ITEMS, 2)]
    assert not output.exists() and not partial_path(output, 0, 2).exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(_argv(questions, tiny_model_dir, output)) == 0
    assert output.read_bytes() == reference.read_bytes()
    assert json.loads(meta_path(output).read_text())["workers"] == 2
    assert _meta_without_workers(output) == _meta_without_workers(reference)
    assert not list(tmp_path.glob("*.partial*")) and output.with_name("pred.report.html").exists()


def _children(parent: int) -> list[tuple[int, list[bytes]]]:
    """``(pid, environment)`` of each child process of ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.append((int(entry.name), env))
    return found


def _worker_pid(command: int, rank: int) -> int | None:
    """The worker with ``RANK=rank`` started by the torchrun agent that ``command`` started."""
    for agent, _ in _children(command):
        for pid, env in _children(agent):
            if f"RANK={rank}".encode() in env:
                return pid
    return None


def test_killed_worker_resumes_only_what_is_missing(questions, tiny_model_dir, reference, tmp_path, capfd):
    output = tmp_path / "pred.json"
    argv = [sys.executable, "-m", "r1_aqa.cli", *_argv(questions, tiny_model_dir, output, "--num-workers", "2")]
    log = tmp_path / "killed.log"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)
    share = partial_path(output, 1, 2)
    deadline = time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            if share.exists() and share.read_text().count("\n") >= 2:  # the settings and a first record
                victim = _worker_pid(proc.pid, 1)
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
                    break
            time.sleep(0.02)
        exit_code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert exit_code != 0, f"the run was not interrupted:\n{log.read_text()[-3000:]}"
    assert not output.exists()
    kept = {}
    for path in (partial_path(output, 0, 2), share):  # mark what was done: the rerun must not generate it again
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        if lines:  # a worker stopped before its first write leaves an empty file
            complete = lines if lines[-1].endswith("\n") else lines[:-1]
            records = [json.loads(line) for line in complete[1:]]
            kept.update({r["id"]: r for r in records})
            path.write_text(complete[0] + "".join(json.dumps({**r, "model_response": "kept"}) + "\n"
                                                  for r in records))
    per_share = [len([i for i in kept if int(i[1:]) % 2 == k]) for k in (0, 1)]
    assert 1 <= per_share[1] < N_ITEMS // 2, "worker 1 was not killed mid-way"
    capfd.readouterr()
    assert main(_argv(questions, tiny_model_dir, output, "--num-workers", "2")) == 0
    err = capfd.readouterr().err
    for k, n in enumerate(per_share):  # each worker generates only what its share lacks
        assert (f"resuming after {n} of {N_ITEMS // 2} items of share {k + 1}/2" in err) == (n > 0), err[-3000:]
    records = json.loads(output.read_text())
    expected = json.loads(reference.read_text())
    assert [r["model_response"] == "kept" for r in records] == [r["id"] in kept for r in expected]
    assert [r for r in records if r["id"] not in kept] == [r for r in expected if r["id"] not in kept]
    assert json.loads(meta_path(output).read_text())["workers"] == 2
    assert not list(tmp_path.glob("pred.json.partial*"))


@pytest.mark.vllm
def test_vllm_workers_write_the_one_process_file(questions, tiny_model_dir, reference, tmp_path):
    output = tmp_path / "pred.json"
    assert main(_argv(questions, tiny_model_dir, output, "--engine", "vllm", "--limit", "4", "--num-workers", "2")) == 0
    records = json.loads(output.read_text())
    assert records == json.loads(reference.read_text())[:4]
    meta = json.loads(meta_path(output).read_text())
    assert meta["engine"] == "vllm" and meta["workers"] == 2


def test_sweep_over_ranks_lists_a_checkpoint_that_fails(questions, tiny_model_dir, tmp_path, monkeypatch):
    """Whole checkpoints dealt to 2 ranks; one cannot load: the others finish, the sweep report lists it."""
    run = tmp_path / "run"
    for step in (10, 20, 30):
        shutil.copytree(tiny_model_dir, run / f"checkpoint-{step}")
    (run / "checkpoint-20" / "model.safetensors").write_bytes(b"not a safetensors file")
    output = tmp_path / "out" / "pred.json"
    argv = ["eval", "--data", str(questions), "--model", str(run), "--output", str(output), "--limit", "3",
            "--max-new-tokens", "4"]
    for rank in (1, 0):  # rank 1 has checkpoint-20 only; rank 0, finishing last, writes the sweep report
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        assert main(argv) == 1
        assert output.with_name("pred.sweep.md").exists() == (rank == 0)
    assert [json.loads(output.with_name(f"pred.checkpoint-{s}.json").read_text())[2]["id"] for s in (10, 30)] == [
        "w2", "w2"]
    assert not output.with_name("pred.checkpoint-20.json").exists()
    failure = json.loads(output.with_name("pred.checkpoint-20.failed.json").read_text())
    assert failure["checkpoint"] == str(run / "checkpoint-20")
    assert list(json.loads(output.with_name("pred.sweep.json").read_text())) == ["10", "30"]
    table = output.with_name("pred.sweep.md").read_text()
    assert "## Failed checkpoints" in table and f"`{run / 'checkpoint-20'}`: {failure['error']}" in table
    assert "checkpoint-20" in output.with_name("pred.sweep.html").read_text()


def test_the_sweep_table_is_printed_once(questions, tiny_model_dir, tmp_path, monkeypatch, capsys):
    """Two ranks that find the sweep complete (both finish at once): only the first prints the table and writes the
    report; the other says in one line that it is up to date."""
    run = tmp_path / "run"
    for step in (10, 20):
        shutil.copytree(tiny_model_dir, run / f"checkpoint-{step}")
    output = tmp_path / "out" / "pred.json"
    argv = ["eval", "--data", str(questions), "--model", str(run), "--output", str(output), "--limit", "2",
            "--max-new-tokens", "2"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0, 1):  # the last: rank 1 reaching the end once rank 0 has reported
        monkeypatch.setenv("RANK", str(rank))
        assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.count("| step") == 1
    assert err.count(f"sweep report: {output.with_name('pred.sweep.html')} is up to date") == 1


def test_ranks_with_silence_report_after_both_runs_merge(questions, tiny_model_dir, tmp_path, monkeypatch):
    output = tmp_path / "pred.json"
    argv = ["eval", "--data", str(questions), "--model", str(tiny_model_dir), "--output", str(output), "--limit",
            "4", "--max-new-tokens", "4", "--silence"]
    for rank in (1, 0):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        assert main(argv) == 0
        reports = [output.with_name(f"pred.{name}") for name in ("score.json", "listening.json", "report.html")]
        assert [p.exists() for p in reports] == [rank == 0] * 3
    assert len(json.loads(output.with_name("pred.silence.json").read_text())) == 4
    assert 'data-stat="silence-total"' in output.with_name("pred.report.html").read_text()


def test_a_share_is_done_only_once_the_silence_run_is_settled(questions, tiny_model_dir, tmp_path):
    """Two workers, the audio run and the silence run: the call that merges the audio run returns nothing while the
    silence run is still being written (its reports would lack it), so is an already merged one; the call that
    settles the last output returns the records."""
    from r1_aqa.evaluate.benchmarks import load_items
    from r1_aqa.evaluate.paths import silence_path
    from r1_aqa.evaluate.predict import evaluate

    items = load_items("mmau", questions, limit=4)
    audio = tmp_path / "pred.json"
    silence = silence_path(audio)

    def share(output: Path, rank: int):
        other = silence if output == audio else audio
        return evaluate(items, tiny_model_dir, output, benchmark="mmau", data=questions, max_new_tokens=2,
                        silence=output == silence, share=Share(rank, 2, 2, (other,), rank))

    assert share(audio, 0) is None  # rank 1's share of the audio run is missing
    assert share(audio, 1) is None and is_settled(audio)  # merged, but the silence run is not
    assert share(audio, 0) is None  # already evaluated; the silence run still is not
    assert share(silence, 0) is None
    records = share(silence, 1)  # settles the last output
    assert records is not None and len(records) == 4 and is_settled(silence)
    assert len(share(audio, 0)) == 4  # now both are settled


def test_bad_input_stops_before_workers_start(questions, tiny_model_dir, tmp_path, capsys):
    records = json.loads(questions.read_text())
    records[3]["audio_id"] = "gone.wav"
    data = tmp_path / "questions.json"
    data.write_text(json.dumps([{**r, "audio_id": str(questions.parent / r["audio_id"])} for r in records]))
    assert main(_argv(data, tiny_model_dir, tmp_path / "pred.json", "--num-workers", "2")) == 2
    err = capsys.readouterr().err
    assert "w3" in err and "gone.wav" in err and "starting 2 workers" not in err
