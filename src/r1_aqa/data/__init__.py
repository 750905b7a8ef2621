"""Data: the synthetic task (``synth``) and dataset preparation (``prepare`` with per-dataset readers).

Every prepared dataset is one parquet of validated rows with probed audio paths (see ``prepare.COLUMNS``) plus a
skip report; the benchmarks (``r1_aqa.benchmarks``) read their own files through ``mmau.load_mmau``, ``mmar.load_mmar``
and ``mmsu.load_mmsu``.
"""
