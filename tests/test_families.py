"""The model-family interface (``r1_aqa.families``), and Audio Flamingo 3 and Voxtral end to end on their tiny
models: placeholder counts, audio in every trainable audio tensor, checkpoints under the hub's names that reload in a
fresh process, sft and eval. vLLM per family (greedy == transformers after an in-place sync of each part and on the
trained checkpoint): ``test_trainer_vllm.py``, whose colocated engines hold a process group to the end of the
session."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from helpers import (
    FIXTURES,
    audio_params,
    make_parquet,
    make_trainer,
    perturb_params,
    sft_argv,
    unused_audio_params,
    write_tone,
)
from safetensors import safe_open

from r1_aqa.families import NAMES, family_of, get_family

HUB_NAMED = ["audioflamingo3", "voxtral"]  # transformers 5.17 saves these under language_model.model.model.*


def weight_names(folder) -> set[str]:
    """The tensor names of the HF-format weight files (a Voxtral checkpoint also holds the Mistral format)."""
    names: set[str] = set()
    for file in folder.glob("model*.safetensors"):
        with safe_open(str(file), "pt") as f:
            names |= set(f.keys())
    return names


def hub_names(model, family) -> set[str]:
    return {family.checkpoint_name(k) for k in model.state_dict()}


def test_every_family_has_a_fixture_and_a_distinct_model_type():
    assert set(FIXTURES) == set(NAMES)
    types = [t for name in NAMES for t in get_family(name).model_types]
    assert len(types) == len(set(types))
    with pytest.raises(ValueError, match="unknown model family 'llama'"):
        get_family("llama")


@pytest.mark.parametrize("name", NAMES)
def test_placeholder_count_is_the_familys_and_the_encoders(name, request, tmp_path):
    """The processor expands the placeholder to ``Family.audio_tokens`` tokens, and the encoder gives as many
    embeddings (the model merges them one to one), for clip lengths around the frame and pooling boundaries."""
    from r1_aqa.audio import load_audio
    from r1_aqa.families.loading import load_model, load_processor
    from r1_aqa.prompts import build_messages, format_prompt

    directory = request.getfixturevalue(FIXTURES[name])
    family, processor = family_of(directory), load_processor(directory)
    model = load_model(directory, device="cpu")
    audio_id = processor.tokenizer.convert_tokens_to_ids(family.audio_token)
    text = processor.apply_chat_template(build_messages(format_prompt("Which tone?", ["low", "high"])),
                                         add_generation_prompt=True, tokenize=False)
    assert text.count(family.audio_token) == 1
    for seconds in (0.02, 0.55, 1.0, 1.013, 2.37):
        clip = load_audio(write_tone(tmp_path / f"{seconds}.wav", seconds=seconds))
        enc = processor(text=[text], audio=[clip], sampling_rate=16_000, return_tensors="pt")
        count = int((enc["input_ids"] == audio_id).sum())
        assert count == family.audio_tokens(len(clip)), (seconds, count, family.audio_tokens(len(clip)))
        with torch.no_grad():
            embeds = model(**enc).logits  # raises where the counts part (placeholders vs audio embeddings)
        assert embeds.shape[1] == enc["input_ids"].shape[1]


@pytest.mark.parametrize("name", NAMES)
def test_eval_hf_reads_every_family(name, request, tmp_path):
    from r1_aqa.evaluate.predict import evaluate
    from r1_aqa.evaluate.benchmarks import load_items

    parquet = make_parquet(tmp_path, n=2)
    records = evaluate(load_items("mmau", parquet), request.getfixturevalue(FIXTURES[name]), tmp_path / "pred.json",
                       benchmark="mmau", data=parquet, max_new_tokens=4)
    assert [r["id"] for r in records] == ["q0", "q1"] and all(isinstance(r["model_response"], str) for r in records)


@pytest.mark.parametrize("name", HUB_NAMED)
def test_trainer_refuses_a_prompt_whose_placeholders_are_not_its_clips_tokens(name, request, tmp_path, monkeypatch):
    """Where the processor and the family's rule part (audio dropped or shifted; the model raises on neither), the
    first rollout stops with the counts."""
    trainer = make_trainer(request.getfixturevalue(FIXTURES[name]), make_parquet(tmp_path), tmp_path / "out",
                           max_steps=1)
    rule = trainer.family.audio_tokens
    monkeypatch.setattr(trainer.family, "audio_tokens", lambda n, window=30: rule(n, window) - 1)
    with pytest.raises(RuntimeError, match=rf"expanded a 1\.\d+ s clip to \d+ audio tokens; the {trainer.family.title} "
                                           r"encoder gives \d+"):
        trainer.train()


def test_af3_tiny_model_is_the_hubs_layout(tiny_af3_dir):
    """Hub names (vLLM's), the transformers class, ``<sound>``; every tensor loads from the file."""
    from safetensors.torch import load_file

    from r1_aqa.families.loading import load_model

    family = family_of(tiny_af3_dir)
    assert family.name == "audioflamingo3"
    config = json.loads((tiny_af3_dir / "config.json").read_text())
    assert config["architectures"] == ["AudioFlamingo3ForConditionalGeneration"]
    model = load_model(tiny_af3_dir, device="cpu")
    saved = load_file(str(tiny_af3_dir / "model.safetensors"))
    assert hub_names(model, family) == set(saved)
    assert {n.split(".")[0] for n in saved} == {"audio_tower", "multi_modal_projector", "language_model"}
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[family.checkpoint_name(name)]), name


