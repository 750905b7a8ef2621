"""The error-analysis pages: per-item verdicts and option positions, the sweep comparison, bad input, and the page
from a real eval on the tiny model opened in headless Chromium (counts, filters, audio, screenshot)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from chromium import Chromium, find_chromium
from helpers import write_tone

from r1_aqa.cli import main
from r1_aqa.evaluate.analysis import analyse
from r1_aqa.evaluate.paths import page_path, sweep_page_path
from r1_aqa.benchmarks.mmar import BENCHMARK as MMAR
from r1_aqa.benchmarks.mmau import BENCHMARK as MMAU
from r1_aqa.benchmarks.mmsu import BENCHMARK as MMSU

CHOICES = ["violin", "beep", "voice", "noise"]
N_ITEMS = 8
CHROMIUM = find_chromium()
# Skipped where no browser is installed (a user's machine); in CI (CI=true) a missing browser fails instead.
needs_chromium = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                    reason="no chromium on PATH (apt-get install chromium, or set CHROMIUM)")


def _record(i: int, prediction: str | None, **extra) -> dict:
    record = {"id": f"item-{i}", "question": f"Which sound is heard in clip {i}?", "choices": CHOICES,
              "answer": CHOICES[i % 4], "task": ["sound", "music", "speech"][i % 3]}
    if prediction is not None:
        record["model_output"] = prediction
    return {**record, **extra}


def test_verdicts_agree_with_the_official_counts():
    """Per-record outcomes add up to the scorers' numbers, including the records the official rules drop."""
    mmau = [_record(0, "violin"), _record(1, "the beep"), _record(2, "voice or noise"), _record(3, "violin"),
            _record(4, None), {**_record(5, None), "model_output": None}, _record(6, "")]
    score = MMAU.score(mmau)
    outcomes = [MMAU.outcome(r) for r in mmau]
    assert outcomes == [True, True, False, False, None, None, False]
    assert (outcomes.count(True), sum(o is not None for o in outcomes)) == (score["correct"], score["n"])
    mmar = [{("answer_prediction" if k == "model_output" else k): v for k, v in r.items()} for r in mmau]
    score = MMAR.score(mmar)
    assert [MMAR.outcome(r) for r in mmar] == outcomes and score["correct"] == 2 and score["n"] == 5
    mmsu = [{"id": f"m{i}", "options": CHOICES, "answer_index": i % 4, "category": "perception-x",
             "model_output": out} for i, out in enumerate(["A", "The answer is B.", "C", "D", "no idea", "", None])]
    del mmsu[5]["model_output"]
    score = MMSU.score(mmsu)
    outcomes = [MMSU.outcome(r) for r in mmsu]
    assert outcomes == [True, True, True, True, None, False, None]
    assert (outcomes.count(True), sum(o is not None for o in outcomes)) == (score["correct"], score["n"])


def test_overview_counts_each_kind_of_record(tmp_path):
    """The overview tiles count 1 right, 2 wrong and 3 unscored records (no prediction key, null, another key)."""
    records = [_record(0, "violin"), _record(1, "violin"), _record(2, "violin"), _record(4, None),
               {**_record(5, None), "model_output": None}, {**_record(6, None), "answer_prediction": "voice"}]
    predictions = tmp_path / "pred.json"
    predictions.write_text(json.dumps(records))
    assert main(["score", "--benchmark", "mmau", "--predictions", str(predictions)]) == 0
    page = page_path(predictions).read_text()
    tiles = dict(re.findall(r'data-stat="([a-z-]+)">([^<]*)<', page))
    assert {k: tiles[k] for k in ("correct", "n", "records", "unscored")} == {
        "correct": "1", "n": "3", "records": "6", "unscored": "3"}


def test_option_positions_and_permutations():
    records = [_record(i, CHOICES[0]) for i in range(8)]  # always the first option: right when the answer is A
    records += [{**_record(0, CHOICES[3]), "permutation": 1}]  # another order of item 0, answered wrong
    records = [{**r, "permutation": r.get("permutation", 0)} for r in records]
    result = analyse("mmau", records)
    items = result["items"]
    assert [it["id"] for it in items] == [f"item-{i}" for i in range(8)]  # cards: original order only
    assert items[0]["perm"] == "1/2" and items[4]["perm"] == "1/1"
    assert [it["pos"] for it in items] == [0] * 8 and [it["ans"] for it in items] == [i % 4 for i in range(8)]
    rows = result["positions"]["rows"]
    assert [(r["position"], r["answers"], r["predictions"], r["right"]) for r in rows] == [
        ("A", 2, 8, 2), ("B", 2, 0, 0), ("C", 2, 0, 0), ("D", 2, 0, 0)]
    assert MMAU.predicted_option(_record(0, "voice noise")) is None  # names two options
    assert MMSU.predicted_option({"options": CHOICES, "answer_index": 0, "model_output": "C"}) == 2
    assert result["fields"] == {"task": ["music", "sound", "speech"]}


