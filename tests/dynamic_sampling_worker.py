"""Process entry of the multi-process dynamic-sampling test (``test_dynamic_sampling.py``), started by ``torchrun``:

    torchrun --nproc_per_node 2 tests/dynamic_sampling_worker.py RECORD.json [r1-aqa train flags ...]

It runs ``r1-aqa train --dynamic_sampling true`` with a reward that is constant on rank 0's even-numbered prompts
(their groups carry no signal; rank 1's always do), so the ranks wish for different refills, and records on every rank each refill decision (the rank's own wish, the agreed value), the
ids each round scored, and the logged metrics; rank N writes its record to RECORD.json.N.
"""

from __future__ import annotations

import sys

import torch

from r1_aqa.training import dynamic_sampling
from r1_aqa.files import write_json
from r1_aqa.training.trainer import AudioGRPOTrainer

_decisions: list[list[int]] = []  # (this rank's wish, the agreed value) per refill decision
_rounds: list[list[str]] = []  # the ids each scoring round of this rank saw


def half_constant_reward(completions: list, id: list[str], **kwargs) -> list[float]:  # noqa: A002 (dataset column)
    """On rank 0, 1.0 for every completion of an even-numbered prompt (no signal); else each completion's position."""
    _rounds.append(list(id))
    planted = torch.distributed.get_rank() == 0
    return [1.0 if planted and int(i[1:]) % 2 == 0 else float(k) for k, i in enumerate(id)]


def _install(record_path: str) -> None:
    agreed_max, train = dynamic_sampling._agreed_max, AudioGRPOTrainer.train

    def recorded_agreed_max(value, device):
        agreed = agreed_max(value, device)
        _decisions.append([value, agreed])
        return agreed

    def recorded_train(self, *args, **kwargs):
        result = train(self, *args, **kwargs)
        rank = self.accelerator.process_index
        write_json(f"{record_path}.{rank}", {"decisions": _decisions, "rounds": _rounds,
                                             "log_history": self.state.log_history}, indent=None)
        return result

    dynamic_sampling._agreed_max = recorded_agreed_max
    AudioGRPOTrainer.train = recorded_train


if __name__ == "__main__":
    import dynamic_sampling_worker  # the module the reward is imported from by name, not this __main__ copy

    from r1_aqa.cli import main

    dynamic_sampling_worker._install(sys.argv[1])
    sys.exit(main(["train", *sys.argv[2:], "--dynamic_sampling", "true",
                   "--reward_funcs", "dynamic_sampling_worker.half_constant_reward"]))
