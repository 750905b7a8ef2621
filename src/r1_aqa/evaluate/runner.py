"""The names callers imported from this module before the ``eval`` code was split by what it holds
(``benchmarks.py``, ``predict.py``, ``workers.py``, ``sweep.py``, ``eval.py``); new code imports from those."""

from .benchmarks import check_audio, clip, load_items, permuted
from .predict import RESUME_SETTINGS, evaluate, meta_path, prediction_fields, record_key
from .workers import worker_units

__all__ = ["RESUME_SETTINGS", "check_audio", "clip", "evaluate", "load_items", "meta_path", "permuted",
           "prediction_fields", "record_key", "worker_units"]
_RESUME_SETTINGS, _key = RESUME_SETTINGS, record_key  # the spellings tests/test_eval_guards.py reads
