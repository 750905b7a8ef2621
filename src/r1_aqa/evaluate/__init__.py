"""Evaluation: generation engines, the ``eval`` command and its prediction loop, official-compatible scoring and
reports."""