def test_mmsu_option_text_answers_get_the_strict_view(tmp_path):
    """R1-AQA answers MMSU with option text: no A-D letter, so the page shows the strict rule's numbers."""
    pred = tmp_path / "pred.json"
    records = [{"id": f"m{i}", "question": "Which emotion?", "options": CHOICES, "answer_index": i % 4,
                "category": "perception-paralinguistics", "model_output": out}
               for i, out in enumerate(["violin", "violin", "voice", " noise ", "something else"])]
    pred.write_text(json.dumps(records))
    assert main(["score", "--benchmark", "mmsu", "--predictions", str(pred)]) == 0
    score = json.loads(tmp_path.joinpath("pred.score.json").read_text())
    assert score["total"] is None and score["strict"]["correct"] == 3
    page = page_path(pred).read_text()
    stats = dict(re.findall(r'data-stat="([\w-]+)">([^<]*)<', page))
    assert (stats["correct"], stats["n"], stats["total"]) == ("3", "5", f"{score['strict']['total']:.2f}")
    items = analyse("mmsu", records, strict=True)["items"]
    assert [it["v"] for it in items] == ["right", "wrong", "right", "right", "wrong"]
    assert [it["pos"] for it in items] == [0, 0, 2, 3, None]


def test_silence_run_of_other_items_is_refused(tmp_path, capsys):
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([_record(i, "violin") for i in range(3)]))
    other = tmp_path / "other.json"
    other.write_text(json.dumps([_record(i, "violin") for i in (0, 1, 7)]))
    assert main(["report", str(pred), "--benchmark", "mmau", "--silence", str(other)]) == 2
    err = capsys.readouterr().err
    assert "1 missing (first: item-2)" in err and "1 extra (first: item-7)" in err
    assert not page_path(pred).exists()
    assert main(["report", str(pred)]) == 2  # no meta sidecar: the benchmark must be named
    assert "pass --benchmark" in capsys.readouterr().err


def test_sweep_page_compares_checkpoints(tmp_path):
    """`r1-aqa report PRED.json` on a sweep: a page per checkpoint and a sweep page with the flips between steps."""
    verdicts = {10: "RRWW", 20: "RWRW", 30: "RWRR"}  # item 1 breaks at 20, item 2 is fixed at 20, item 3 at 30
    for step, marks in verdicts.items():
        records = [_record(i, CHOICES[i % 4] if m == "R" else CHOICES[(i + 1) % 4]) for i, m in enumerate(marks)]
        (tmp_path / f"pred.checkpoint-{step}.json").write_text(json.dumps(records))
        (tmp_path / f"pred.checkpoint-{step}.meta.json").write_text(json.dumps({"benchmark": "mmau"}))
    assert main(["report", str(tmp_path / "pred.json")]) == 0
    assert all(page_path(tmp_path / f"pred.checkpoint-{s}.json").exists() for s in verdicts)
    page = sweep_page_path(tmp_path / "pred.json").read_text()
    assert '<span data-stat="flipping">3</span>' in page
    assert "<td>10 → 20</td><td>1</td><td>1</td>" in page and "<td>20 → 30</td><td>1</td><td>0</td>" in page
    assert 'href="pred.checkpoint-20.report.html#item-item-1"' in page
    assert "<td><b>75.00</b></td>" in page  # best step in bold


