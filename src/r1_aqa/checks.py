"""Input checks that need no heavy import: they run before torch, transformers or TRL load, so that a bad command
line, recipe, dataset or model path fails in about a second with one line saying what to do.

``train`` and ``sft`` call :func:`check_stage_inputs` with their command line before TRL parses it; ``eval`` and
``train`` call :func:`check_model_path`. TRL's own parser is not used here: it needs TRL's config classes, whose import
(``transformers.TrainingArguments``: torch, transformers, peft) takes 7-8 s on a 2-core machine. So the field names
are read from the configs' source (:func:`source_fields`) and the flags by argparse, the parser TRL's
``HfArgumentParser`` extends, set up with those names as TRL sets them up (both spellings, ``--no_`` negations).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

TRAINING_COLUMNS = ("question", "choices", "solution", "audio")  # what ``stages.build_dataset`` reads
VLLM_WINDOW_SECONDS = 30  # the audio window vLLM's audio models are built for
_SHOWN = 5


def looks_local(name: str) -> bool:
    """Whether a model name is meant as a local path rather than a hub id ``org/name``: absolute, ``~``, ``./``,
    ``../``, more than one ``/``, a trailing ``/``, a backslash, or a first component that is a local directory."""
    if name.startswith(("/", "~", "./", "../")) or name in (".", "..") or "\\" in name:
        return True
    if name.endswith("/") or name.count("/") > 1:
        return True
    return "/" in name and Path(name.split("/", 1)[0]).is_dir()


def check_model_path(name: str | os.PathLike, flag: str = "--model") -> None:
    """Fail at once for a model that is neither a directory nor a hub id worth asking for: a file, a local-looking
    path (:func:`looks_local`), or any name while the hub is offline (``HF_HUB_OFFLINE``) and not cached. What a
    directory holds is checked where the model loads."""
    name = str(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise NotADirectoryError(f"{flag} {name}: a file, not a model directory")
    if looks_local(name):
        raise FileNotFoundError(f"{flag} {name}: no such model directory")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") and not _cached(name):
        raise FileNotFoundError(f"{flag} {name}: no such model directory, and not in the hub cache (HF_HUB_OFFLINE "
                                "is set, so the hub is not asked)")


def _cached(repo_id: str) -> bool:
    """Whether the local hub cache holds a snapshot of ``repo_id`` (the layout huggingface_hub writes)."""
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots").is_dir()


# --- a parquet from `r1-aqa prepare` -------------------------------------------------------------------------------


def check_parquet(path: str | os.PathLike, columns: Iterable[str] = TRAINING_COLUMNS, what: str = "dataset") -> int:
    """The row count of a prepared parquet once it is a readable parquet file holding ``columns``; else
    ``ValueError``/``OSError`` naming the file and what to do."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.parquet"))
        hint = f" (it holds {', '.join(found[:3])}{', ...' if len(found) > 3 else ''}: pass one)" if found else ""
        raise IsADirectoryError(f"{what} {path}: a directory, not a parquet file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file (make it with `r1-aqa prepare`)")
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{what} {path}: not a parquet file ({e}); make it with `r1-aqa prepare`") from None
    missing = sorted(set(columns) - set(meta.schema.to_arrow_schema().names))
    if missing:
        raise ValueError(f"{what} {path}: missing column(s) {missing}; prepare it with `r1-aqa prepare`")
    return meta.num_rows


def missing_clips(path: str | os.PathLike, column: str = "audio") -> tuple[list[str], int]:
    """The distinct clip paths of a prepared parquet that are not files, and how many distinct clips it has."""
    import pyarrow.parquet as pq

    clips = dict.fromkeys(str(c) for c in pq.read_table(path, columns=[column]).column(column).to_pylist())
    return [c for c in clips if not os.path.isfile(c)], len(clips)


# --- train / sft command lines -------------------------------------------------------------------------------------