def _fresh_process_checksum(folder) -> float:
    code = ("import sys; from r1_aqa.families.loading import load_model; m = load_model(sys.argv[1], device='cpu'); "
            "print(sum(float(p.double().sum()) for p in m.state_dict().values()))")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", HUB_NAMED)
def test_grpo_trains_every_audio_tensor_and_saves_hub_names(name, request, tmp_path):
    """β > 0: every trainable tensor of the audio tower and projector changes, every frozen one stays; the checkpoint
    is saved under the hub's names (not transformers 5.17's ``language_model.model.model.*``) and reloads, the same,
    in a fresh process."""
    directory = request.getfixturevalue(FIXTURES[name])
    out = tmp_path / "out"
    trainer = make_trainer(directory, make_parquet(tmp_path), out, save_strategy="steps", save_steps=2)
    assert trainer.ref_model is not None
    unused = unused_audio_params(trainer)
    assert not unused, unused
    before = audio_params(trainer.model)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad and n in before}
    assert len(trainable) >= 30 and any("multi_modal_projector" in n for n in trainable)
    trainer.train()
    after = audio_params(trainer.model)
    unchanged = [n for n in trainable if torch.equal(before[n], after[n])]
    assert not unchanged, unchanged
    changed_frozen = [n for n in set(before) - trainable if not torch.equal(before[n], after[n])]
    assert not changed_frozen, changed_frozen
    assert any("kl" in e for e in trainer.state.log_history)
    checkpoint = out / "checkpoint-2"
    family = family_of(directory)
    assert weight_names(checkpoint) == hub_names(trainer.model, family)
    expected = sum(float(p.double().sum()) for p in trainer.model.state_dict().values())
    assert _fresh_process_checksum(checkpoint) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", HUB_NAMED)
def test_model_built_from_its_config_still_saves_hub_names(name, request, tmp_path):
    """transformers 5.17 saves an Audio Flamingo 3 or Voxtral built from its config (not ``from_pretrained``) under
    ``language_model.model.model.*``, which vLLM rejects: the trainer's checkpoint is under the hub's names anyway."""
    from transformers import AutoConfig

    from r1_aqa.families.loading import load_model

    directory = request.getfixturevalue(FIXTURES[name])
    family = family_of(directory)
    model = family.model_class()(AutoConfig.from_pretrained(directory))
    model.load_state_dict(load_model(directory, device="cpu").state_dict())
    model.config._name_or_path = str(directory)
    model.save_pretrained(tmp_path / "plain")
    assert any(n.startswith("language_model.model.model.") for n in weight_names(tmp_path / "plain"))
    trainer = make_trainer(directory, make_parquet(tmp_path), tmp_path / "out", model=model, beta=0.0)
    trainer.save_model(str(tmp_path / "saved"))
    assert weight_names(tmp_path / "saved") == hub_names(model, family)
    assert _fresh_process_checksum(tmp_path / "saved") == pytest.approx(
        sum(float(p.double().sum()) for p in model.state_dict().values()), rel=1e-12)


@pytest.mark.parametrize("name", HUB_NAMED)
def test_sft_and_eval_hf(name, request, tmp_path):
    """sft learns (the target and the family's end of turn) on the tiny model, saves under the hub's names; eval (hf)
    reads the checkpoint."""
    from r1_aqa.evaluate.benchmarks import load_items
    from r1_aqa.evaluate.predict import evaluate
    from r1_aqa.training.sft import parse_sft_args, sft

    directory = request.getfixturevalue(FIXTURES[name])
    parquet = make_parquet(tmp_path, n=4)
    out = tmp_path / "sft"
    trainer = sft(*parse_sft_args(sft_argv(directory, parquet, out, "--max_steps", "20", "--learning_rate", "1e-2",
                                           "--per_device_train_batch_size", "4")))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < 0.5 * losses[0], losses
    assert weight_names(out) == hub_names(trainer.model, family_of(directory))
    del trainer
    records = evaluate(load_items("mmau", parquet), out, tmp_path / "pred.json", benchmark="mmau", data=parquet,
                       max_new_tokens=12)
    assert len(records) == 4 and all(r["model_response"] for r in records)