# --- the page of a real eval, in a browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model_dir) -> Path:
    """A real eval (hf, tiny Qwen2-Audio) of 8 items, after a silence run of the same items as PRED.silence.json."""
    root = tmp_path_factory.mktemp("page")
    (root / "clips").mkdir()
    records, silent = [], []
    for i in range(N_ITEMS):
        seconds = 0.5 + 0.3 * i
        write_tone(root / "clips" / f"c{i}.wav", freq=220.0 * (i + 1), seconds=seconds)
        sf.write(root / "clips" / f"s{i}.wav", np.zeros(int(seconds * 16_000), dtype=np.float32), 16_000)
        record = {**_record(i, None), "audio_id": f"./clips/c{i}.wav", "difficulty": ["easy", "hard"][i % 2]}
        records.append(record)
        silent.append({**record, "audio_id": f"./clips/s{i}.wav"})
    (root / "questions.json").write_text(json.dumps(records))
    (root / "silent.json").write_text(json.dumps(silent))
    out = root / "out"
    for data, name in (("silent.json", "pred.silence.json"), ("questions.json", "pred.json")):
        assert main(["eval", "--data", str(root / data), "--model", str(tiny_model_dir), "--output", str(out / name),
                     "--max-new-tokens", "8", "--batch-size", "8"]) == 0
    return out / "pred.json"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("CI=true but no chromium on PATH: .ci/run installs it (apt-get install chromium)")
    with Chromium(CHROMIUM) as b:
        yield b


STATS = "Object.fromEntries([...document.querySelectorAll('[data-stat]')].map(e => [e.dataset.stat, e.textContent]))"
CARDS = "[...document.querySelectorAll('#item-list .item')].map(e => [e.id.slice(5), e.dataset.verdict])"
# Load every player's clip, seek near its end (the browser decodes it there) and report [src, duration, error].
DECODE = """Promise.all([...document.querySelectorAll('#item-list audio')].map(a => new Promise(done => {
  a.addEventListener('loadeddata', () => {
    a.addEventListener('seeked', () => done([a.getAttribute('src'), a.duration, a.error && a.error.code]),
                       {once: true});
    a.currentTime = a.duration * 0.9; }, {once: true});
  a.addEventListener('error', () => done([a.getAttribute('src'), null, a.error && a.error.code]), {once: true});
  a.preload = 'auto'; a.load(); })))"""


def _choose(browser: Chromium, control: str, value: str) -> list:
    """Set a filter control and return the cards shown."""
    event = "input" if control == "f-search" else "change"
    browser.evaluate(f"(() => {{ const e = document.getElementById({json.dumps(control)}); "
                     f"e.value = {json.dumps(value)}; e.dispatchEvent(new Event('{event}')); }})()")
    return browser.evaluate(CARDS)


def _durations(folder: Path) -> dict[str, float]:
    return {p.name: sf.info(p).duration for p in folder.glob("*.wav")}


