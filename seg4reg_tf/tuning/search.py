"""`run_search`: a resumable Keras Tuner search over experiment configs.

Output directory DIR:
- `search/` the Keras Tuner project (oracle.json, trial_<id>/ with trial.json, checkpoint, config.yaml),
- `search.yaml` the base config, search space and algorithm the search was started with (a re-run
  must match it; a different budget or space is a different search: use another DIR),
- `results.csv` one row per trial (trial_id, status, val_smape = the trial's best epoch, seconds,
  hyperparameters), rewritten after every trial,
- `best_config.yaml` the full resolved config of the best trial (`seg4reg train --config` accepts it).

Re-running the same command continues the search (overwrite=False): finished trials are kept and
count towards `trials`; a trial interrupted mid-way is run again.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time

import keras_tuner
import yaml

from seg4reg_tf import fileio
from seg4reg_tf.config_machinery import apply_overrides, from_dict, save_config, to_dict
from seg4reg_tf.training.config import ExperimentConfig
from seg4reg_tf.tuning.hypermodel import OBJECTIVE, SearchSpace, Seg4RegHyperModel

ALGORITHMS = ("bayesian", "hyperband", "random")
PROJECT = "search"


class _Reporting:
    """Tuner mixin: prints a line per trial and rewrites results.csv / best_config.yaml after each."""

    def _setup_reporting(self, out_dir: str, total: int, echo) -> None:
        self._out_dir, self._total, self._echo = out_dir, total, echo
        self._times_path = fileio.join(out_dir, "trial_seconds.json")
        self._seconds = json.loads(fileio.read_text(self._times_path)) if fileio.isfile(self._times_path) else {}

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        self._t0 = time.perf_counter()
        hm = self.hypermodel
        cfg = hm.config_for(trial.hyperparameters.values)
        save_config(cfg, fileio.join(self.get_trial_dir(trial.trial_id), "config.yaml"))
        done = sum(1 for t in self.oracle.trials.values() if t.status in ("COMPLETED", "FAILED", "INVALID"))
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.hyperparameters.values.items()
                           if not k.startswith("tuner/"))
        self._echo(f"[tune] trial {trial.trial_id} ({done + 1}/{self._total}) starting: {values}")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self._seconds[trial.trial_id] = round(time.perf_counter() - self._t0, 1)
        fileio.write_atomic(self._times_path, json.dumps(self._seconds))
        best = best_trial(self)
        self._echo(f"[tune] trial {trial.trial_id} {trial.status}: {OBJECTIVE} {_fmt(trial.score)} "
                   f"in {self._seconds[trial.trial_id]} s; best so far {_fmt(best.score if best else None)} "
                   f"(trial {best.trial_id if best else '-'})")
        write_outputs(self, self._out_dir, self._seconds)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "n/a" if v is None else str(v)


def make_tuner(hypermodel: Seg4RegHyperModel, algorithm: str, out_dir: str, trials: int, *, seed: int = 0,
               initial_points: int | None = 5, echo=print, strategy=None) -> keras_tuner.Tuner:
    """A Keras Tuner of `algorithm` on `hypermodel`, project OUT/search, resuming an existing one.

    Bayesian: `initial_points` random trials before the GP proposes (None: Keras Tuner's 3 x dims).
    Hyperband's max_epochs is the base config's train.epochs; it also stops after `trials` trials.
    `strategy`: a tf.distribute strategy every trial's model is built and trained under (None: the default).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials: expected a positive int, got {trials!r}")
    objective = keras_tuner.Objective(OBJECTIVE, direction="min")
    kwargs = dict(hypermodel=hypermodel, directory=out_dir, project_name=PROJECT, overwrite=False,
                  distribution_strategy=strategy)
    if algorithm == "bayesian":
        cls = type("Seg4RegBayesian", (_Reporting, keras_tuner.BayesianOptimization), {})
        tuner = cls(objective=objective, max_trials=trials, num_initial_points=initial_points, seed=seed, **kwargs)
    elif algorithm == "hyperband":
        cls = type("Seg4RegHyperband", (_Reporting, keras_tuner.Hyperband), {})
        tuner = cls(objective=objective, max_epochs=hypermodel.base.train.epochs, factor=3, seed=seed, **kwargs)
    else:
        cls = type("Seg4RegRandomSearch", (_Reporting, keras_tuner.RandomSearch), {})
        tuner = cls(objective=objective, max_trials=trials, seed=seed, **kwargs)
    tuner.oracle.max_trials = trials  # a re-run with a larger --trials continues the search
    tuner._setup_reporting(out_dir, trials, echo)
    return tuner


def best_trial(tuner):
    """The completed trial with the lowest objective, or None."""
    done = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED" and t.score is not None
            and math.isfinite(t.score)]
    return min(done, key=lambda t: (t.score, t.trial_id)) if done else None


