"""Every shipped recipe starts: it parses, and each backend it reports to is importable here and installed by the
README's GPU line; the colocate script keeps the user's flags."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from helpers import ROOT, make_parquet

from r1_aqa.cli import main

RECIPES = sorted([*(ROOT / "examples/r1_aqa/recipes").rglob("*.yaml"), *(ROOT / "src/r1_aqa/recipes").glob("*.yaml")])
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio",
            "comet_ml": "comet-ml", "clearml": "clearml"}  # report_to backend -> the package that provides it


def _parse(recipe: Path):
    from r1_aqa.training.sft import parse_sft_args
    from r1_aqa.training.train import parse_trl_args

    parse = parse_sft_args if recipe.name.startswith(("sft", "tiny_sft", "demo_sft")) else parse_trl_args
    return parse(["--config", str(recipe), "--use_cpu", "true"])  # bf16 recipes are checked against the devices


def _gpu_line_packages() -> set[str]:
    """The packages the README's GPU install line brings beyond the core dependencies."""
    readme = (ROOT / "README.md").read_text()
    extras = re.search(r"GPU: install torch for your CUDA, then `pip install -e \"\.\[([a-z,]+)\]\"`", readme).group(1)
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {re.split(r"[<>=\[ ]", dep)[0] for extra in extras.split(",") for dep in optional[extra]}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recipe_reports_to_an_installed_backend(recipe):
    from transformers.integrations import get_reporting_integration_callbacks

    _, training_args, _ = _parse(recipe)
    backends = [b for b in training_args.report_to if b != "none"]
    for callback in get_reporting_integration_callbacks(backends):
        callback()  # raises "...Callback requires ... to be installed" where the backend is missing
    missing = [b for b in backends if PACKAGES.get(b, b) not in _gpu_line_packages()]
    assert not missing, f"{recipe.name} reports to {missing}, which the README's GPU line does not install"


def test_a_run_reporting_to_tensorboard_starts_and_writes_events(tiny_model_dir, tmp_path):
    recipe = ROOT / "examples/r1_aqa/recipes/tiny_grpo.yaml"
    out = tmp_path / "out"
    assert main(["train", "--config", str(recipe), "--model_name_or_path", str(tiny_model_dir), "--dataset_path",
                 str(make_parquet(tmp_path)), "--output_dir", str(out), "--max_steps", "1", "--save_strategy", "no",
                 "--report_to", "tensorboard"]) == 0
    assert list((out / "runs").rglob("events.out.tfevents.*"))


def test_colocate_script_keeps_the_users_flags():
    from r1_aqa.training.train import parse_trl_args

    spec = importlib.util.spec_from_file_location("train_colocate", ROOT / "examples/r1_aqa/train_colocate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, args, _ = parse_trl_args(module.colocate_argv(["--use_cpu", "true", "--vllm_gpu_memory_utilization", "0.55",
                                                      "--max_steps", "7"]))
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization, args.max_steps) == (
        True, "colocate", 0.55, 7)
    _, args, _ = parse_trl_args(module.colocate_argv(["--use_cpu", "true"]))
    assert (args.use_vllm, args.vllm_gpu_memory_utilization, args.max_steps) == (True, 0.3, 1000)  # the recipe's