@needs_chromium
def test_page_of_a_real_eval_in_chromium(evaluated, browser, tmp_path):
    out = evaluated.parent
    score = json.loads(out.joinpath("pred.score.json").read_text())
    silence_score = json.loads(out.joinpath("pred.silence.score.json").read_text())
    browser.open(page_path(evaluated).as_uri())
    stats = browser.evaluate(STATS)
    assert {k: stats[k] for k in ("total", "correct", "n", "records", "audio-missing")} == {
        "total": f"{score['total']:.2f}", "correct": str(score["correct"]), "n": str(score["n"]),
        "records": str(score["records"]), "audio-missing": "0"}
    assert stats["silence-total"] == f"{silence_score['total']:.2f}"
    task_rows = browser.evaluate("[...document.querySelectorAll('table[data-breakdown=task] tbody tr')]"
                                 ".map(r => [...r.cells].slice(0, 3).map(c => c.textContent))")
    assert task_rows == [[t, f"{score['task'][t]:.2f}", f"{c}/{n}"] for t, (c, n) in score["counts"]["task"].items()
                         if n]
    assert len(browser.evaluate(CARDS)) == N_ITEMS
    sound = _choose(browser, "f-task", "sound")
    assert [i for i, _ in sound] == ["item-0", "item-3", "item-6"] == [
        f"item-{i}" for i in range(N_ITEMS) if i % 3 == 0]
    assert [i for i, _ in _choose(browser, "f-difficulty", "hard")] == ["item-3"]  # both filters apply
    _choose(browser, "f-task", "")
    _choose(browser, "f-difficulty", "")
    assert [i for i, _ in _choose(browser, "f-search", "clip 5?")] == ["item-5"]
    _choose(browser, "f-search", "")
    decoded = browser.evaluate(DECODE)  # small run: the clips are embedded in the page
    durations = _durations(out.parent / "clips")
    assert len(decoded) == N_ITEMS and all(src.startswith("data:audio/wav;base64,") for src, _, _ in decoded)
    assert [round(d, 2) for _, d, _ in decoded] == [round(durations[f"c{i}.wav"], 2) for i in range(N_ITEMS)]

    # Some answers right (edited predictions, rescored by `r1-aqa score`), clips by relative path, one clip moved.
    mixed = tmp_path / "mixed.json"
    records = json.loads(evaluated.read_text())
    for r in records[:3]:
        r["model_output"] = r["answer"]
    mixed.write_text(json.dumps(records))
    silence = json.loads(out.joinpath("pred.silence.json").read_text())
    silence[0]["model_output"] = silence[0]["answer"]  # item 0 answered right without listening too
    tmp_path.joinpath("mixed.silence.json").write_text(json.dumps(silence))
    assert main(["score", "--benchmark", "mmau", "--predictions", str(mixed)]) == 0
    score = json.loads(tmp_path.joinpath("mixed.score.json").read_text())
    moved = out.parent / "clips" / "c5.wav"
    shutil.move(moved, tmp_path / "c5.wav")
    try:
        assert main(["report", str(mixed), "--benchmark", "mmau", "--embed-audio-mb", "0"]) == 0
    finally:
        shutil.move(tmp_path / "c5.wav", moved)
    browser.open(page_path(mixed).as_uri())
    stats = browser.evaluate(STATS)
    assert (stats["correct"], stats["n"], stats["audio-missing"]) == (str(score["correct"]), str(score["n"]), "1")
    assert score["correct"] == 3
    assert _choose(browser, "f-verdict", "right") == [[f"item-{i}", "right"] for i in range(3)]
    assert _choose(browser, "f-verdict", "wrong") == [[f"item-{i}", "wrong"] for i in range(3, N_ITEMS)]
    _choose(browser, "f-verdict", "")
    assert [i for i, _ in _choose(browser, "f-listen", "needs-audio")] == ["item-1", "item-2"]
    assert [i for i, _ in _choose(browser, "f-listen", "right-silent")] == ["item-0"]
    _choose(browser, "f-listen", "")
    assert [i for i, _ in _choose(browser, "f-audio", "missing")] == ["item-5"]
    assert browser.evaluate("document.querySelector('#item-item-5 .audio-state').textContent") == "audio missing"
    _choose(browser, "f-audio", "")
    decoded = browser.evaluate(DECODE)
    assert [src for src, _, _ in decoded] == [os.path.relpath(out.parent / "clips" / f"c{i}.wav", tmp_path)
                                              for i in range(N_ITEMS) if i != 5]
    assert [round(d, 2) for _, d, _ in decoded] == [round(durations[f"c{i}.wav"], 2) for i in range(N_ITEMS) if i != 5]
    artifacts = Path(os.environ.get("R1_AQA_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    browser.evaluate("document.getElementById('items').scrollIntoView()")
    shot = browser.screenshot(artifacts / "report-page.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


@needs_chromium
def test_sweep_page_links_open_the_item_on_its_checkpoint_page(browser, tmp_path):
    """A flip's link opens the checkpoint page at that item, also past the first page of cards."""
    n = 150
    for step, flipped in ((10, False), (20, True)):
        records = [_record(i, CHOICES[i % 4] if i != 140 or flipped else CHOICES[(i + 1) % 4]) for i in range(n)]
        (tmp_path / f"pred.checkpoint-{step}.json").write_text(json.dumps(records))
        (tmp_path / f"pred.checkpoint-{step}.meta.json").write_text(json.dumps({"benchmark": "mmau"}))
    assert main(["report", str(tmp_path / "pred.json")]) == 0
    browser.open(sweep_page_path(tmp_path / "pred.json").as_uri())
    links = browser.evaluate("[...document.querySelectorAll('table.flips a')].map(a => a.href)")
    assert [link.rsplit("/", 1)[1] for link in links] == [f"pred.checkpoint-{s}.report.html#item-item-140"
                                                         for s in (10, 20)]
    browser.open(links[1])
    shown = browser.evaluate("document.querySelectorAll('#item-list .item').length")
    card = browser.evaluate("(() => { const e = document.getElementById('item-item-140'); const r = "
                            "e.getBoundingClientRect(); return [e.dataset.verdict, r.bottom > 0 && r.top < innerHeight]; "
                            "})()")
    assert shown > 100 and card == ["right", True]
    assert browser.evaluate("document.getElementById('match-count').textContent") == f"{n} of {n} items"
    browser.evaluate("document.getElementById('more').click()")
    assert browser.evaluate("document.querySelectorAll('#item-list .item').length") == n
