"""Reading a run directory written by `seg4reg train`, and what state it is in.

A run directory holds one run: `config.yaml` and the weights trained with it. `train_summary.json` is
written last, atomically, with the SHA-256 of the resolved config (`config_sha256`); its presence
(and no `backup/`) is what makes a run *finished*. `run_state` classifies a directory,
`check_can_train` refuses to start a different config where another run's files are, and
`require_finished` is what `export` and `evaluate --run` call before they trust a run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

import keras
import yaml

from seg4reg_tf import fileio
from seg4reg_tf.config_machinery import former_names
from seg4reg_tf.training.config import ExperimentConfig, load_config, to_dict

log = logging.getLogger(__name__)

SUMMARY = "train_summary.json"
CONFIG = "config.yaml"
BACKUP = "backup"
ARTEFACTS = ("model.keras", "last.keras", "history.csv", BACKUP, SUMMARY)  # files a run leaves behind


class RunStateError(ValueError):
    """A run directory that cannot be used as asked (unfinished, inconsistent, or another run's)."""


@dataclasses.dataclass(frozen=True)
class RunState:
    """`status`: "finished" | "unfinished" | "inconsistent" | "empty"; `detail`: one sentence for users."""

    status: str
    detail: str
    summary: dict | None = None


def config_fingerprint(cfg: ExperimentConfig, written: dict | None = None) -> str:
    """SHA-256 (hex) of the resolved config as canonical JSON (what `config_sha256` records).

    `written`: the run's config.yaml as a plain dict; only its keys count, so a field added to the
    package later (with its default) does not make an older run's config look changed."""
    resolved = to_dict(cfg)
    if written is not None:
        resolved = _keys_of(resolved, written, cfg)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


def _keys_of(resolved: dict, written: dict, cfg) -> dict:
    """`resolved` (the config `cfg` as a dict) with only the keys `written` has, under the names it has them:
    a run written before a field was renamed keeps its fingerprint (`config_machinery.former_names`)."""
    former = {new: old for old, new in former_names(type(cfg)).items() if old in written and new not in written}
    out = {}
    for name, value in resolved.items():
        key = former.get(name, name)
        if key in written:
            out[key] = (_keys_of(value, written[key], getattr(cfg, name, None))
                        if isinstance(value, dict) and isinstance(written[key], dict) else value)
    return out


def config_differences(old: ExperimentConfig, new: ExperimentConfig, limit: int = 8) -> list[str]:
    """Dotted keys whose values differ, as "key: old -> new" (at most `limit`, then "...")."""
    out: list[str] = []

    def walk(a, b, prefix):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix[:-1]}: {a!r} -> {b!r}")

    walk(to_dict(old), to_dict(new), "")
    return out[:limit] + (["..."] if len(out) > limit else [])


def _read_summary(run_dir: str) -> dict | None:
    path = fileio.join(run_dir, SUMMARY)
    try:
        with fileio.open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _epochs_done(run_dir: str) -> str:
    from seg4reg_tf.training.callbacks import read_history

    rows = read_history(fileio.join(run_dir, "history.csv"))
    return f"{len(rows)} epoch(s) logged in history.csv" if rows else "no epoch logged"


def run_state(run_dir: str) -> RunState:
    """The state of a run directory (see the module docstring); never raises for a readable directory."""
    run_dir = os.fspath(run_dir)
    if not fileio.isdir(run_dir) or not any(fileio.exists(fileio.join(run_dir, a)) for a in ARTEFACTS + (CONFIG,)):
        return RunState("empty", f"{run_dir} holds no run")
    summary = _read_summary(run_dir)
    backup = fileio.join(run_dir, BACKUP)
    if fileio.isdir(backup) and fileio.listdir(backup):
        return RunState("unfinished", f"{run_dir} is an interrupted or running training ({BACKUP}/ present, "
                        f"{_epochs_done(run_dir)}); rerun the same `seg4reg train` command to finish it")
    if summary is None:
        return RunState("unfinished", f"{run_dir} never finished training (no readable {SUMMARY}; "
                        f"{_epochs_done(run_dir)})")
    if not fileio.isfile(fileio.join(run_dir, CONFIG)):
        return RunState("inconsistent", f"{run_dir}: {CONFIG} is missing")
    recorded = summary.get("config_sha256")
    if recorded is not None:
        try:
            path = fileio.join(run_dir, CONFIG)
            with fileio.open(path) as f:
                written = yaml.safe_load(f)
            actual = config_fingerprint(load_config(path), written if isinstance(written, dict) else None)
        except (OSError, ValueError) as err:
            return RunState("inconsistent", f"{run_dir}: {CONFIG} is unreadable ({err})", summary)
        if actual != recorded:
            return RunState("inconsistent", f"{run_dir}: {CONFIG} is not the config the weights were trained "
                            f"with (its SHA-256 differs from {SUMMARY}'s config_sha256)", summary)
    return RunState("finished", f"{run_dir} finished ({summary.get('epochs')} epochs)", summary)


