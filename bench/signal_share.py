"""How often a recipe's optimizer steps have little signal: the share of a step's groups whose completions do not all
score alike, and how often ``min_signal_share`` scales a step down; prints a markdown table.

    python bench/signal_share.py                   # R1-AQA (16 groups of 8 per step) and AudioMCQ (8 groups of 8)
    python bench/signal_share.py --groups 4 --generations 8 --accuracy 0.3,0.9

An estimate, not a measurement of a real run: each item's chance of a right completion is drawn from a Beta
distribution with the given mean training accuracy and concentration (low concentration: many items always right or
always wrong, as in a trained policy; high: every item near the mean), a group has signal unless its completions
are all right or all wrong, and a step's share is the mean over its groups. A run's own share is logged as
``signal/share`` (and ``frac_reward_zero_std`` is one minus it, without dynamic sampling).
"""

from __future__ import annotations

import argparse

import numpy as np

RECIPES = {"R1-AQA": 16, "AudioMCQ": 8}  # groups of 8 completions per optimizer step (reference.md)


def step_shares(groups: int, generations: int, accuracy: float, concentration: float, steps: int,
                rng: np.random.Generator) -> np.ndarray:
    """The share of groups with signal in each of ``steps`` simulated steps."""
    a, b = accuracy * concentration, (1 - accuracy) * concentration
    p = rng.beta(a, b, size=(steps, groups))
    right = rng.binomial(generations, p)
    return ((right > 0) & (right < generations)).mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=None, help="groups per step (default: each recipe's)")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--accuracy", default="0.5,0.7,0.8,0.9", help="mean training accuracies")
    parser.add_argument("--concentration", default="1,4", help="Beta concentrations of item accuracy")
    parser.add_argument("--min-signal-share", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    recipes = {f"{args.groups} groups": args.groups} if args.groups else RECIPES
    print(f"| recipe | groups/step | mean accuracy | concentration | mean share | steps scaled down (share < "
          f"{args.min_signal_share}) | steps without signal |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, groups in recipes.items():
        for accuracy in map(float, args.accuracy.split(",")):
            for concentration in map(float, args.concentration.split(",")):
                shares = step_shares(groups, args.generations, accuracy, concentration, args.steps, rng)
                print(f"| {name} | {groups} | {accuracy:.2f} | {concentration:g} | {shares.mean():.2f} | "
                      f"{(shares < args.min_signal_share).mean():.1%} | {(shares == 0).mean():.2%} |")


if __name__ == "__main__":
    main()
