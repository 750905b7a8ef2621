"""The judge (grading prompts and parsing, the input-keyed cache, the transformers and HTTP backends), the judged
rewards in GRPO, open-ended data and `eval`/`score --benchmark open`, on the tiny judge (its grades mean nothing; the
paths are the real ones)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import RECIPE, child_env, free_port

from r1_aqa.cli import main
from r1_aqa.judge.cache import input_key
from r1_aqa.judge.core import Judge
from r1_aqa.judge.grading import (UNPARSABLE, parse_grade, parse_verdict, reference_messages, rubric_messages,
                                  rubric_share)
from r1_aqa.training.rewards import resolve_reward


@pytest.fixture(scope="module")
def open_data(tmp_path_factory) -> Path:
    """`synth --task open` then `prepare open`: 4 open-ended items with references and weighted rubric lines."""
    root = tmp_path_factory.mktemp("open")
    assert main(["synth", str(root / "synth"), "--task", "open", "--n", "4"]) == 0
    assert main(["prepare", "open", "--input", str(root / "synth" / "open.jsonl"), "--output",
                 str(root / "open.parquet"), "--workers", "1"]) == 0
    return root / "open.parquet"


def test_tiny_judge_command_writes_the_same_judge_for_a_seed(tiny_judge_dir, tmp_path, capsys):
    from r1_aqa.files import weights_fingerprint

    assert main(["tiny-judge", str(tmp_path / "judge")]) == 0
    assert "wrote a tiny judge" in capsys.readouterr().out
    from safetensors.numpy import load_file

    ours, fixture = load_file(tmp_path / "judge" / "model.safetensors"), load_file(tiny_judge_dir / "model.safetensors")
    assert ours.keys() == fixture.keys() and all((ours[k] == fixture[k]).all() for k in ours)
    assert weights_fingerprint(tmp_path / "judge")  # what names a local judge in cache keys


# --------------------------------------------------------------------------------------------------- grading rules
@pytest.mark.parametrize("reply, grade", [("GRADE: 7", 0.7), ("grade:10 because", 1.0), ("GRADE: 0", 0.0),
                                          ("GRADE: 11", None), ("seven out of ten", None), ("", None)])
def test_grades_parse_to_a_share_or_none(reply, grade):
    assert parse_grade(reply) == grade


def test_verdicts_parse_and_unparsable_ones_count_zero():
    assert parse_verdict("VERDICT: YES") == 1.0 and parse_verdict("verdict: no.") == 0.0
    assert parse_verdict("maybe") is None
    assert UNPARSABLE == 0.0
    assert rubric_share([1.0, None], [1, 1]) == 0.5


def test_rubric_share_weighs_each_line():
    assert rubric_share([1.0, 0.0], [1, 3]) == 0.25
    assert rubric_share([1.0, 0.0], [3, 1]) == 0.75
    with pytest.raises(ValueError, match="2 rubric lines but 1 weights"):
        rubric_share([1.0, 0.0], [1])


# ----------------------------------------------------------------------------------------------- rewards and cache
def test_an_unparsable_judge_reply_earns_nothing(tiny_judge_dir, tmp_path):
    judge = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite")
    reward = resolve_reward("judge", judge)
    completions = [[{"role": "assistant", "content": "<answer>a high tone</answer>"}],
                   [{"role": "assistant", "content": "a dog"}]]
    logged = {}
    values = reward(completions, question=["What is it?"] * 2, reference=["One high tone."] * 2,
                    log_metric=lambda k, v: logged.__setitem__(k, v))
    replies = judge.complete([reference_messages("What is it?", "One high tone.", a) for a in ("a high tone", "a dog")])
    assert all(parse_grade(r) is None for r in replies)  # the random judge never writes a grade line
    assert values == [UNPARSABLE, UNPARSABLE] == [0.0, 0.0]
    assert logged["judge/judge/unparsable"] == 2.0 and logged["judge/judge/calls"] == 2.0


def test_a_row_without_a_reference_is_judged_against_its_solution(tiny_judge_dir, tmp_path):
    judge = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite")
    completions = [[{"role": "assistant", "content": "<answer>a violin</answer>"}]] * 2
    resolve_reward("judge", judge)(completions, question=["Which?"] * 2, reference=[None, "A cello."],
                                   solution=["<answer>violin</answer>", "<answer>cello</answer>"])
    asked = judge.stats.calls
    judge.grade(["Which?", "Which?"], ["violin", "A cello."], ["a violin", "a violin"])  # what the reward asked
    assert asked == 2 and judge.stats.calls == 2 and judge.stats.hits == 2


def test_the_cache_key_holds_the_reference_answer(tiny_judge_dir, tmp_path):
    judge = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite")
    judge.grade(["What is it?"], ["One high tone."], ["a tone"])
    judge.grade(["What is it?"], ["One low tone."], ["a tone"])  # same question and answer, another reference
    assert judge.stats.calls == 2 and judge.stats.hits == 0
    judge.grade(["What is it?"], ["One low tone."], ["a tone"])
    assert judge.stats.calls == 2 and judge.stats.hits == 1
    other = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite", sampling={"max_new_tokens": 5})
    other.grade(["What is it?"], ["One low tone."], ["a tone"])  # other sampling settings: another input
    assert other.stats.calls == 1


def test_the_rubric_reward_is_the_weighted_share_of_lines_met(tiny_judge_dir, tmp_path):
    judge = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite")
    question, lines, answer = "What is it?", ["Says it is a tone.", "Says it is high."], "a high tone"
    # the judge's verdicts on these two lines, stored under their exact inputs: met, not met
    judge.cache.add_replies({input_key(model=judge.identity("chat"), messages=rubric_messages(question, line, answer),
                                       sampling=judge.sampling): reply
                             for line, reply in zip(lines, ["VERDICT: YES", "VERDICT: NO"])})
    reward = resolve_reward("rubric", judge)
    completions = [[{"role": "assistant", "content": f"<answer>{answer}</answer>"}]] * 2
    values = reward(completions, question=[question] * 2, rubric=[lines, lines],
                    rubric_weights=[[1.0, 3.0], [3.0, 1.0]])
    assert values == [0.25, 0.75]
    assert judge.stats.calls == 0 and "chat" not in judge.stats.loaded  # every verdict came from the cache


def test_backend_options_reach_the_backend_and_unknown_ones_are_refused(tiny_judge_dir, tmp_path):
    judge = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite", backend={"batch_size": 1})
    assert len(judge.complete([[{"role": "user", "content": t}] for t in ("hi", "ho")])) == 2
    assert judge._backends["chat"].batch_size == 1
    with pytest.raises(ValueError, match=r"unknown \['batchsize'\]"):
        Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite", backend={"batchsize": 2})


def test_embed_match_rewards_the_nearest_option(tiny_judge_dir, tmp_path):
    judge = Judge(None, tmp_path / "cache.sqlite", embed_model=str(tiny_judge_dir))
    reward = resolve_reward("embed_match", judge)
    completions = [[{"role": "assistant", "content": "<answer>violin</answer>"}]] * 2
    values = reward(completions, choices=[["violin", "drum"], ["drum", "piano"]], solution=["<answer>violin</answer>",
                                                                                             "<answer>drum</answer>"])
    assert values[0] == 1.0  # the answer is an option itself: similarity 1
    index, _ = judge.nearest(["violin"], [["drum", "piano"]])[0]
    assert values[1] == float(["drum", "piano"][index] == "drum")


def test_a_judged_reward_without_a_judge_is_refused(open_data, tiny_model_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="--judge_model"):
        resolve_reward("rubric")
    assert main(["train", "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path",
                 str(open_data), "--output_dir", str(tmp_path / "run"), "--reward_funcs", "rubric", "format"]) == 2
    assert capsys.readouterr().err.strip() == ("r1-aqa train: error: reward(s) ['rubric'] are graded by a judge: give "
                                               "--judge_model DIR_OR_URL")
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------------------------------------------------- data preparation
def test_prepare_open_keeps_references_and_rubrics(open_data):
    import pandas as pd

    df = pd.read_parquet(open_data)
    assert len(df) == 4 and all(len(c) == 0 for c in df["choices"])
    assert df["reference"].str.startswith("One steady").all()
    assert [list(w) for w in df["rubric_weights"]] == [[1.0, 2.0]] * 4
    assert df["prompt"].str.endswith("Output the final answer in <answer> </answer>.").all()
    assert not df["prompt"].str.contains("options").any()


def test_prepare_open_names_a_malformed_line(tmp_path, capsys):
    bad = tmp_path / "open.jsonl"
    bad.write_text(json.dumps({"id": "a", "question": "q?", "audio_path": "a.wav", "rubric": ["x", "y"],
                               "rubric_weights": [1]}) + "\n")
    assert main(["prepare", "open", "--input", str(bad), "--output", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: rubric_weights must be a list of 2 numbers" in err
    assert not (tmp_path / "o.parquet").exists()


def test_prepare_open_finds_the_clips_under_audio_dir(tmp_path, capsys):
    """A JSONL kept apart from its clips: ``--audio-dir`` says where they are; without it none is found."""
    assert main(["synth", str(tmp_path / "synth"), "--task", "open", "--n", "3"]) == 0
    moved = tmp_path / "questions" / "open.jsonl"
    moved.parent.mkdir()
    (tmp_path / "synth" / "open.jsonl").rename(moved)
    out = tmp_path / "open.parquet"
    assert main(["prepare", "open", "--input", str(moved), "--audio-dir", str(tmp_path / "synth"), "--output",
                 str(out), "--workers", "1"]) == 0
    assert json.loads(out.with_suffix(".report.json").read_text())["rows_out"] == 3
    assert main(["prepare", "open", "--input", str(moved), "--output", str(tmp_path / "none.parquet")]) == 2
    assert "no usable rows among the 3 read (3 skipped)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ eval, score
def test_score_again_asks_the_judge_nothing_and_needs_no_judge(open_data, tiny_model_dir, tiny_judge_dir, tmp_path,
                                                               capsys):
    judge_dir = tmp_path / "judge"
    shutil.copytree(tiny_judge_dir, judge_dir)
    out = tmp_path / "pred.json"
    assert main(["eval", "--benchmark", "open", "--data", str(open_data), "--model", str(tiny_model_dir),
                 "--max-new-tokens", "6", "--output", str(out)]) == 0
    assert "scored by a judge" in capsys.readouterr().err
    command = ["score", "--benchmark", "open", "--predictions", str(out), "--judge-model", str(judge_dir), "--json"]
    assert main(command) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["judge"]["asked"] > 0 and first["judge"]["loaded"] == ["chat"]
    assert 0 <= first["total"] <= 100 and first["n"] == 4 and first["rubric_total"] is not None
    shutil.rmtree(judge_dir)  # the judge is gone: the same command still scores, from the cache alone
    assert main(command) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["judge"]["asked"] == 0 and again["judge"]["loaded"] == []
    assert again["judge"]["from_cache"] == first["judge"]["asked"] + first["judge"]["from_cache"]
    assert again["items"] == first["items"] and again["total"] == first["total"]
    for name in ("pred.score.json", "pred.score.md", "pred.score.png", "pred.report.html"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "pred.report.html").read_text().count("<audio") == 4


def test_any_prepared_parquet_scores_open_ended_with_its_answer_as_reference(tiny_judge_dir, tmp_path):
    from r1_aqa.benchmarks.open_ended import score_open

    judge = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite")
    score = score_open([{"id": "a", "question": "Which?", "choices": ["violin", "drum"], "answer": "violin",
                         "model_output": "a violin"}], judge)
    assert score["n"] == 1 and score["total"] == 0.0 and score["unparsable"] == 1  # the tiny judge never grades
    judge.grade(["Which?"], ["violin"], ["a violin"])
    assert judge.stats.calls == 1 and judge.stats.hits == 1  # the answer was the reference asked about
    with pytest.raises(ValueError, match="record b: neither a reference answer nor rubric lines"):
        score_open([{"id": "b", "question": "Which?", "answer": "", "model_output": "x"}], judge)
    assert main(["score", "--benchmark", "open", "--predictions", str(tmp_path / "p.json"), "--judge-model",
                 str(tiny_judge_dir), "--silence-predictions", str(tmp_path / "s.json")]) == 2  # refused, not ignored


class _Failing(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        self._fail()

    def do_POST(self):  # noqa: N802
        self._fail()

    def _fail(self):
        type(self).hits += 1
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"internal error")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("server", [True, False], ids=["http-500", "closed-port"])
def test_a_failing_endpoint_stops_the_score_with_one_line(tmp_path, server):
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Failing) if server else None
    if httpd is not None:
        _Failing.hits = 0
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps([{"id": "a", "question": "q?", "reference": "r", "model_output": "x"}]))
    try:
        proc = subprocess.run([sys.executable, "-m", "r1_aqa.cli", "score", "--benchmark", "open", "--predictions",
                               str(predictions), "--judge-model", f"http://127.0.0.1:{port}/v1#judge"],
                              capture_output=True, text=True, env=child_env(), timeout=120)
    finally:
        if httpd is not None:
            httpd.shutdown()
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"r1-aqa score: error: judge endpoint http://127.0.0.1:{port}/v1/chat/completions "
                               "failed 3 times in a row")
    assert ("HTTP 500" if server else "ConnectionError") in lines[0]
    if server:
        assert _Failing.hits == 3
    assert not (tmp_path / "pred.score.json").exists()


# ------------------------------------------------------------------------------------------------------------ GRPO
def _metrics(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


def test_grpo_with_judge_and_format_resumes_with_every_judge_reply_cached(open_data, tiny_model_dir,
                                                                          tiny_judge_dir, tmp_path, capsys):
    run = tmp_path / "run"
    command = ["train", "--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--dataset_path",
               str(open_data), "--output_dir", str(run), "--max_steps", "2", "--reward_funcs", "judge", "format",
               "--judge_model", str(tiny_judge_dir)]
    assert main(command) == 0
    first = _metrics(run)
    assert "judge: " in capsys.readouterr().err  # the totals line: replies, cache hits, share of the step time
    completions = 2  # per_device_train_batch_size of the tiny recipe
    for step in (1, 2):
        assert first[step]["judge/judge/calls"] + first[step]["judge/judge/cache_hits"] == completions
        assert "rewards/judge/mean" in first[step] and 0 < first[step]["judge/step_share"] < 1
    asked = sum(first[s]["judge/judge/calls"] for s in (1, 2))
    assert asked > 0
    shutil.rmtree(run / "checkpoint-2")  # step 2 again, from the checkpoint of step 1
    assert main([*command, "--resume_from_checkpoint", "last"]) == 0
    resumed = _metrics(run)
    assert resumed[2]["judge/judge/calls"] == 0  # the same completions: every reply from the cache
    assert resumed[2]["judge/judge/cache_hits"] == completions
    assert resumed[2]["rewards/judge/mean"] == first[2]["rewards/judge/mean"]
    assert resumed[2]["reward"] == first[2]["reward"]


# ------------------------------------------------------------------------------------------------- HTTP, vllm serve
@pytest.mark.vllm
@pytest.mark.slow
def test_an_http_judge_on_vllm_serve_equals_the_in_process_judge(tiny_judge_dir, tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    env = child_env(VLLM_CPU_KVCACHE_SPACE="1", TORCHDYNAMO_DISABLE="1", VLLM_USE_AOT_COMPILE="0")
    # the OpenAI-compatible server `vllm serve` starts (its `vllm` script asks for the "vllm" distribution, which
    # vllm-cpu is not named)
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                               str(tiny_judge_dir), "--host",
                               "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "2048",
                               "--enforce-eager", "--served-model-name", "tiny-judge", "--generation-config", "vllm"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        import requests

        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
        questions, references = ["What is it?"] * 3, ["One high tone.", "A dog barks.", "Rain."]
        answers = ["a high tone", "a cat", "rain falls on a roof"]
        local = Judge(str(tiny_judge_dir), tmp_path / "local.sqlite", sampling={"max_new_tokens": 16})
        remote = Judge(f"http://127.0.0.1:{port}/v1", tmp_path / "remote.sqlite", sampling={"max_new_tokens": 16})
        chats = [reference_messages(q, r, a) for q, r, a in zip(questions, references, answers)]
        replies = local.complete(chats)
        assert all(replies) and len(set(replies)) > 1  # real, differing replies (not all empty)
        assert remote.complete(chats) == replies
        assert remote.grade(questions, references, answers) == local.grade(questions, references, answers)
        assert remote.stats.calls == 3 and remote.specs["chat"].endswith("/v1")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(timeout=60)
        log.close()


@pytest.mark.vllm
def test_an_in_process_vllm_judge_equals_the_transformers_judge(tiny_judge_dir, tmp_path):
    chats = [reference_messages("What is it?", r, a)
             for r, a in (("One high tone.", "a high tone"), ("Rain.", "a cat"))]
    local = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite", sampling={"max_new_tokens": 16})
    engine = Judge(f"vllm:{tiny_judge_dir}", tmp_path / "cache.sqlite", sampling={"max_new_tokens": 16})
    try:
        replies = local.complete(chats)
        assert engine.complete(chats) == replies and all(replies)
        assert engine.stats.calls == 2  # another engine is another judge in the cache
    finally:
        engine.close()
