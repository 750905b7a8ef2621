"""Trainer callbacks for runs that last hours: preemption, non-finite updates, a one-line console, ``metrics.jsonl``.

All are ``transformers.TrainerCallback`` s; :func:`install` puts them on a trainer (GRPO or SFT) in place of
transformers' progress bar and log printer. The trainer's own loop does the work: a callback only sets
``control.should_save`` / ``control.should_training_stop`` or drops a step's gradients before the optimizer.

* :class:`Preemption`: SIGTERM or SIGINT lets the current optimizer step finish, then a full checkpoint is saved
  (model, optimizer, scheduler, RNG, trainer state) and training stops; the stage then exits non-zero
  (:class:`TrainingInterrupted`) saying how to resume. All processes stop at the same step (the request is reduced
  over processes every step). A second signal interrupts at once.
* :class:`NonFiniteGuard`: a step whose gradients hold a NaN or inf (as a non-finite loss makes them) is not applied:
  the gradients are dropped before ``optimizer.step`` (the scheduler still advances); each skip is counted and
  logged (``train/nonfinite_skipped``), and ``max_nonfinite_steps`` in a row stop the run naming the step.
  Under DeepSpeed the optimizer steps inside ``backward``, so the guard cannot skip there; it is not installed.
* :class:`RunConsole`: one progress bar whose postfix holds the step time, reward, accuracy reward, KL, completion
  length, the share of groups with all-equal rewards (``nosig``) and the completion entropy (``ent``) (or the loss
  for SFT) and the accuracy per right answer (``acc_by_answer``, for tasks with few answers), with the ETA; every log is appended to ``OUTPUT_DIR/metrics.jsonl`` (cut back to the resumed step on
  resume) and ``r1-aqa plot`` runs at the end.
* :class:`SignalWatch`: says once, in plain words, when GRPO has lost its signal (see :data:`NO_SIGNAL_SHARE`).
* :class:`SolvedStop`: ends GRPO once the task is solved (the accuracy reward at or above a threshold in a few logs
  in a row), so a run that has learned stops spending rollouts on groups that are all right.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..plot import BY_ANSWER, CHANCE

METRICS_FILE = "metrics.jsonl"
# Console postfix: label -> log keys tried in order (GRPO first, then SFT).
_POSTFIX = {
    "reward": ("reward",),
    "acc": ("rewards/accuracy_reward/mean",),
    "kl": ("kl",),
    "len": ("completions/mean_length",),
    "nosig": ("frac_reward_zero_std",),
    "ent": ("entropy",),
    "loss": ("loss",),
}


class TrainingInterrupted(RuntimeError):
    """Training stopped early on purpose (a signal, or too many non-finite steps); ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
        self.trainer = None  # set by the stage that ran it, so the CLI can end training cleanly


