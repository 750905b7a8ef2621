"""Evaluation throughput: items/s of the hf and vLLM engines over synthetic clips; prints a markdown table.

    python bench/eval_throughput.py                      # tiny Qwen2-Audio on CPU (float32), 24 clips
    python bench/eval_throughput.py --model-size 7b -n 1000   # GPU: a 7B-shaped random Qwen2-Audio in bf16

The 7B model is built from ``Qwen2AudioConfig()`` defaults with random weights (no download) and the tiny tokenizer,
so responses are noise and usually run to ``--max-new-tokens``: the numbers are a worst case for decoding length.
Clips are 10-30 s tones with noise (seeded). Each engine runs through ``evaluate.engines`` in ``evaluate/predict.py``'s
chunks (``--batch-size``); start-up (model load, vLLM engine start) is timed apart from generation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_7b_model(out: Path) -> Path:
    """A random-weight Qwen2-Audio with the default (7B) shape, saved in bf16 under the hub's parameter names."""
    import torch
    from safetensors.torch import save_file
    from transformers import (GenerationConfig, Qwen2AudioConfig, Qwen2AudioForConditionalGeneration,
                              Qwen2AudioProcessor, WhisperFeatureExtractor)

    from r1_aqa.families.loading import QWEN2_AUDIO, checkpoint_name
    from r1_aqa.families.tiny_model import QWEN2_AUDIO_CHAT_TEMPLATE, build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(QWEN2_AUDIO)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|AUDIO|>")}
    config = Qwen2AudioConfig(
        audio_token_index=ids["<|AUDIO|>"],
        text_config={"model_type": "qwen2", "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                     "pad_token_id": ids["<|endoftext|>"]},
    )
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2AudioForConditionalGeneration(config).eval()
    torch.set_default_dtype(torch.float32)
    config.dtype = "bfloat16"
    state = {checkpoint_name(k, QWEN2_AUDIO): v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.architectures = [type(model).__name__]
    config.save_pretrained(out)
    GenerationConfig(bos_token_id=ids["<|endoftext|>"], eos_token_id=[ids["<|endoftext|>"], ids["<|im_end|>"]],
                     pad_token_id=ids["<|endoftext|>"], do_sample=False).save_pretrained(out)
    # Qwen2-Audio-7B-Instruct's feature extractor: 128 mel bins over a 30 s window.
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16_000, hop_length=160, chunk_length=30, n_fft=400)
    processor = Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=QWEN2_AUDIO_CHAT_TEMPLATE)
    processor.save_pretrained(out)
    del model, state
    return out


def synthetic_clips(n: int, min_seconds: float, max_seconds: float, seed: int = 0) -> list[np.ndarray]:
    """``n`` float32 16 kHz clips of uniform random length: a random tone plus a little noise."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        t = np.arange(int(rng.uniform(min_seconds, max_seconds) * 16_000)) / 16_000
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.02 * rng.standard_normal(len(t))
        clips.append(wav.astype(np.float32))
    return clips


def bench_engine(name: str, model: Path, prompts: list[str], clips: list[np.ndarray], batch_size: int,
                 max_new_tokens: int) -> dict:
    """Start an engine, generate for every clip in chunks of ``batch_size``; times and responses."""
    from r1_aqa.evaluate.engines import load_engine

    start = time.perf_counter()
    engine = load_engine(name, model, max_new_tokens=max_new_tokens, batch_size=batch_size)
    started = time.perf_counter()
    responses = []
    for i in range(0, len(prompts), batch_size):
        responses += engine.generate(prompts[i : i + batch_size], clips[i : i + batch_size])
    done = time.perf_counter()
    engine.close()
    return {"engine": name, "batch": batch_size, "startup_s": started - start, "gen_s": done - started,
            "items_per_s": len(prompts) / (done - started), "responses": responses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-size", choices=("tiny", "7b"), default="tiny")
    parser.add_argument("--model", type=Path, default=None, help="use this model directory instead of building one")
    parser.add_argument("-n", "--num-clips", type=int, default=None, help="default: 24 (tiny), 1000 (7b)")
    parser.add_argument("--engines", default=None, help="comma-separated; default: hf, plus vllm where installed")
    parser.add_argument("--hf-batch-size", type=int, default=8)
    parser.add_argument("--vllm-batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the model (default: a temp dir)")
    args = parser.parse_args(argv)

    import importlib.util

    import torch

    from r1_aqa.prompts import chat_prompt
    from r1_aqa.families.loading import load_processor
    from r1_aqa.prompts import format_prompt
    from r1_aqa.families.vllm_audio import configure_cpu_env

    configure_cpu_env()
    if args.model_size == "7b" and not torch.cuda.is_available():
        print("warning: --model-size 7b without a GPU: building and running it on CPU will take very long",
              file=sys.stderr)
    engines = args.engines.split(",") if args.engines else ["hf"] + (
        ["vllm"] if importlib.util.find_spec("vllm") is not None else [])
    n = args.num_clips or (24 if args.model_size == "tiny" else 1000)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        model = args.model
        if model is None:
            t = time.perf_counter()
            if args.model_size == "tiny":
                from r1_aqa.families.tiny_model import build_tiny_model

                model = build_tiny_model(Path(tmp) / "tiny")
            else:
                model = build_7b_model(Path(tmp) / "qwen2-audio-7b-random")
            print(f"built {args.model_size} model in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        clips = synthetic_clips(n, args.min_seconds, args.max_seconds)
        choices = ["one", "two", "three", "four"]
        prompts = [format_prompt(f"How many beeps are in clip {i}?", choices) for i in range(n)]
        processor = load_processor(model)
        prompt_tokens = np.mean([len(processor.tokenizer(chat_prompt(processor, p)).input_ids) for p in prompts])
        results = [bench_engine(name, model, prompts, clips, args.vllm_batch_size if name == "vllm" else
                                args.hf_batch_size, args.max_new_tokens) for name in engines]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{args.model_size} Qwen2-Audio on {device}, {n} clips of {args.min_seconds:g}-{args.max_seconds:g} s, "
          f"greedy, max {args.max_new_tokens} new tokens, ~{prompt_tokens:.0f} text tokens + audio per prompt\n")
    print("| engine | batch | startup s | generation s | items/s | responses = hf |")
    print("|---|---:|---:|---:|---:|---|")
    for res in results:
        same = "—" if res["engine"] == "hf" or results[0]["engine"] != "hf" else (
            "yes" if res["responses"] == results[0]["responses"] else
            f"{sum(a == b for a, b in zip(res['responses'], results[0]['responses']))}/{n}")
        print(f"| {res['engine']} | {res['batch']} | {res['startup_s']:.1f} | {res['gen_s']:.1f} | "
              f"{res['items_per_s']:.2f} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
