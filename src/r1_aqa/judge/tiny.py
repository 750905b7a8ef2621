"""``r1-aqa tiny-judge DIR``: a tiny random-weight text LM (Qwen2) with a ChatML template, to stand in for an LLM
judge and an embedder on a CPU (its grades mean nothing; the code paths are the real ones). Loadable by transformers
and by vLLM (``vllm serve DIR``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "Build a tiny offline random-weight text LM to stand in for a judge and an embedder (tests, CPU trials)."

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_judge(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write the tiny judge (config, weights, tokenizer, greedy generation config) to ``out_dir``; deterministic for
    a seed. Its weights are drawn wider than a real model's so that greedy picks are clear-cut (no near-ties that
    two engines could break differently)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ..families._tiny import TEXT, build_tokenizer, qwen2_text_config, random_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], CHAT_TEMPLATE)
    config = Qwen2Config(**{**qwen2_text_config(tok), **TEXT, "initializer_range": 0.2})
    config.architectures = ["Qwen2ForCausalLM"]
    model = random_model(Qwen2ForCausalLM, config, tok, seed)
    model.generation_config.max_new_tokens = 24
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="directory to write the judge model to")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> None:
    out = build_tiny_judge(args.out_dir, seed=args.seed)
    print(f"wrote a tiny judge (text LM and embedder) to {out}; use it as --judge_model/--judge-model {out}")
