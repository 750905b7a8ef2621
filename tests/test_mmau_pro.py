"""MMAU-Pro: the official rules (instruction-following checks item by item, open-ended judge grading, closed-ended
embedding match, the item-weighted total) against an independent implementation of the official script's functions,
with the tiny judge as LLM judge and embedder; every clip of a multi-clip item reaches the model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from r1_aqa.benchmarks import mmau_pro
from r1_aqa.benchmarks.mmau_pro import follows, load_mmau_pro, parse_open, score_mmau_pro
from r1_aqa.judge.core import Judge

FIXTURE = Path(__file__).parent / "fixtures" / "mmau_pro" / "questions.json"

# Per instruction-following task: a response that passes and one that fails the official check.
IF_RESPONSES = {
    "Include Keywords": ("The dog starts to bark.", "A cat meows."),
    "Keyword Frequency": ("One sound, then another sound.", "One sound only."),
    "Forbidden Words": ("Birds and wind.", "A song plays."),
    "Number Paragraphs": ("First part. *** Second part.", "Only one part."),
    "Number Words (at least)": ("one two three four five six", "one two"),
    "Number Words (at most)": ("one two", "one two three four"),
    "Number Words (range)": ("one two three", "one"),
    "Number Sentences (at least)": ("It rains. It pours.", "It rains."),
    "Number Sentences (at most)": ("It rains.", "It rains. It pours. It stops."),
    "Number Sentences (range)": ("It rains. It pours.", "A. B. C. D."),
    "Postscript": ("Done.\nP.S. more later", "Done."),
    "Number Placeholder": ("At [place] on [date].", "At [place]."),
    "Number Bullets": ("* a\n* b\n* c", "* a\n* b"),
    "Title": ("<<Rain>> It rains.", "Rain. It rains."),
    "Minimum Number Highlighted Section": ("*one* and *two*", "*one* only"),
    "Multiple Sections": ("intro SECTION body", "intro body"),
    "Repeat Prompt": ("Describe the audio. (Repeat Prompt) It is rain.", "It is rain."),
    "Two Responses": ("rain ****** thunder", "rain ****** rain"),
    "All Uppercase": ("IT RAINS", "It rains"),
    "All Lowercase": ("it rains", "It rains"),
    "All-capital Words (at least)": ("BIG LOUD rain", "BIG rain"),
    "All-capital Words (at most)": ("quiet rain", "LOUD rain"),
    "All-capital Words (range)": ("LOUD rain", "LOUD BIG HUGE rain"),
    "Start Checker": ("In this audio, rain falls.", "Rain falls in this audio."),
    "End Checker": ("Rain falls. That is all.", "That is all. Rain falls."),
    "Quotation": ('"rain"', "rain"),
    "No Commas": ("rain and wind", "rain, wind"),
    "Unknown Check": (None, "anything"),
}


# ------------------------------------------------------------------- an independent reading of the official functions
def official_follows(response: str, task: str, kwargs: dict, prompt: str) -> bool:
    """The official evaluate_aif_sample's checks, written out again from its rules."""
    kw = kwargs or {}
    words = response.split()
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", response.strip()) if s]  # (NLTK Punkt in the original)
    caps = len([w for w in words if w.isupper()])

    def letters(text, spaces):
        keep = "abcdefghijklmnopqrstuvwxyz" + (" " if spaces else "")
        return "".join(c for c in text.lower() if c in keep)

    table = {
        "Include Keywords": lambda: all(k.lower() in response.lower() for k in kw["keywords"].split(", ")),
        "Keyword Frequency": lambda: len(re.findall(rf"\b{re.escape(kw['keyword'].lower())}\b", response.lower()))
        == kw["N"],
        "Forbidden Words": lambda: all(w.lower() not in response.lower() for w in kw["forbidden_words"].split(", ")),
        "Number Paragraphs": lambda: sum(1 for p in response.split("***") if p.strip()) == kw["N"],
        "Number Words (at least)": lambda: len(words) >= kw["N"],
        "Number Words (at most)": lambda: len(words) <= kw["N"],
        "Number Words (range)": lambda: kw["N1"] <= len(words) <= kw["N2"],
        "Number Sentences (at least)": lambda: len(sentences) >= kw["N"],
        "Number Sentences (at most)": lambda: len(sentences) <= kw["N"],
        "Number Sentences (range)": lambda: kw["N1"] <= len(sentences) <= kw["N2"],
        "Postscript": lambda: letters(kw["postscript_marker"], False) in letters(response, False),
        "Number Placeholder": lambda: len(re.findall(r"\[[^\]]+\]", response)) >= kw["N"],
        "Number Bullets": lambda: len(re.findall(r"(?:^|\n)\s*\*\s+", response)) == kw["N"],
        "Title": lambda: re.search(r"<<[^>]+>>", response) is not None,
        "Minimum Number Highlighted Section": lambda: len(re.findall(r"\*([^*]+)\*", response)) >= kw["N"],
        "Multiple Sections": lambda: len([s for s in re.split(r"\s*" + re.escape(kw["section_splitter"]) + r"\s*",
                                                              response.strip()) if s.strip()]) == kw["N"],
        "Repeat Prompt": lambda: response.strip().lower().startswith(prompt.strip().lower()),
        "Two Responses": lambda: len(response.split("******")) == 2
        and response.split("******")[0].strip().lower() != response.split("******")[1].strip().lower(),
        "All Uppercase": lambda: response.isupper(),
        "All Lowercase": lambda: response.islower(),
        "All-capital Words (at least)": lambda: caps >= kw["N"],
        "All-capital Words (at most)": lambda: caps <= kw["N"],
        "All-capital Words (range)": lambda: kw["N1"] <= caps <= kw["N2"],
        "Start Checker": lambda: letters(response, True).startswith(letters(kw["start_phrase"], True)),
        "End Checker": lambda: letters(response, True).endswith(letters(kw["end_phrase"], True)),
        "Quotation": lambda: response.strip()[:1] == '"' and response.strip()[-1:] == '"',
        "No Commas": lambda: "," not in response,
    }
    return table[task]() if task in table else False


