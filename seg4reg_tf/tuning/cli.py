"""`seg4reg tune`: a resumable Keras Tuner search over experiment configs."""
from __future__ import annotations

import argparse
import sys

from seg4reg_tf.config_machinery import add_override_argument


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="hyperparameter search (Keras Tuner) around an experiment config",
        description="Each trial trains the base config with tuned overrides on the fixed train/val split of "
                    "--data and scores its best val_smape (minimised). Tuned (where the variant has them): learning "
                    "rate, schedule, lambda_att, lambda_tri, joint warm-up epochs, reg/seg widths, input size, "
                    "augmentation strength. Writes OUT/results.csv and "
                    "OUT/best_config.yaml (for `seg4reg train --config`). Re-running the same command resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="base experiment YAML")
    p.add_argument("--data", required=True, help="AASCE-format data root (split 'training')")
    p.add_argument("--trials", type=int, required=True, help="total number of trials (finished ones count)")
    p.add_argument("--out", required=True, help="search directory (resumed when it exists)")
    p.add_argument("--algorithm", choices=("bayesian", "hyperband", "random"), default="bayesian")
    p.add_argument("--epochs", type=int, default=None, help="epochs per trial (sets train.epochs; Hyperband max)")
    add_override_argument(p, "override a base config value (YAML syntax)")
    p.add_argument("--space", default=None, metavar="YAML",
                   help="search-space file (keys of seg4reg_tf.tuning.SearchSpace; default ranges otherwise)")
    p.add_argument("--space-set", dest="space_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a search-space setting, e.g. --space-set 'image_sizes=[[256,128]]'; repeatable")
    p.add_argument("--initial-points", type=int, default=5,
                   help="bayesian: random trials before the Gaussian process proposes")
    p.add_argument("--seed", type=int, default=None, help="tuner seed (default: train.seed)")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress output per trial")
    p.set_defaults(func=_tune)


def _err(msg: str) -> int:
    print(f"seg4reg tune: {msg}", file=sys.stderr)
    return 2


def _tune(args: argparse.Namespace) -> int:
    from seg4reg_tf.training.config import load_config
    from seg4reg_tf.tuning.search import load_space, run_search

    if args.trials < 1:
        return _err(f"--trials: expected a positive int, got {args.trials}")
    overrides = list(args.overrides)
    if args.epochs is not None:
        if args.epochs < 1:
            return _err(f"--epochs: expected a positive int, got {args.epochs}")
        overrides.append(f"train.epochs={args.epochs}")
    try:
        base = load_config(args.config, overrides)
    except ValueError as err:
        return _err(f"config error: {err}")
    try:
        space = load_space(args.space, args.space_overrides)
    except ValueError as err:
        return _err(f"search-space error: {err}")
    from seg4reg_tf import fileio

    if not fileio.isdir(args.data):
        return _err(f"--data {args.data}: not a directory")
    if base.train.strategy == "multiworker":
        return _err("train.strategy: 'multiworker' is not supported by `tune` (trials run on this process)")
    try:
        summary = run_search(base, args.data, args.out, trials=args.trials, algorithm=args.algorithm, space=space,
                             seed=args.seed, initial_points=args.initial_points,
                             verbose=args.verbose)
    except (ValueError, FileNotFoundError) as err:
        return _err(str(err))
    print(f"trials: {summary['trials']} ({summary['completed']} completed); results: {summary['results']}")
    if summary["best_config"] is None:
        print("no trial completed; no best_config.yaml written", file=sys.stderr)
        return 1
    print(f"best trial {summary['best_trial']}: val_smape {summary['best_val_smape']:.4g}")
    print(f"best config: {summary['best_config']}")
    return 0
