"""``r1-aqa sft`` on the tiny models with the real TRL ``SFTTrainer``: the loss mask, learning, loadable checkpoints."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from helpers import RECIPE, make_parquet, sft_argv

from r1_aqa.cli import main


@pytest.mark.parametrize("family_dir", ["tiny_model_dir", "tiny_omni_dir"])
def test_labels_cover_only_the_assistant_tokens(family_dir, request, tmp_path):
    from r1_aqa.families.loading import AUDIO_TOKEN, load_processor
    from r1_aqa.prompts import END_OF_TURN
    from r1_aqa.training.sft import sft_dataset
    from r1_aqa.training.sft_trainer import AudioSFTCollator

    processor = load_processor(request.getfixturevalue(family_dir))
    tok = processor.tokenizer
    dataset = sft_dataset(str(make_parquet(tmp_path)), "default")
    rows = [dataset[0], dataset[1]]  # 1 s and 1.5 s clips: different lengths, so one row is padded
    batch = AudioSFTCollator(processor)(rows)
    assert batch["input_features"].size(0) == 2 and batch["labels"].shape == batch["input_ids"].shape
    audio_id = tok.convert_tokens_to_ids(AUDIO_TOKEN)
    lengths = batch["attention_mask"].sum(1).tolist()
    assert lengths[0] != lengths[1]
    for row, ids, labels, n in zip(rows, batch["input_ids"], batch["labels"], lengths):
        target = tok(row["target"] + END_OF_TURN, add_special_tokens=False)["input_ids"]
        trained = labels != -100
        # exactly the assistant turn (target + end of turn), which ends the real tokens; nothing else carries loss
        assert labels[trained].tolist() == target and ids[trained].tolist() == target
        assert trained[n - len(target) : n].all() and int(trained.sum()) == len(target)
        assert int((ids[:n] == audio_id).sum()) > 0 and not trained[ids == audio_id].any()
        assert tok.decode(ids[: n - len(target)]).endswith("<|im_start|>assistant\n")
        assert tok.decode(ids[n - len(target) : n]) == row["target"] + END_OF_TURN


def test_sft_learns_and_its_checkpoint_loads_in_train_and_eval(tiny_model_dir, tmp_path):
    from r1_aqa.evaluate.predict import evaluate
    from r1_aqa.evaluate.benchmarks import load_items
    from r1_aqa.training.sft import parse_sft_args, sft

    parquet = make_parquet(tmp_path, n=4)
    out = tmp_path / "sft"
    trainer = sft(*parse_sft_args(sft_argv(tiny_model_dir, parquet, out, "--max_steps", "30", "--learning_rate", "1e-2",
                                           "--per_device_train_batch_size", "4", "--max_audio_seconds", "2.5")))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < 0.2 * losses[0], losses
    saved = torch.load(out / "training_args.bin", weights_only=False)  # the audio options, saved with the model
    assert type(saved).__name__ == "AudioSFTConfig" and saved.max_audio_seconds == 2.5
    assert trainer.data_collator.max_audio_seconds == 2.5
    del trainer

    # eval (hf) reads the checkpoint; the random model now answers in the taught format, with one of the options
    items = load_items("mmau", parquet)
    records = evaluate(items, out, tmp_path / "pred.json", benchmark="mmau", data=parquet, max_new_tokens=12)
    assert all(r["model_response"] == f"<answer>{r['model_output']}</answer>" for r in records)
    assert all(r["model_output"] in r["choices"] for r in records)
    # train (GRPO) starts from it
    assert main(["train", "--config", RECIPE, "--model_name_or_path", str(out), "--dataset_path", str(parquet),
                 "--output_dir", str(tmp_path / "grpo"), "--max_steps", "1", "--save_strategy", "no"]) == 0


def test_omni_thinker_trains_with_the_models_own_loss(tiny_omni_dir, tmp_path):
    from r1_aqa.training.sft import parse_sft_args, sft

    trainer = sft(*parse_sft_args(sft_argv(tiny_omni_dir, make_parquet(tmp_path), tmp_path / "sft", "--max_steps", "6",
                                           "--per_device_train_batch_size", "4")))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert (tmp_path / "sft" / "model.safetensors").exists()


@pytest.mark.vllm
def test_sft_checkpoint_loads_in_vllm(tiny_model_dir, tmp_path):
    from r1_aqa.evaluate.predict import evaluate
    from r1_aqa.evaluate.benchmarks import load_items
    from r1_aqa.training.sft import parse_sft_args, sft

    parquet = make_parquet(tmp_path, n=2)
    sft(*parse_sft_args(sft_argv(tiny_model_dir, parquet, tmp_path / "sft", "--max_steps", "2")))
    items = load_items("mmau", parquet)
    kwargs = dict(benchmark="mmau", data=parquet, max_new_tokens=8)
    hf = evaluate(items, tmp_path / "sft", tmp_path / "hf.json", engine="hf", **kwargs)
    vllm = evaluate(items, tmp_path / "sft", tmp_path / "vllm.json", engine="vllm", **kwargs)
    assert [r["model_response"] for r in vllm] == [r["model_response"] for r in hf]


def test_reasoning_targets_and_bad_input(tiny_model_dir, tmp_path, capsys):
    from r1_aqa.training.sft import sft_dataset

    parquet = make_parquet(tmp_path)
    frame = pd.read_parquet(parquet)
    frame["thinking"] = [f"The tone is {a}. " for a in frame["answer"]]
    frame.to_parquet(tmp_path / "mmar.parquet")
    dataset = sft_dataset(str(tmp_path / "mmar.parquet"), "think", "thinking")
    assert dataset["target"][1] == f"<think>The tone is {frame.answer[1]}.</think><answer>{frame.answer[1]}</answer>"

    assert main(["sft", *sft_argv(tiny_model_dir, parquet, tmp_path / "o", "--reasoning_column", "thinking")]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['thinking']" in err and str(parquet) in err and "r1-aqa prepare" in err

    assert main(["sft", *sft_argv(tiny_model_dir, tmp_path / "mmar.parquet", tmp_path / "o", "--reasoning_column",
                                  "thinking", "--max_length", "8")]) == 2
    err = capsys.readouterr().err
    assert "longer than max_length 8" in err and all(f"q{i}" in err for i in range(4))
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_sft_help_lists_sft_flags(capsys):
    with pytest.raises(SystemExit):
        main(["sft", "--trl-help"])
    out = capsys.readouterr().out
    assert "--reasoning_column" in out and "--max_length" in out and "--completion_only_loss" in out