def check_can_train(cfg: ExperimentConfig, run_dir: str) -> None:
    """Raise RunStateError when `run_dir` holds another config's run (config.yaml differs and weights,
    history, a backup or a summary are there): a run directory is one run."""
    cfg_path = fileio.join(run_dir, CONFIG)
    if not fileio.isfile(cfg_path):
        return
    present = [a for a in ARTEFACTS if fileio.exists(fileio.join(run_dir, a))]
    if not present:
        return
    try:
        old = load_config(cfg_path)
    except (OSError, ValueError) as err:
        raise RunStateError(f"{run_dir} holds a run ({', '.join(present)}) whose {CONFIG} is unreadable ({err}); "
                            "choose a new --out or delete that directory") from None
    if config_fingerprint(old) == config_fingerprint(cfg):
        return
    diffs = "; ".join(config_differences(old, cfg))
    raise RunStateError(f"{run_dir} already holds a run of a different config ({diffs}); a run directory "
                        f"holds one run: choose a new --out, or delete {run_dir} to start over")


def require_finished(run_dir: str, *, allow_unfinished: bool = False) -> RunState:
    """The run's state when it is finished; else RunStateError saying which state it is in.

    `allow_unfinished=True` accepts an unfinished run (its best checkpoint so far, `model.keras`) with a
    warning; an inconsistent run (config changed after training) is refused either way.
    """
    state = run_state(run_dir)
    if state.status == "finished":
        return state
    if state.status == "unfinished" and allow_unfinished:
        log.warning("%s; using its best checkpoint so far (model.keras)", state.detail)
        return state
    hint = " (pass --allow-unfinished to use its best checkpoint so far)" if state.status == "unfinished" else ""
    raise RunStateError(f"run not usable: {state.detail}{hint}")


def load_run(run_dir: str, *, model_file: str = "model.keras", compile: bool = False, tta: str | None = None,
             head: str | None = None) -> tuple[ExperimentConfig, keras.Model]:
    """(config, model) of a run: RUN/config.yaml and RUN/<model_file> ("model.keras" = best, or "last.keras").

    `tta` ("none" | "flip", `ModelConfig.tta`) replaces the trained config's test-time augmentation in
    both the returned config and the model (so export and `.keras` saves keep it); None keeps it.
    `head` likewise replaces `model.head` (which output is `cobb_angles`; an inference-time choice made
    on validation data, `ModelConfig.head`). A changed model is a new one (`Seg4RegPlus.with_config`:
    from_config with the changed config, the saved weights), never the loaded one modified.
    The model carries the run's input contract (`Preprocessing.of(cfg.data)`); a model saved before
    models carried one gets it from config.yaml the same way.
    Does not check the run's state: call `require_finished` first where that matters.

    Raises:
        FileNotFoundError naming the missing directory or file; RunStateError when the model's own
        preprocessing differs from config.yaml's data section; ValueError for `compile=True` with a
        model that has to be rebuilt (a changed tta or head, or no contract of its own).
    """
    run_dir = os.fspath(run_dir)
    if not fileio.isdir(run_dir):
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    cfg_path = fileio.join(run_dir, CONFIG)
    model_path = fileio.join(run_dir, model_file)
    for path, what in ((cfg_path, "the resolved config"), (model_path, "the trained model")):
        if not fileio.isfile(path):
            raise FileNotFoundError(f"{path}: missing ({what}); is {run_dir} a finished `seg4reg train` run?")
    cfg = load_config(cfg_path)
    import seg4reg_tf.models  # noqa: F401  (registers the custom classes for deserialisation)
    from seg4reg_tf.models.preprocessing import Preprocessing

    model = keras.saving.load_model(model_path, compile=compile)
    contract = Preprocessing.of(cfg.data)
    own = getattr(model, "preprocessing", None)
    if own is not None and own != contract:
        raise RunStateError(f"{model_path}: the model's preprocessing differs from {cfg_path}'s data section "
                            f"({'; '.join(own.differences(contract))}); the run is inconsistent")
    changes = {k: v for k, v in (("tta", tta), ("head", head)) if v is not None}
    if changes:
        cfg.model = dataclasses.replace(cfg.model, **changes)  # validates them
    if changes or own is None:
        if compile:
            why = "tta/head changed" if changes else "it carries no preprocessing"
            raise ValueError(f"{model_path}: compile=True keeps the saved optimizer, but this model must be rebuilt "
                             f"({why}); load it uncompiled")
        model = model.with_config(model_config=dataclasses.replace(model.cfg, **changes), preprocessing=contract)
    return cfg, model