def official_overall(reply: str) -> float:
    found = {}
    for name in ("CORRECTNESS", "RELEVANCE", "COMPLETENESS", "CLARITY"):
        m = re.search(name + r":\s*(\d+)", reply, re.IGNORECASE)
        found[name] = float(m.group(1)) if m else 3.0
    m = re.search(r"OVERALL:\s*(\d+(?:\.\d+)?)", reply, re.IGNORECASE)
    overall = float(m.group(1)) if m else 3.0
    return float(np.mean(list(found.values()))) if overall == 3.0 else overall


OFFICIAL_PROMPT = """You are an expert evaluator for general open-ended question answering tasks. Please evaluate the quality of a model's response to a question.

Question: {q}

Reference Answer: {a}

Model Response: {r}

Please evaluate the model response on the following criteria and provide scores from 1-5 (where 5 is best):

1. **Correctness**: How factually accurate is the response compared to the reference?
2. **Relevance**: How well does the response address the specific question asked?
3. **Completeness**: Does the response cover all important aspects mentioned in the reference?
4. **Clarity**: How clear and well-structured is the response?

For each criterion, provide:
- A score from 1-5
- A brief justification (1-2 sentences)

Format your response as:

CORRECTNESS: [score] - [justification]
RELEVANCE: [score] - [justification] 
COMPLETENESS: [score] - [justification]
CLARITY: [score] - [justification]
OVERALL: [average score] - [overall assessment]"""


def official_scores(records, key, chat, embedder):
    """Per-category scores and the weighted total, as the official main() computes them."""
    per_category: dict[str, list[float]] = {}
    for r in records:
        response = r.get(key)
        if r["category"] == "instruction following":
            value = float(official_follows(str(response) if key in r else "", r["task_identifier"], r["kwargs"],
                                           r["question"]))
        elif r["category"] == "open":
            reply = chat.complete([[{"role": "system", "content": "You are a helpful and objective evaluator."},
                                    {"role": "user", "content": OFFICIAL_PROMPT.format(
                                        q=r["question"], a=r["answer"], r=response or "")}]],
                                  {"temperature": 0.0, "max_new_tokens": 512, "seed": 0})[0]
            value = official_overall(reply) / 5
        elif len(r["choices"]) > 1:
            vectors = embedder.embed([response or ""] + r["choices"])
            value = float(r["choices"][int(np.argmax(vectors[1:] @ vectors[0]))] == r["answer"])
        else:
            continue
        per_category.setdefault(r["category"], []).append(value)
    total = sum(sum(v) for v in per_category.values()) / sum(len(v) for v in per_category.values())
    return {c: float(f"{100 * np.mean(v):.2f}") for c, v in per_category.items()}, float(f"{100 * total:.2f}")


