"""``shuffle_choices``: options re-ordered every time an item is sampled (GRPO and SFT), the solution never; and the
GRPO sampling settings (reward_weights, top_k, temperature) reach the rollouts of both generate paths."""

from __future__ import annotations

import ast
import re
from collections import defaultdict

import pandas as pd
import pytest
from helpers import RECIPE, ROOT, make_parquet, sft_argv

_OPTIONS = re.compile(r"Which tone is number (\d+)\? Please choose the answer from the following options: (\[.*?\])")
SAMPLING = dict(temperature=1.3, top_k=4, reward_weights=[2.0, 0.5, 0.0])


def _options(text: str) -> tuple[int, tuple[str, ...]]:
    number, options = _OPTIONS.search(text).groups()
    return int(number), tuple(ast.literal_eval(options))


def test_orders_change_by_epoch_and_stay_within_one(tmp_path):
    from r1_aqa.training.shuffle import COLUMNS, ChoiceShuffle
    from r1_aqa.training.stages import build_dataset

    dataset = build_dataset(str(make_parquet(tmp_path, n=4)), "default", columns=COLUMNS)
    original = dataset.to_list()
    shuffle = ChoiceShuffle("default", seed=0)
    dataset.set_transform(shuffle)
    seen = defaultdict(set)
    for epoch in range(6):
        shuffle.epoch = epoch
        first, again = dataset[:4], [dataset[i] for i in range(4)]
        for i, row in enumerate(again):
            assert row["prompt"] == first["prompt"][i]  # the same epoch, the same order (a GRPO group)
            assert row["solution"] == original[i]["solution"] and sorted(row["choices"]) == sorted(CHOICES)
            assert _options(row["prompt"][0]["content"][1]["text"]) == (i, tuple(row["choices"]))
            seen[i].add(tuple(row["choices"]))
    assert all(len(orders) >= 3 for orders in seen.values()), seen


def test_the_seed_picks_the_orders(tmp_path):
    """The run's seed reaches the orders (through the stage's callbacks): the same seed gives the same orders, another
    seed others."""
    from types import SimpleNamespace

    from r1_aqa.training.shuffle import COLUMNS
    from r1_aqa.training.stages import build_dataset, stage_callbacks

    parquet = str(make_parquet(tmp_path, n=4))
    script_args = SimpleNamespace(template="default")

    def orders(seed: int) -> list[tuple]:
        dataset = build_dataset(parquet, "default", columns=COLUMNS)
        (callback,) = stage_callbacks(script_args, SimpleNamespace(seed=seed, shuffle_choices=True), dataset)
        seen = []
        for epoch in range(4):
            callback.shuffle.epoch = epoch
            seen += [tuple(row["choices"]) for row in (dataset[i] for i in range(4))]
        return seen

    assert orders(0) == orders(0)
    assert orders(0) != orders(1) and orders(1) != orders(2)


CHOICES = ["low", "high", "middle"]


def _grpo_trainer(tiny_model_dir, tmp_path, reward, **overrides):
    from trl import GRPOConfig

    from r1_aqa.families.loading import load_model
    from r1_aqa.training.rewards import accuracy_reward, format_reward
    from r1_aqa.training.shuffle import COLUMNS, shuffle_choices
    from r1_aqa.training.stages import build_dataset
    from r1_aqa.training.trainer import AudioGRPOTrainer

    dataset = build_dataset(str(make_parquet(tmp_path, n=2)), "default", columns=COLUMNS)
    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2,
                    max_completion_length=6, learning_rate=1e-3, beta=0.0, max_steps=4, logging_steps=1,
                    save_strategy="no", report_to="none", use_cpu=True, bf16=False, seed=0,
                    dataloader_num_workers=0, **SAMPLING)
    settings.update(overrides)
    return AudioGRPOTrainer(
        model=load_model(tiny_model_dir, device="cpu").train(), args=GRPOConfig(**settings),
        reward_funcs=[accuracy_reward, format_reward, reward], train_dataset=dataset,
        callbacks=[shuffle_choices(dataset, "default", seed=0)],
    )


def _check_rewards_are_weighted(trainer) -> None:
    logged = [e for e in trainer.state.log_history if "reward" in e]
    assert logged
    for entry in logged:
        weighted = 2.0 * entry["rewards/accuracy_reward/mean"] + 0.5 * entry["rewards/format_reward/mean"]
        assert entry["reward"] == pytest.approx(weighted, abs=1e-6)


