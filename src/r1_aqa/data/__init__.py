"""Data: the synthetic task (``synth``) and dataset preparation (``prepare`` with per-dataset readers).

Every prepared dataset is one parquet of validated rows with probed audio paths (see ``prepare.COLUMNS``) plus a
skip report; ``evaluate/benchmarks.py`` reads MMAU/MMSU through ``mmau.load_mmau`` and ``mmsu.load_mmsu``.
"""