# ----------------------------------------------------------------------------------------------------------- tests
def _predictions(passing: bool) -> list[dict]:
    records = json.loads(FIXTURE.read_text())
    closed = {"c1": "It is a piano.", "c2": "a small dog", "c3": "the second one", "c4": "a woman speaks", "c5": "yes"}
    opened = {"o1": "Cars pass by and a siren wails on a busy street.", "o2": None}
    for r in records:
        if r["category"] == "instruction following":
            good, bad = IF_RESPONSES[r["task_identifier"]]
            r["model_output"] = good if passing else bad
        else:
            r["model_output"] = {**closed, **opened}[r["id"]]
    return records


@pytest.mark.parametrize("passing", [True, False])
def test_instruction_following_checks_equal_the_official_rules_item_by_item(passing):
    for r in _predictions(passing):
        if r["category"] != "instruction following":
            continue
        response = str(r["model_output"])
        ours = follows(response, r["task_identifier"], r["kwargs"], r["question"])
        assert ours == official_follows(response, r["task_identifier"], r["kwargs"], r["question"]), r["id"]
        if r["task_identifier"] != "Unknown Check":  # every check passes its good response and fails its bad one
            assert ours is passing, (r["task_identifier"], response)


def test_kwargs_as_json_text_read_like_a_mapping():
    assert follows("one two three", "Number Words (range)", '{"N1": 2, "N2": 4}')
    assert not follows("one", "Number Words (range)", '{"N1": 2, "N2": 4}')


@pytest.mark.parametrize("reply, overall", [
    ("CORRECTNESS: 4 - ok\nRELEVANCE: 5 - ok\nCOMPLETENESS: 3 - ok\nCLARITY: 4 - ok\nOVERALL: 4.5 - good", 4.5),
    ("CORRECTNESS: 4\nRELEVANCE: 5\nCOMPLETENESS: 2\nCLARITY: 5\nOVERALL: 3 - fine", 4.0),  # 3.0: the mean instead
    ("correctness: 5\nclarity: 1", 3.0),  # relevance/completeness missing: 3.0 each; overall: the mean
    ("no scores at all", 3.0),
])
def test_open_replies_parse_as_the_official_script_does(reply, overall):
    assert parse_open(reply)["overall"] == overall == official_overall(reply)


def test_the_open_judge_prompt_is_the_official_one():
    chat = mmau_pro.open_messages("What?", "A dog.", "a cat")
    assert chat[0] == {"role": "system", "content": "You are a helpful and objective evaluator."}
    assert chat[1]["content"] == OFFICIAL_PROMPT.format(q="What?", a="A dog.", r="a cat")


def test_scores_equal_an_independent_implementation_of_the_official_script(tiny_judge_dir, tmp_path):
    from r1_aqa.judge.backends import TransformersChat, TransformersEmbedder

    records = [{**r, "audio": None} for r in _predictions(passing=True)]
    judge = Judge(str(tiny_judge_dir), tmp_path / "cache.sqlite", embed_model=str(tiny_judge_dir),
                  sampling={"max_new_tokens": 512})
    score = score_mmau_pro(records, judge)
    categories, total = official_scores(records, "model_output", TransformersChat(tiny_judge_dir),
                                        TransformersEmbedder(tiny_judge_dir))
    assert score["category"] == categories
    assert score["total"] == total
    assert score["left_out"] == 1 and score["n"] == len(records) - 1  # c5: one choice
    assert set(score["type"]) == {"closed", "open", "instruction following"}
    # item by item, instruction following
    by_id = {item["id"]: item for item in score["items"]}
    for r in records:
        if r["category"] == "instruction following":
            expected = official_follows(str(r["model_output"]), r["task_identifier"], r["kwargs"], r["question"])
            assert by_id[r["id"]]["score"] == float(expected), r["id"]


