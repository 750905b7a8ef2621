"""Canary: AudioGRPOTrainer overrides private GRPOTrainer hooks of TRL 1.16; fail loudly when TRL changes them."""

from __future__ import annotations

import inspect

import pytest

RECORDED = {  # parameter names and defaults of the hooks as in trl 1.16.0
    "_generate_and_score_completions": "self, inputs",
    "_tokenize_prompts": "self, prompts",
    "_compute_loss": "self, model, inputs",
    "_generate_single_turn": "self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False",
    "_get_per_token_logps_and_entropies": (
        "self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, "
        "compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, pixel_attention_mask=None, "
        "spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None, mm_token_type_ids=None, "
        "image_position_ids=None"
    ),
}
# Calls the overrides rely on: where TRL calls each hook, and the shuffle/split that carries the audio feature rows.
RECORDED_CALLS = {
    "_generate": ["self._tokenize_prompts(prompts)", "self._generate_single_turn("],
    "_generate_and_score_completions": ["self._generate(prompts)", "self._get_per_token_logps_and_entropies("],
    "_compute_loss": ["self._get_per_token_logps_and_entropies("],
    "_prepare_inputs": ["self._generate_and_score_completions(generation_batch)", "shuffle_sequence_dict(",
                        "split_tensor_dict("],
    "__init__": ["model.config.image_token_id", "self.generation_kwargs = generation_kwargs"],
}


def _params(func) -> str:
    return ", ".join(
        name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}"
        for name, p in inspect.signature(func).parameters.items()
    )


def test_trl_version_is_the_one_the_overrides_were_written_for():
    import trl

    assert trl.__version__.startswith("1.16."), (
        f"trl {trl.__version__} is installed; AudioGRPOTrainer overrides private hooks of trl 1.16.* "
        "(see src/r1_aqa/training/trainer.py): re-check them against the new GRPOTrainer, then update this canary"
    )


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_overridden_hook_signature_unchanged(name):
    from trl import GRPOTrainer

    found = _params(getattr(GRPOTrainer, name))
    assert found == RECORDED[name], (
        f"GRPOTrainer.{name} changed signature:\n  recorded: ({RECORDED[name]})\n  now:      ({found})\n"
        f"AudioGRPOTrainer.{name} in src/r1_aqa/training/trainer.py must be re-checked against the new TRL code"
    )


@pytest.mark.parametrize("name", sorted(RECORDED_CALLS))
def test_hooks_are_still_called_where_the_overrides_expect(name):
    from trl import GRPOTrainer

    source = inspect.getsource(getattr(GRPOTrainer, name))
    missing = [call for call in RECORDED_CALLS[name] if call not in source]
    assert not missing, (
        f"GRPOTrainer.{name} no longer contains {missing}: the audio features may stop reaching generate or the "
        "log-prob passes; re-check src/r1_aqa/training/trainer.py against the new TRL code"
    )


def test_vllm_internals_used_for_weight_sync_exist():
    from trl.generation.vllm_generation import VLLMGeneration

    assert _params(VLLMGeneration._iter_named_params) == "self", "VLLMGeneration._iter_named_params changed"
    source = inspect.getsource(VLLMGeneration._init_vllm)
    assert "self.llm = LLM(" in source, "VLLMGeneration no longer builds a colocated `self.llm`"
