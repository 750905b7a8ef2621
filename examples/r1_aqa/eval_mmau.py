"""Evaluate a model, or every checkpoint of a run, on MMAU test-mini: ``r1-aqa eval`` with the same flags.

    python examples/r1_aqa/eval_mmau.py --data mmau-test-mini.json --audio-dir MMAU --model RUN_DIR \
        --engine vllm --output preds/mmau.json

``--benchmark mmsu`` evaluates MMSU instead; ``--help`` lists every flag.
"""

import sys

from r1_aqa.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
