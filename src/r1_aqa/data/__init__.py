"""Data: the synthetic task (``synth``) and dataset preparation (``prepare``).

Every prepared dataset is one parquet of validated rows with probed audio paths (see ``items.COLUMNS``) plus a skip
report. ``prepare`` reads AVQA (training data) itself and asks a benchmark (``r1_aqa.benchmarks``) to read its own
file; ``synth --like`` asks the benchmarks which one a file is.
"""
