"""The judge: one component that grades free-form answers for training rewards and for evaluation.

* :mod:`.grading`: the prompts a judge is asked (an answer against a reference answer; one rubric line) and how its
  reply is read (the grade, and what an unparsable reply counts as).
* :mod:`.backends`: where the judge and the embedder run: a local transformers model (greedy unless asked), or an
  OpenAI-compatible HTTP endpoint (``vllm serve`` or a hosted judge) with timeouts and bounded retries.
* :mod:`.cache`: an on-disk cache keyed by the exact judge input (model identity, messages, sampling settings), so a
  rerun or a resumed run pays nothing twice.
* :mod:`.core`: :class:`~.core.Judge`, the batched, cached front of both backends (chat completions and embeddings),
  and the embedding matcher (an answer's nearest option or reference by cosine similarity).
* :mod:`.tiny`: ``r1-aqa tiny-judge DIR``, a tiny offline text LM that stands in for a judge and an embedder.

Nothing here imports torch at module level.
"""