def test_voxtral_tiny_model_is_the_hubs_layout(tiny_voxtral_dir, tmp_path):
    """Hub names, the transformers class, a tekken tokenizer with ``[AUDIO]`` at the hub's id, Mistral's instruct
    format, the processor saved as the hub's class; the encoder's positions are the sinusoid vLLM recomputes and stay
    frozen in a trainer."""
    from safetensors.torch import load_file

    from r1_aqa.families import sinusoids
    from r1_aqa.families.loading import load_processor
    from r1_aqa.prompts import chat_prompt

    family = family_of(tiny_voxtral_dir)
    assert family.name == "voxtral" and (tiny_voxtral_dir / "tekken.json").is_file()
    config = json.loads((tiny_voxtral_dir / "config.json").read_text())
    assert config["architectures"] == ["VoxtralForConditionalGeneration"]
    saved = load_file(str(tiny_voxtral_dir / "model.safetensors"))
    assert {n.split(".")[0] for n in saved} == {"audio_tower", "multi_modal_projector", "language_model"}
    positions = saved["audio_tower.embed_positions.weight"]
    assert torch.allclose(positions, sinusoids(*positions.shape), atol=1e-6)
    processor = load_processor(tiny_voxtral_dir)
    assert processor.tokenizer.convert_tokens_to_ids("[AUDIO]") == config["audio_token_id"] == 24
    assert chat_prompt(processor, "Which tone?") == "<s>[INST][BEGIN_AUDIO][AUDIO]Which tone?[/INST]"
    processor.save_pretrained(tmp_path / "saved")  # as checkpoints save it: the hub's processor class
    saved_processor = json.loads((tmp_path / "saved" / "processor_config.json").read_text())
    assert saved_processor["processor_class"] == "VoxtralProcessor"
    trainer = make_trainer(tiny_voxtral_dir, make_parquet(tmp_path), tmp_path / "out")
    tower = trainer.model.model.audio_tower
    assert not tower.embed_positions.weight.requires_grad and tower.conv1.weight.requires_grad


def test_voxtral_sft_targets_end_with_mistrals_end_of_turn(tiny_voxtral_dir, tmp_path):
    """The sft labels end with ``</s>`` (Voxtral's end of turn, one control token), not ChatML's ``<|im_end|>``."""
    from r1_aqa.families.loading import load_processor
    from r1_aqa.training.sft import sft_dataset
    from r1_aqa.training.sft_trainer import AudioSFTCollator

    processor = load_processor(tiny_voxtral_dir, padding_side="right")
    rows = list(sft_dataset(str(make_parquet(tmp_path)), "default"))[:2]
    batch = AudioSFTCollator(processor, end_of_turn=family_of(tiny_voxtral_dir).end_of_turn)(rows)
    for labels in batch["labels"]:
        target = labels[labels != -100].tolist()
        assert target[-1] == processor.tokenizer.eos_token_id and target.count(target[-1]) == 1


def test_vllm_needs_voxtrals_mistral_format(tiny_voxtral_dir, tmp_path):
    """vLLM loads Voxtral from the Mistral-format files the tiny model (and every saved checkpoint) holds beside the
    HF ones; a directory without them is refused, naming them, before any engine starts."""
    import shutil

    from r1_aqa.evaluate.engines import VLLMEngine

    assert {"params.json", "consolidated.safetensors", "tekken.json"} <= {p.name for p in tiny_voxtral_dir.iterdir()}
    directory = tmp_path / "hf-only"
    shutil.copytree(tiny_voxtral_dir, directory, ignore=shutil.ignore_patterns("params.json", "consolidated.*"))
    with pytest.raises(ValueError, match=r"no params\.json, consolidated\.safetensors: vLLM loads Voxtral only in the "
                                         r"Mistral format.*--engine hf"):
        make_trainer(directory, make_parquet(tmp_path), tmp_path / "out", use_vllm=True, vllm_mode="colocate")
    with pytest.raises(ValueError, match="--engine hf"):
        VLLMEngine(directory)