def test_eval_feeds_every_clip_of_a_multi_clip_item(tiny_model_dir, tiny_judge_dir, tmp_path, monkeypatch, capsys):
    from r1_aqa.cli import main
    from r1_aqa.evaluate import engines

    questions = tmp_path / "mmau-pro.json"
    shutil.copy(FIXTURE, questions)
    assert main(["synth", str(tmp_path / "clips"), "--like", str(questions), "--seconds", "0.5"]) == 0
    expected = sum(len(r["audio_path"]) for r in json.loads(FIXTURE.read_text()))
    assert len(list((tmp_path / "clips" / "audios").glob("*.wav"))) == expected
    seen = []
    real = engines.hf_batch

    def spy(processor, texts, audios):  # what reaches the processor: placeholders in the texts and clips
        token = "<|AUDIO|>"
        seen.append((sum(t.count(token) for t in texts), len(audios)))
        return real(processor, texts, audios)

    monkeypatch.setattr(engines, "hf_batch", spy)
    out = tmp_path / "pred.json"
    assert main(["eval", "--benchmark", "mmau-pro", "--data", str(questions), "--audio-dir", str(tmp_path / "clips"),
                 "--model", str(tiny_model_dir), "--max-new-tokens", "4", "--batch-size", "4", "--output", str(out),
                 "--judge-model", str(tiny_judge_dir), "--embed-model", str(tiny_judge_dir)]) == 0
    assert sum(placeholders for placeholders, _ in seen) == expected
    assert all(placeholders == clips for placeholders, clips in seen)
    assert sum(clips for _, clips in seen) == expected
    predictions = json.loads(out.read_text())
    multi = next(r for r in predictions if r["id"] == "c3")
    assert len(multi["audio"]) == 3 and all(Path(a).is_file() for a in multi["audio"])
    score = json.loads((tmp_path / "pred.score.json").read_text())
    assert set(score["category"]) >= {"music", "sound", "open", "instruction following", "multi-audio"}
    assert "## By type" in (tmp_path / "pred.score.md").read_text()
    assert (tmp_path / "pred.score.png").stat().st_size > 0
    page = (tmp_path / "pred.report.html").read_text()
    rows = re.findall(r"<tr><td>([^<]+)</td><td>[^<]*</td><td>(.*?)</td>", page.split('id="item-table"')[1])
    players = {item: cell.count("<audio") for item, cell in rows}
    assert len(players) == len(predictions) and players["c3"] == 3 and players["c1"] == 1
    assert all((tmp_path / src).is_file() for src in re.findall(r'<audio controls preload="none" src="([^"]+)"',
                                                                  page))


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_answers_multi_clip_items_as_hf_does(tiny_model_dir, tmp_path):
    from r1_aqa.cli import main

    questions = tmp_path / "mmau-pro.json"
    shutil.copy(FIXTURE, questions)
    assert main(["synth", str(tmp_path / "clips"), "--like", str(questions), "--seconds", "1"]) == 0
    outputs = {}
    for engine in ("hf", "vllm"):
        outputs[engine] = tmp_path / f"{engine}.json"
        assert main(["eval", "--benchmark", "mmau-pro", "--data", str(questions), "--audio-dir", str(tmp_path / "clips"),
                     "--model", str(tiny_model_dir), "--engine", engine, "--limit", "4", "--max-new-tokens", "6",
                     "--output", str(outputs[engine])]) == 0
    hf, vllm = (json.loads(outputs[e].read_text()) for e in ("hf", "vllm"))
    assert [len(r["audio"]) for r in hf] == [1, 1, 3, 1]
    assert [r["model_response"] for r in vllm] == [r["model_response"] for r in hf]


def test_a_missing_clip_of_a_multi_clip_item_is_named_before_the_model_loads(tiny_model_dir, tmp_path, capsys):
    from r1_aqa.cli import main

    questions = tmp_path / "mmau-pro.json"
    shutil.copy(FIXTURE, questions)
    assert main(["synth", str(tmp_path / "clips"), "--like", str(questions), "--seconds", "0.2"]) == 0
    (tmp_path / "clips" / "audios" / "c3b.wav").unlink()  # the second of c3's three clips
    assert main(["eval", "--benchmark", "mmau-pro", "--data", str(questions), "--audio-dir", str(tmp_path / "clips"),
                 "--model", str(tiny_model_dir), "--output", str(tmp_path / "pred.json")]) == 2
    err = capsys.readouterr().err
    assert "1 of 35 audio clips are missing" in err and "c3: audios/c3b.wav: file not found" in err


def test_loader_names_a_record_without_its_fields(tmp_path):
    bad = tmp_path / "q.json"
    bad.write_text(json.dumps([{"id": "x", "audio_path": ["a.wav"], "question": "q", "category": "sound"}]))
    with pytest.raises(ValueError, match=r"record 1 \(id x\): missing field\(s\) answer"):
        load_mmau_pro(bad)
    assert mmau_pro.item_type({"category": "music"}) == "closed"
