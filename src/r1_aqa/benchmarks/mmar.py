"""MMAR, scored as ``code/evaluation.py`` of ddlBoJack/MMAR: MMAU's token rule (:mod:`.token_rule`) on the key
``answer_prediction``, accuracy per modality, category and sub-category; records without the key are dropped."""

from __future__ import annotations

from pathlib import Path

from .common import DEFAULT_KEY
from .mmau import first_byte
from .token_rule import TokenRuleBenchmark

KEY = "answer_prediction"  # what MMAR's scorer reads
MODALITIES = ("sound", "music", "speech", "mix-sound-music", "mix-sound-speech", "mix-music-speech",
              "mix-sound-music-speech")
CATEGORIES = ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")


class MMAR(TokenRuleBenchmark):
    name = "mmar"
    title = "MMAR"
    file_format = "an MMAR JSON-lines file"
    key = KEY
    other_key = DEFAULT_KEY
    rule = "MMAU token match on answer_prediction (ddlBoJack/MMAR evaluation.py)"
    groups = {"modality": ("modality", MODALITIES, None), "category": ("category", CATEGORIES, None),
              "sub-category": ("sub-category", (), None)}
    panel_groups = (("Modality", "modality"), ("Category", "category"))
    sweep_group = "modality"
    clip_field = "audio_path"

    def read(self, data: Path, audio_dir: str | Path | None) -> list[dict]:
        from ..data.mmar import load_mmar

        return load_mmar(data, audio_dir)

    def looks_like(self, data: Path) -> bool:
        return first_byte(data) == b"{"

    def owns(self, record: dict) -> bool:
        return {"audio_path", "modality"} <= set(record)

    def prediction_fields(self, answer: str | None, think: str | None, template: str) -> dict:
        return {"answer_prediction": answer, **({"thinking_prediction": think} if template == "think" else {})}


BENCHMARK = MMAR()