class Preemption(TrainerCallback):
    """Save a full checkpoint and stop after the current optimizer step on SIGTERM/SIGINT."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signal: int | None = None  # the signal that stopped training, once every process knows it
        self._received: int | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self._received is not None:  # a second signal: stop now, the default way
            self._restore()
            signal.raise_signal(signum)
            return
        self._received = signum
        print(f"\nr1-aqa: {signal.Signals(signum).name} received: finishing this step, then saving a checkpoint "
              "(signal again to stop at once)", file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.signal = self._received = None
        if threading.current_thread() is threading.main_thread():  # Python runs signal handlers there only
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def on_step_end(self, args, state, control, **kwargs):
        received = self._received or 0
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([received], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            received = int(flag.item())
        if received:
            self.signal = received
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()

    def interrupted(self, output_dir: str, step: int) -> TrainingInterrupted | None:
        """The error a stage raises after ``trainer.train`` returned because of a signal, else None."""
        if self.signal is None:
            return None
        name = signal.Signals(self.signal).name
        return TrainingInterrupted(
            f"{name} at step {step}: saved {Path(output_dir) / f'checkpoint-{step}'} (model, optimizer, scheduler, "
            "RNG, trainer state); continue with the same command plus --resume_from_checkpoint last",
            128 + self.signal)


class NonFiniteGuard(TrainerCallback):
    """Skip updates whose gradients are not finite; stop after ``max_in_a_row`` of them in a row."""

    def __init__(self, max_in_a_row: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.skipped = 0
        self.in_a_row = 0

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        device = grads[0].device
        if bool(torch.isfinite(torch.stack([g.detach().float().norm().to(device) for g in grads])).all()):
            self.in_a_row = 0
            return
        step = state.global_step + 1  # the step being taken
        for p in model.parameters():
            p.grad = None  # the optimizer leaves parameters without a gradient (and their moments) untouched
        self.skipped += 1
        self.in_a_row += 1
        print(f"r1-aqa: step {step}: non-finite gradients, update skipped ({self.in_a_row} in a row, "
              f"{self.skipped} in all)", file=sys.stderr, flush=True)
        if self.in_a_row >= self.max_in_a_row:
            raise TrainingInterrupted(
                f"step {step}: {self.in_a_row} updates in a row had non-finite gradients (NaN/inf loss or "
                f"gradient norm); stopping (max_nonfinite_steps={self.max_in_a_row}). Lower the learning rate or "
                "check the data; the last checkpoint is unaffected", 1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:  # training logs only
            logs["train/nonfinite_skipped"] = self.skipped


class RunConsole(TrainerCallback):
    """One progress bar with the run's key numbers; every log line to ``metrics.jsonl``; plots at the end."""

    def __init__(self, output_dir: str | Path, chance: float | None = None) -> None:
        self.path = Path(output_dir) / METRICS_FILE
        self.chance = chance  # the accuracy of a random option, for the plots (written to metrics.jsonl)
        self.bar = None
        self._last: tuple[float, int] | None = None
        self._postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from tqdm.auto import tqdm

        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_after(self.path, state.global_step)  # a resumed run rewrites what followed its checkpoint
        if self.chance is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, CHANCE: self.chance}) + "\n")
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True,
                        desc="train", bar_format="{desc} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}",
                        disable=bool(args.disable_tqdm))
        self._last = (time.monotonic(), state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is None:
            return
        now = time.monotonic()
        t0, step0 = self._last
        if state.global_step > step0:
            self._postfix["s/step"] = f"{(now - t0) / (state.global_step - step0):.2f}"
        self._last = (now, state.global_step)
        self.bar.update(state.global_step - self.bar.n)
        self.bar.set_postfix(self._postfix, refresh=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")
        for label, keys in _POSTFIX.items():
            value = next((logs[k] for k in keys if isinstance(logs.get(k), (int, float))), None)
            if value is not None and (label != "loss" or "reward" not in logs):
                self._postfix[label] = f"{value:.3g}" if math.isfinite(value) else str(value)
        by_answer = {k.removeprefix(BY_ANSWER): v for k, v in logs.items() if k.startswith(BY_ANSWER)}
        if by_answer:  # which answers the policy has learned: a merged or one-answer run shows here
            self._postfix["acc_by_answer"] = ",".join(f"{a}:{v:.2f}" for a, v in sorted(by_answer.items()))
        if self.bar is not None:
            self.bar.set_postfix(self._postfix, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if state.is_world_process_zero and self.path.exists():
            from ..plot import plot_run

            try:
                paths = plot_run(self.path.parent)
            except ValueError as e:  # e.g. fewer steps than logging_steps: nothing logged to plot
                print(f"r1-aqa: no training curves: {e}", file=sys.stderr)
                return
            print(f"r1-aqa: training curves: {', '.join(str(p) for p in paths)}", file=sys.stderr)


# GRPO has lost its signal when, in NO_SIGNAL_LOGS logs in a row, at least NO_SIGNAL_SHARE of the groups had
# all-equal rewards (TRL's frac_reward_zero_std: zero advantages, only the KL term acts) while the accuracy reward
# (when the run has one) stayed under SOLVED_ACCURACY: all-equal groups of a solved task are success, not collapse.
# On the demo a collapsed run sits at 0.95-1.0 for hundreds of steps; a learning one stays under 0.6 until solved.
NO_SIGNAL_SHARE = 0.9
NO_SIGNAL_LOGS = 5
SOLVED_ACCURACY = 0.9
_ACCURACY = "rewards/accuracy_reward/mean"


class SignalWatch(TrainerCallback):
    """Print once when most groups have carried no signal for :data:`NO_SIGNAL_LOGS` logs, with what to try."""

    def __init__(self) -> None:
        self.streak: list[tuple[int, float, float | None]] = []  # (step, share, accuracy) of the current stretch
        self.run: list[tuple[int, float, float | None]] = []  # every log of the run
        self.said = False
        self.dynamic_sampling = False  # the run logs dynamic sampling's metrics: it is on

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        share = logs.get("frac_reward_zero_std")
        self.dynamic_sampling = self.dynamic_sampling or "dynamic_sampling/extra_rollouts" in logs
        if not isinstance(share, (int, float)):
            return
        accuracy = logs.get(_ACCURACY)
        self.run.append((state.global_step, share, accuracy))
        if self.said:
            return
        solved = isinstance(accuracy, (int, float)) and accuracy >= SOLVED_ACCURACY
        if share < NO_SIGNAL_SHARE or solved:
            self.streak = []
            return
        self.streak.append((state.global_step, share, accuracy))
        if len(self.streak) < NO_SIGNAL_LOGS:
            return
        self.said = True
        if state.is_world_process_zero:
            print(no_signal_message(self.streak, self.dynamic_sampling), file=sys.stderr, flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        """A run too short for a stretch of :data:`NO_SIGNAL_LOGS` logs that had almost no signal throughout says so
        at its end: it has not learned, and (with ``min_signal_share``) has barely moved."""
        if self.said or not self.run or not state.is_world_process_zero:
            return
        share = sum(s for _, s, _ in self.run) / len(self.run)
        accuracies = [a for _, _, a in self.run if a is not None]
        if share < NO_SIGNAL_SHARE or (accuracies and max(accuracies) >= SOLVED_ACCURACY):
            return
        accuracy = f" (accuracy reward {sum(accuracies) / len(accuracies):.4f})" if accuracies else ""
        print(f"\nr1-aqa: this GRPO run had almost no learning signal: {share:.0%} of its groups scored all their "
              f"completions alike{accuracy}, so it has not learned and the model is close to where it started (a "
              "step moves in proportion to its share of groups with signal: min_signal_share). GRPO needs "
              "sampled completions that sometimes score: start from a model that answers in the format when "
              "sampling (a longer warm start), or sample at a lower temperature.", file=sys.stderr, flush=True)


class SolvedStop(TrainerCallback):
    """Stop training when the accuracy reward's logged mean is at least ``accuracy`` in ``logs`` logs in a row."""

    def __init__(self, accuracy: float, logs: int) -> None:
        if not 0 < accuracy <= 1 or logs < 1:
            raise ValueError(f"stop_at_accuracy must lie in (0, 1] and stop_after_logs be >= 1, got {accuracy}, {logs}")
        self.accuracy, self.logs = accuracy, logs
        self.streak: list[int] = []  # steps of the current run of solved logs
        self.stopped_at: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        value = (logs or {}).get(_ACCURACY)
        if not isinstance(value, (int, float)):
            return
        self.streak = self.streak + [state.global_step] if value >= self.accuracy else []
        if len(self.streak) >= self.logs and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_training_stop = True
            if state.is_world_process_zero:
                print(f"\nr1-aqa: the task is solved: accuracy reward >= {self.accuracy} in {self.logs} logs in a row "
                      f"(steps {self.streak[-self.logs]}-{self.streak[-1]}); stopping at step {state.global_step} "
                      "(stop_at_accuracy)", file=sys.stderr, flush=True)
        return control


def no_signal_message(streak: list[tuple[int, float, float | None]], dynamic_sampling: bool = False) -> str:
    """The plain-words warning for a stretch of logs ``(step, share of all-equal groups, accuracy reward)``;
    ``dynamic_sampling``: it is on already (and found too few groups with signal within its cap)."""
    first, last = streak[0][0], streak[-1][0]
    share = sum(s for _, s, _ in streak) / len(streak)
    accuracies = [a for _, _, a in streak if a is not None]
    accuracy = f", accuracy reward {sum(accuracies) / len(accuracies):.2f}" if accuracies else ""
    return (f"\nr1-aqa: GRPO has lost its learning signal: from step {first} to {last}, {share:.0%} of the groups "
            f"scored all their completions alike{accuracy}, so their advantages are zero and only the KL term moves "
            "the policy (it has likely settled on few answers). "
            + ("Dynamic sampling is on but found too few groups with signal within its cap. Try "
               if dynamic_sampling else "Try dynamic_sampling: true, ")
            + "sampling temperature with top_k, use_adaptive_entropy with an entropy_target, or a larger beta "
            "(docs/experiments.md).")


def _cut_after(path: Path, step: int) -> None:
    """Drop the lines of ``path`` logged after ``step`` (and a torn last line)."""
    if not path.exists():
        return
    from ..files import write_text

    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step:
            keep.append(line)
    write_text(path, "".join(f"{line}\n" for line in keep))


def install(trainer, max_nonfinite_steps: int, chance: float | None = None) -> Preemption:
    """Put the run callbacks on ``trainer`` in place of transformers' progress bar and log printer; ``chance``: the
    accuracy of a random option on the training set (the plots' chance line).

    Returns the :class:`Preemption` callback, whose :meth:`Preemption.interrupted` the stage checks after training.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cls in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(cls)
    preemption = Preemption()
    callbacks = [preemption, RunConsole(trainer.args.output_dir, chance), SignalWatch()]
    if max_nonfinite_steps > 0 and trainer.accelerator.state.deepspeed_plugin is None:
        callbacks.insert(0, NonFiniteGuard(max_nonfinite_steps))  # first: its log entry reaches report_to
    handler = trainer.callback_handler
    # callbacks that add entries to the logs (``adds_to_logs``) go first, so that the console, metrics.jsonl and the
    # report_to integrations see those entries
    adders = [c for c in handler.callbacks if getattr(c, "adds_to_logs", False)]
    for callback in adders:
        handler.callbacks.remove(callback)
    handler.callbacks[1:1] = adders + callbacks  # after DefaultFlowCallback, before the report_to integrations
    return preemption


class JudgeTiming(TrainerCallback):
    """The judge's share of the step time: each log gets ``judge/step_share`` (seconds the judge spent over the steps'
    wall time since the last log; the judge runs inside the reward step, once per generation batch), and the run ends
    with one line of totals (replies asked, cache hits, seconds, share)."""

    adds_to_logs = True

    def __init__(self, judge) -> None:
        self.judge = judge
        self._step_start = (0.0, 0.0)
        self._window = [0.0, 0.0]  # judge seconds, step seconds since the last log
        self._total = [0.0, 0.0]

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = (time.monotonic(), self.judge.stats.seconds)

    def on_step_end(self, args, state, control, **kwargs):
        t0, j0 = self._step_start
        spent = (self.judge.stats.seconds - j0, time.monotonic() - t0)
        for totals in (self._window, self._total):
            totals[0] += spent[0]
            totals[1] += spent[1]

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs and self._window[1] > 0:
            logs["judge/step_share"] = self._window[0] / self._window[1]
            self._window = [0.0, 0.0]

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self._total[1] > 0:
            stats = self.judge.stats
            print(f"r1-aqa train: judge: {stats.calls} replies asked, {stats.hits} from the cache, "
                  f"{self._total[0]:.1f} s = {100 * self._total[0] / self._total[1]:.1f}% of the step time",
                  file=sys.stderr)
