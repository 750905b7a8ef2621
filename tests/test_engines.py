"""The eval engines never generate the audio placeholder (GRPO never samples it, so nothing holds its logit down)."""

from __future__ import annotations

import copy

from helpers import favour_token, write_tone


def test_hf_engine_never_generates_the_audio_placeholder(tiny_model_dir, tmp_path):
    from r1_aqa.audio import load_audio
    from r1_aqa.evaluate.engines import HFEngine, hf_batch
    from r1_aqa.families.loading import AUDIO_TOKEN
    from r1_aqa.prompts import chat_prompt

    engine = HFEngine(tiny_model_dir, max_new_tokens=6, batch_size=2, device="cpu")
    audio_id = engine.processor.tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    favour_token(engine.model, audio_id)  # the placeholder is the greedy pick at about half the positions
    clips = [load_audio(str(write_tone(tmp_path / f"{i}.wav", freq=300.0 * (i + 1)))) for i in range(2)]
    inputs = hf_batch(engine.processor, [chat_prompt(engine.processor, f"Question {i}?") for i in range(2)], clips)
    unguarded = copy.deepcopy(engine.generation_config)
    unguarded.suppress_tokens = None
    assert audio_id in engine.model.generate(**inputs, generation_config=unguarded).tolist()[0][-6:]
    generated = engine.model.generate(**inputs, generation_config=engine.generation_config)[:, -6:]
    assert audio_id not in generated.flatten().tolist()
    assert all(engine.generate([f"Question {i}?" for i in range(2)], clips))  # not placeholders decoded to ""