def test_grpo_shuffles_per_sampling_and_hf_rollouts_get_the_sampling_settings(tiny_model_dir, tmp_path):
    calls = []

    def spy_reward(prompts, completions, solution, choices, id, **kwargs) -> list[float]:
        calls.append([(p[-1]["content"][1]["text"], s, tuple(c), i) for p, s, c, i in zip(prompts, solution, choices,
                                                                                             id)])
        return [0.0] * len(prompts)

    trainer = _grpo_trainer(tiny_model_dir, tmp_path, spy_reward)
    configs = []
    generate = trainer.model.generate

    def recording_generate(*args, **kwargs):
        configs.append(kwargs["generation_config"])
        return generate(*args, **kwargs)

    trainer.model.generate = recording_generate
    trainer.train()

    answers = pd.read_parquet(tmp_path / "train.parquet").set_index("id")["solution"].to_dict()
    assert len(calls) == 4  # one generation batch (both items, 2 completions each) per step = per epoch
    orders = defaultdict(set)
    for batch in calls:
        by_item = defaultdict(set)
        for text, solution, choices, item in batch:
            assert solution == answers[item]  # the solution never moves
            assert _options(text)[1] == choices and sorted(choices) == sorted(CHOICES)
            by_item[item].add(choices)
        assert all(len(group) == 1 for group in by_item.values())  # a group shares one order
        for item, group in by_item.items():
            orders[item] |= group
    assert all(len(o) >= 2 for o in orders.values()), orders  # and it changes across samplings

    assert configs and all(c.do_sample and c.top_k == 4 and c.temperature == 1.3 for c in configs)
    _check_rewards_are_weighted(trainer)


@pytest.mark.vllm
def test_vllm_rollouts_get_the_sampling_settings(tiny_model_dir, tmp_path):
    trainer = _grpo_trainer(tiny_model_dir, tmp_path, lambda completions, **kw: [0.0] * len(completions),
                            use_vllm=True, vllm_mode="colocate", vllm_max_model_length=512, max_steps=1)
    llm = trainer.vllm_generation.llm
    params = []
    generate = llm.generate

    def recording_generate(requests, sampling_params=None, **kwargs):
        params.append(sampling_params)
        return generate(requests, sampling_params=sampling_params, **kwargs)

    llm.generate = recording_generate
    trainer.train()
    assert params and all(p.top_k == 4 and p.temperature == pytest.approx(1.3) for p in params)
    _check_rewards_are_weighted(trainer)


def test_sft_shuffles_per_epoch_and_keeps_the_target(tiny_model_dir, tmp_path):
    from r1_aqa.families.loading import load_model, load_processor
    from r1_aqa.training.sft import parse_sft_args, sft_dataset
    from r1_aqa.training.sft_trainer import AudioSFTTrainer
    from r1_aqa.training.stages import shuffle_columns, stage_callbacks

    parquet = make_parquet(tmp_path, n=4)
    script, training, _ = parse_sft_args([
        "--config", str(ROOT / "examples/r1_aqa/recipes/tiny_sft.yaml"), "--dataset_path", str(parquet),
        "--output_dir", str(tmp_path / "o"), "--max_steps", "3", "--per_device_train_batch_size", "4",
        "--save_strategy", "no", "--shuffle_choices", "true"])
    processor = load_processor(tiny_model_dir)
    dataset = sft_dataset(str(parquet), script.template, columns=shuffle_columns(training))
    model = load_model(tiny_model_dir, device="cpu").train()
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append((kw["input_ids"], kw["labels"])), with_kwargs=True)
    AudioSFTTrainer(model, args=training, train_dataset=dataset, processing_class=processor,
                    callbacks=stage_callbacks(script, training, dataset)).train()

    answers = pd.read_parquet(parquet)["answer"].tolist()
    orders = defaultdict(set)
    assert len(seen) == 3  # one batch of all four items per step = per epoch
    for ids, labels in seen:
        for row, row_labels in zip(ids, labels):
            number, options = _options(processor.tokenizer.decode(row))
            orders[number].add(options)
            target = processor.tokenizer.decode(row_labels[row_labels != -100])
            assert target == f"<answer>{answers[number]}</answer><|im_end|>"
    assert sorted(orders) == [0, 1, 2, 3] and all(len(o) >= 2 for o in orders.values()), orders


@pytest.mark.parametrize("stage", ["train", "sft"])
def test_both_stages_shuffle_when_asked(stage, tiny_model_dir, tmp_path):
    """``shuffle_choices`` reaches the run through the stages' template (``stages.run_training``): the training set
    carries the columns to shuffle and the trainer holds the shuffling callback; without it, neither."""
    from r1_aqa.training.sft import parse_sft_args, sft
    from r1_aqa.training.shuffle import ChoiceShuffleCallback
    from r1_aqa.training.train import parse_trl_args, train

    parquet = make_parquet(tmp_path, n=2)
    for shuffle in (True, False):
        out = tmp_path / f"{stage}-{shuffle}"
        flags = ["--max_steps", "1", "--save_strategy", "no", "--shuffle_choices", str(shuffle).lower()]
        if stage == "sft":
            trainer = sft(*parse_sft_args(sft_argv(tiny_model_dir, parquet, out, *flags)))
        else:
            trainer = train(*parse_trl_args(["--config", RECIPE, "--model_name_or_path", str(tiny_model_dir),
                                             "--dataset_path", str(parquet), "--output_dir", str(out), *flags]))
        held = [c for c in trainer.callback_handler.callbacks if isinstance(c, ChoiceShuffleCallback)]
        assert len(held) == shuffle and ("question" in trainer.train_dataset.column_names) == shuffle