def check_stage_inputs(config: str | None, argv: Sequence[str], config_class: tuple[str, str],
                       script_classes: Sequence[type]) -> dict:
    """Check a ``train``/``sft`` command line before TRL loads: the recipe and every flag name a field (of the
    ``script_classes``, of TRL's ``config_class`` given as ``(module, class)``, or of ``ModelConfig``), the values
    :func:`check_stage_values` checks, the model path, the datasets (parquet, columns, rows) and their clips.
    Returns the values set by the recipe and the command line (``{field: value}``, command-line values as text)."""
    from dataclasses import fields

    from trl import ModelConfig

    known = source_fields(*config_class)
    if known is not None:  # the library's source could not be read: its own parser checks the names later
        known |= {f.name for c in (*script_classes, ModelConfig) for f in fields(c)}
    values = {**read_recipe(config, known), **flag_values(argv, known)}
    check_stage_values(values)
    check_model_path(values["model_name_or_path"], "--model_name_or_path")
    if is_true(values.get("use_vllm")):
        check_vllm_window(values["model_name_or_path"])
    skip_bad = is_true(values.get("skip_bad_audio", False))
    columns = [*TRAINING_COLUMNS, *([values["reasoning_column"]] if values.get("reasoning_column") else [])]
    for key in ("dataset_path", "eval_dataset_path"):
        if values.get(key):
            rows = check_parquet(values[key], columns, f"--{key}")
            if not rows:
                raise ValueError(f"--{key} {values[key]}: no rows to train on")
            bad, total = missing_clips(values[key])
            if bad and not skip_bad:
                shown = ", ".join(bad[:_SHOWN]) + (", ..." if len(bad) > _SHOWN else "")
                raise FileNotFoundError(f"--{key} {values[key]}: {len(bad)} of {total} clips do not exist ({shown}); "
                                        "is the audio where `prepare` found it? Re-prepare, or set skip_bad_audio: "
                                        "true to train without those rows")
    return values


def check_stage_values(values: dict) -> None:
    """The values every training stage needs, from a recipe and command line or from parsed arguments."""
    for key, what in (("model_name_or_path", "a model directory or hub id"),
                      ("dataset_path", "a parquet from `r1-aqa prepare`"),
                      ("output_dir", "in the recipe or on the command line")):
        if not values.get(key):
            raise ValueError(f"--{key} is required ({what})")
    epochs = values.get("max_steps") in (None, -1, "-1")  # -1 (TrainingArguments' default): num_train_epochs counts
    for key, kind, low, zero in (("max_steps", int, -1, False), ("max_train_samples", int, 1, True),
                                 ("max_nonfinite_steps", int, 0, True), ("learning_rate", float, 0, True),
                                 ("num_train_epochs", float, 0, not epochs)):
        value = values.get(key)
        if value is None:
            continue
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"--{key} {value}: not {'an integer' if kind is int else 'a number'}") from None
        if number < low or (number == 0 and not zero):
            rule = {"max_steps": "a step count >= 1, or -1 to train num_train_epochs epochs",
                    "num_train_epochs": "> 0 (or set --max_steps)" if epochs else ">= 0"}.get(
                key, f"{'an integer ' * (kind is int)}>= {low}")
            raise ValueError(f"--{key} {value}: must be {rule}")
    output_dir = Path(str(values["output_dir"])).expanduser()
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output_dir {values['output_dir']}: a file, not a directory")


def is_true(value) -> bool:
    """A boolean recipe value or flag as TRL reads it (``true``, ``1``, ``yes``; a bare flag is ``True``)."""
    return str(value).lower() in ("true", "1", "yes")


def audio_window_seconds(model: str | os.PathLike) -> float | None:
    """The audio window (the feature extractor's ``chunk_length``) of a local model directory, read from its
    ``processor_config.json`` or ``preprocessor_config.json``; ``None`` where neither says (a hub id, no processor)."""
    import json

    for name, nested in (("processor_config.json", True), ("preprocessor_config.json", False)):
        path = Path(model).expanduser() / name
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        extractor = config.get("feature_extractor", {}) if nested else config
        if isinstance(extractor, dict) and isinstance(extractor.get("chunk_length"), (int, float)):
            return float(extractor["chunk_length"])
    return None


def check_vllm_window(model: str | os.PathLike) -> None:
    """Refuse vLLM rollouts for a model whose audio window is under vLLM's 30 s (vLLM pads every clip to 30 s and
    fails at the first rollout)."""
    window = audio_window_seconds(model)
    if window is not None and window < VLLM_WINDOW_SECONDS:
        raise ValueError(f"--use_vllm true: {model} has a {window:g} s audio window and vLLM needs "
                         f"{VLLM_WINDOW_SECONDS} s: build the tiny model with `r1-aqa tiny-model DIR "
                         f"--window-seconds {VLLM_WINDOW_SECONDS}`, or roll out with HF generate (--use_vllm false)")


