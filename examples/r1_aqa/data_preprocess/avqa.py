"""Prepare AVQA for R1-AQA training: a thin wrapper over ``r1-aqa prepare avqa``.

    python examples/r1_aqa/data_preprocess/avqa.py --input train_r1aqa.jsonl --audio-dir avqa_audio \
        --output data/avqa_train.parquet
    python examples/r1_aqa/data_preprocess/avqa.py --from-hf avqa-processed --split train --output data/avqa.parquet

Rows with dead or undecodable clips are skipped and listed in ``data/avqa_train.report.json``.
"""

import sys

from r1_aqa.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "avqa", *sys.argv[1:]]))