def write_outputs(tuner, out_dir: str, seconds: dict | None = None) -> dict:
    """Write OUT/results.csv (one row per trial) and OUT/best_config.yaml; returns a summary dict."""
    hm: Seg4RegHyperModel = tuner.hypermodel
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    names = []
    for t in trials:
        for k in t.hyperparameters.values:
            if k not in names:
                names.append(k)
    seconds = seconds or {}
    path = fileio.join(out_dir, "results.csv")
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["trial_id", "status", OBJECTIVE, "best_epoch", "seconds"] + names)
    for t in trials:
        step = t.best_step if t.score is not None else None
        w.writerow([t.trial_id, t.status, "" if t.score is None else t.score, "" if step is None else step,
                    seconds.get(t.trial_id, "")] + [t.hyperparameters.values.get(k, "") for k in names])
    fileio.write_atomic(path, f.getvalue())
    best = best_trial(tuner)
    summary = {"trials": len(trials), "completed": sum(t.status == "COMPLETED" for t in trials),
               "results": path, "best_trial": None, f"best_{OBJECTIVE}": None, "best_config": None}
    if best is not None:
        cfg = hm.config_for(best.hyperparameters.values)
        cfg.name = f"{hm.base.name}_tuned"
        best_path = fileio.join(out_dir, "best_config.yaml")
        header = (f"# best of {len(trials)} tuning trials (seg4reg tune): trial {best.trial_id}, "
                  f"{OBJECTIVE} {best.score:.6g}\n"
                  f"# seg4reg train --config {best_path} --data ROOT\n")
        text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)  # as save_config writes it
        fileio.write_atomic(best_path, header + text)
        summary.update(best_trial=best.trial_id, best_config=best_path,
                       best_hyperparameters=dict(best.hyperparameters.values))
        summary[f"best_{OBJECTIVE}"] = best.score
    return summary


def _check_same_search(out_dir: str, record: dict) -> None:
    path = fileio.join(out_dir, "search.yaml")
    if fileio.isfile(path):
        old = yaml.safe_load(fileio.read_text(path))
        if old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(f"{out_dir}: holds a search started with a different {', '.join(diff)} "
                             f"(see {path}); use a new --out or the same settings to resume")
    else:
        fileio.write_atomic(path, yaml.safe_dump(record, sort_keys=False, default_flow_style=None))


def run_search(base: ExperimentConfig, data_root: str, out_dir: str, *, trials: int, algorithm: str = "bayesian",
               space: SearchSpace | None = None, seed: int | None = None, initial_points: int | None = 5,
               verbose: int | str = "auto", echo=print) -> dict:
    """Search `trials` configs around `base` on `data_root`, resuming a search already in `out_dir`.

    Returns the summary (trials, completed, best_trial, best_val_smape, best_hyperparameters,
    best_config path, results path); writes OUT/results.csv and OUT/best_config.yaml.
    """
    out_dir = fileio.absolute(out_dir)
    fileio.makedirs(out_dir)
    space = space or SearchSpace()
    seed = base.train.seed if seed is None else seed
    strategy = None
    if base.train.strategy != "default":  # "mirrored"; the CLI refuses "multiworker" (trials run in this process)
        from seg4reg_tf.training.strategies import make_strategy

        strategy = make_strategy(base.train.strategy)
        echo(f"[tune] trials run under {base.train.strategy} on {strategy.num_replicas_in_sync} replica(s); "
             f"global batch {base.data.batch_size} x {strategy.num_replicas_in_sync}")
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    hm = Seg4RegHyperModel(base, data_root, space, verbose=verbose, replicas=replicas)
    _check_same_search(out_dir, {"algorithm": algorithm, "seed": seed, "initial_points": initial_points,
                                 "config": to_dict(base),
                                 "space": to_dict(space)})
    tuner = make_tuner(hm, algorithm, out_dir, trials, seed=seed, initial_points=initial_points, echo=echo,
                       strategy=strategy)
    done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    if done:
        echo(f"[tune] resuming {out_dir}: {len(tuner.oracle.trials)} trials on record ({done} completed)")
    tuner.search(verbose=verbose)
    return write_outputs(tuner, out_dir, tuner._seconds)


def load_space(path: str | None, overrides: list[str] | None = None) -> SearchSpace:
    """A `SearchSpace` from an optional YAML file plus `key=value` overrides (YAML values)."""
    data = {}
    if path:
        if not fileio.isfile(path):
            raise ValueError(f"--space: file not found: {path}")
        data = yaml.safe_load(fileio.read_text(path)) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of search-space settings")
    return from_dict(SearchSpace, apply_overrides(data, overrides), prefix="space")


__all__ = ["ALGORITHMS", "make_tuner", "run_search", "write_outputs", "best_trial", "load_space"]