def read_recipe(path: str | None, known: set[str] | None) -> dict:
    """A recipe YAML as a dict, every key a known field (``env`` sets environment variables, as in TRL)."""
    if path is None:
        return {}
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            recipe = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ValueError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(recipe, dict):
        raise ValueError(f"--config {path}: a recipe is a YAML mapping of field: value")
    for key in recipe:
        if known is not None and key != "env" and key not in known:
            raise ValueError(f"--config {path}: unknown key {key!r}{_suggest(key, known)}")
    return recipe


class _FlagParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ValueError(message)


def flag_values(argv: Sequence[str], known: set[str] | None) -> dict:
    """``{field: value}`` of ``--field value``/``--field=value`` arguments, read by argparse as TRL's
    ``HfArgumentParser`` (an argparse parser) reads them: a flag without a value is ``True``, ``--no_field`` is
    ``False``, several values are a list, ``--field-name`` is ``--field_name``, a unique prefix is the field; an unknown
    flag (not a field, nor an abbreviation of one) raises ``ValueError``. ``known``: ``None`` takes every flag given."""
    names = known if known is not None else {a[2:].partition("=")[0].replace("-", "_") for a in argv
                                             if a.startswith("--")}
    parser = _FlagParser(add_help=False, conflict_handler="resolve")
    for name in sorted(names):  # negations first: a field that is itself called no_X wins over X's negation
        parser.add_argument(*{f"--no_{name}", f"--no-{name.replace('_', '-')}"}, dest=name, action="store_const",
                            const=False, default=argparse.SUPPRESS)
    for name in sorted(names):
        parser.add_argument(*{f"--{name}", f"--{name.replace('_', '-')}"}, dest=name, nargs="*",
                            default=argparse.SUPPRESS)
    try:
        parsed, unknown = parser.parse_known_args(list(argv))
    except ValueError as e:  # an ambiguous prefix
        flag = re.search(r"--[\w-]+", str(e))
        name = flag.group(0)[2:].replace("-", "_") if flag else ""
        matches = sorted(n for n in names if n.startswith(name)) if name else []
        shown = ", ".join(f"--{m}" for m in matches[:_SHOWN]) + (", ..." if len(matches) > _SHOWN else "")
        raise ValueError(f"--{name}: ambiguous, it could be {shown}" if matches else str(e)) from None
    for arg in unknown:
        if not arg.startswith("--"):
            raise ValueError(f"{arg}: unexpected argument (every argument is --field VALUE)")
        name = arg[2:].partition("=")[0].replace("-", "_")
        raise ValueError(f"--{name}: unknown argument{_suggest(name, names)}")
    return {name: value if not isinstance(value, list) else True if not value else value[0] if len(value) == 1
            else value for name, value in vars(parsed).items()}


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return hint + "; `--trl-help` lists every field"


# --- dataclass fields read from source -----------------------------------------------------------------------------


def source_fields(module: str, name: str) -> set[str] | None:
    """The field names of dataclass ``module.name`` and of its bases, read from their source files without importing
    them (TRL's trainer configs import torch); ``None`` when the source cannot be followed."""
    try:
        tree = ast.parse(_module_file(module).read_text(encoding="utf-8"))
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
        found = {s.target.id for s in cls.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
        for base in cls.bases:
            if isinstance(base, ast.Name):
                inherited = source_fields(_defining_module(tree, module, base.id), base.id)
                if inherited is None:
                    return None
                found |= inherited
        return found
    except (StopIteration, OSError, SyntaxError, LookupError):
        return None


def _module_file(module: str) -> Path:
    """The source file of ``module``, found from its top-level package's location (nothing is imported)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(module)
    path = Path(spec.submodule_search_locations[0]).joinpath(*rest)
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"


def _defining_module(tree: ast.Module, module: str, name: str) -> str:
    """The module that defines ``name`` as imported (``from X import name``) by ``module`` (parsed as ``tree``); a
    package's re-export is followed to the package's own module that defines the class."""
    if any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body):
        return module
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and any(a.name == name for a in n.names))
    source = node.module or ""
    if node.level:
        package = module.rsplit(".", node.level)[0]
        source = f"{package}.{source}" if source else package
    path = _module_file(source)
    if path.name != "__init__.py":
        return source
    pattern = re.compile(rf"^class {re.escape(name)}\b", re.MULTILINE)
    owner = next(p for p in sorted(path.parent.glob("*.py")) if pattern.search(p.read_text(encoding="utf-8")))
    return f"{source}.{owner.stem}"
