"""Evaluation: generation engines, the ``eval`` runner, official-compatible scoring and reports."""