@pytest.mark.vllm
def test_voxtral_mistral_format_is_what_vllm_maps_back(tiny_voxtral_dir):
    """Every tensor of the Mistral format (the tiny model's ``consolidated.safetensors`` and the weight sync: one map)
    goes back to its HF tensor through vLLM's own Mistral loader mapping: the LM's names and the rotary order of its
    query and key rows (vLLM's ``maybe_remap_mistral``), the encoder's names (``mistral_remapping``), the projector's
    (``load_weights``' rules); each HF tensor but the sinusoids vLLM computes is used once."""
    from types import SimpleNamespace

    from safetensors.torch import load_file
    from vllm.model_executor.models.mistral import MistralForCausalLM
    from vllm.model_executor.models.voxtral import VoxtralEncoderModel

    from r1_aqa.families.voxtral import COMPUTED_BY_VLLM
    from r1_aqa.families.loading import load_model

    family = get_family("voxtral")
    model = load_model(tiny_voxtral_dir, device="cpu")
    mistral = dict(family.vllm_weights(model.config, model.state_dict().items()))
    saved = load_file(str(tiny_voxtral_dir / "consolidated.safetensors"))
    assert saved.keys() == mistral.keys() and all(torch.equal(saved[k], mistral[k]) for k in saved)
    perturb_params(model, ".", scale=0.1, seed=0)  # no two tensors alike (the norms start as ones)
    hub = {family.checkpoint_name(n): t for n, t in model.state_dict().items()}
    mistral = dict(family.vllm_weights(model.config, model.state_dict().items()))
    text = model.config.text_config
    lm = SimpleNamespace(config=text, mistral_mapping=MistralForCausalLM.mistral_mapping)
    # vLLM's names of the HF encoder's layers (its Whisper layers keep fc1/fc2 under mlp.).
    whisper = [(r"audio_tower\.layers\.(\d+)\.fc([12])\.", r"whisper_encoder.layers.\1.mlp.fc\2."),
               (r"audio_tower\.", "whisper_encoder.")]
    projector = {"audio_language_projection.0.weight": "multi_modal_projector.linear_1.weight",
                 "audio_language_projection.2.weight": "multi_modal_projector.linear_2.weight"}
    used = []
    for name, tensor in mistral.items():
        inner = name.removeprefix("mm_whisper_embeddings.")
        if inner.startswith("whisper_encoder."):
            for pattern, replacement in VoxtralEncoderModel.mistral_remapping:
                if re.fullmatch(pattern, inner):
                    inner = re.sub(pattern, replacement, inner)
            hf = next(n for n in hub if _renamed(n, whisper) == inner)
        elif inner in projector:
            hf = projector[inner]
        else:  # the LM (its embeddings sit under mm_whisper_embeddings. in the Mistral format)
            vllm_name, tensor = MistralForCausalLM.maybe_remap_mistral(lm, inner, tensor)
            hf = "language_model." + vllm_name
        assert torch.equal(tensor, hub[hf]), (name, hf)
        used.append(hf)
    assert sorted(used) == sorted(set(hub) - {COMPUTED_BY_VLLM})


def _renamed(name: str, rules: list[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        name = re.sub(pattern, replacement, name)
    return name


@pytest.mark.parametrize("name", NAMES)
def test_vllm_tensor_parallel_must_divide_the_audio_encoders_heads(name, request, tmp_path):
    """Colocated vLLM with tensor parallelism is refused before any engine starts where the size does not divide the
    attention heads of the audio encoder (or of the LM), naming the numbers; a divisor passes the check."""
    from r1_aqa.families.loading import load_model
    from r1_aqa.families.vllm_audio import check_tensor_parallel

    directory = request.getfixturevalue(FIXTURES[name])
    config = load_model(directory, device="cpu").config
    check_tensor_parallel(config, 2)
    with pytest.raises(ValueError, match=r"vllm_tensor_parallel_size 3 does not divide the audio encoder's 2 attention "
                                         r"heads or the language model's 2 attention heads: choose a divisor of 2"):
        make_trainer(directory, make_parquet(tmp_path), tmp_path / "out", use_vllm=True, vllm_mode="colocate",
                     vllm_tensor_parallel_size=3)


@pytest.mark.parametrize("name", ["qwen2-audio", "audioflamingo3"])
def test_grpo_trains_the_position_table_only_where_it_is_not_the_fixed_sinusoid(name, request, tmp_path):
    """``from_pretrained`` leaves a Whisper-style encoder's ``embed_positions`` trainable, and the forward gives it a
    gradient, so GRPO trains it (the tiny model's random table); holding the sinusoid of the released models it is
    frozen by ``Family.prepare_model`` and the optimizer never sees it."""
    from r1_aqa.families import sinusoids
    from r1_aqa.families.loading import load_model

    directory = request.getfixturevalue(FIXTURES[name])
    parquet = make_parquet(tmp_path)
    for fixed in (False, True):
        model = load_model(directory, device="cpu")
        table = model.model.audio_tower.embed_positions.weight
        assert table.requires_grad  # as from_pretrained leaves it
        if fixed:
            with torch.no_grad():
                table.copy_(sinusoids(*table.shape).to(torch.bfloat16))  # a bf16 checkpoint's sinusoid
        trainer = make_trainer(directory, parquet, tmp_path / f"out-{fixed}", model=model)
        trained = {p for group in trainer.create_optimizer().param_groups for p in group["params"]}
        assert (table in trained) is not fixed and table.requires_grad is not fixed
        if not fixed:
            assert "model.audio_tower.embed_positions.weight" not in unused_audio_params(trainer)  # it has a gradient
