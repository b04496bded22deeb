"""`seg4reg train`: train an experiment config into a run directory."""
from __future__ import annotations

import argparse
import os
import sys

from seg4reg_tf import fileio
from seg4reg_tf.config_machinery import add_override_argument
from seg4reg_tf.training.strategies import STRATEGY_NAMES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train an experiment (YAML config) into a run directory",
        description="Train with model.fit (custom loop for multiworker). Re-running the same command after "
                    "an interruption resumes from RUN/backup (a torn backup falls back to the previous epoch's). A "
                    "directory holding a run of another config is refused. --data is an AASCE-format root "
                    "(data/training, "
                    "labels/training; the fixed split: index %% 5 == 4 validates), or --train-files and --eval-files "
                    "are TFRecord files (`seg4reg data convert` shards, TFX ExampleGen's *.gz); without either, the "
                    "config must have a `synthetic:` section, and a synthetic dataset is generated into "
                    "RUN/synthetic_data. Paths may be on any TensorFlow filesystem (gs://...).")
    p.add_argument("--config", required=True, help="experiment YAML (may extend another with `base:`)")
    p.add_argument("--data", default=None, metavar="ROOT", help="AASCE-format data root (its fixed train/val split)")
    p.add_argument("--train-files", "--train-data", dest="train_data", nargs="+", default=None, metavar="PATTERN",
                   help="TFRecord files or glob patterns of the training examples (with --eval-files; not with "
                        "--data); TFX's fn_args.train_files")
    p.add_argument("--eval-files", "--val-data", dest="val_data", nargs="+", default=None, metavar="PATTERN",
                   help="TFRecord files or glob patterns of the validation examples (with --train-files); TFX's "
                        "fn_args.eval_files")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    add_override_argument(p)
    p.add_argument("--strategy", choices=STRATEGY_NAMES, default=None, help="overrides train.strategy")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from seg4reg_tf.training.config import load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ValueError as err:
        print(f"seg4reg train: config error: {err}", file=sys.stderr)
        return 2
    run_dir = args.out or os.path.join("runs", cfg.name)
    data_root, val_data = args.data, None
    if (args.train_data is None) != (args.val_data is None):
        given, missing = ("--train-files", "--eval-files")
        if args.train_data is None:
            given, missing = missing, given
        print(f"seg4reg train: {given} needs {missing} (TFRecord patterns of the training and of the validation "
              "examples)", file=sys.stderr)
        return 2
    if args.train_data is not None:
        if data_root is not None:
            print("seg4reg train: --data (an AASCE root with its fixed split) or --train-files/--eval-files "
                  "(TFRecords), not both", file=sys.stderr)
            return 2
        data_root, val_data = args.train_data, args.val_data
    elif data_root is None:
        if cfg.synthetic is None:
            print("seg4reg train: --data ROOT is required (an AASCE-format root such as "
                  "boostnet_labeldata/ of the AASCE release), unless the config has a `synthetic:` section",
                  file=sys.stderr)
            return 2
        from seg4reg_tf.data.synth import write_synthetic_dataset

        data_root = fileio.join(run_dir, "synthetic_data")
        if not fileio.isfile(fileio.join(data_root, "labels", "training", "angles.csv")):
            s = cfg.synthetic
            print(f"generating a synthetic dataset ({s.n_train} train, {s.n_test} test, seed {s.seed}) "
                  f"in {data_root}", file=sys.stderr)
            write_synthetic_dataset(data_root, s.n_train, s.n_test, s.seed)
    elif not fileio.isdir(data_root):
        print(f"seg4reg train: --data {data_root}: not a directory (an AASCE-format root; TFRecords go to "
              "--train-files and --eval-files)", file=sys.stderr)
        return 2

    from seg4reg_tf.data.aasce import AasceFormatError
    from seg4reg_tf.data.sources import DataSourceError
    from seg4reg_tf.training.config import ConfigError
    from seg4reg_tf.training.run import RunStateError
    from seg4reg_tf.training.train import train

    try:
        summary = train(cfg, data_root, run_dir, val_data=val_data, strategy_name=args.strategy)
    except (RunStateError, AasceFormatError, DataSourceError, ConfigError,
            FileNotFoundError) as err:  # clear messages, no traceback
        print(f"seg4reg train: {err}", file=sys.stderr)
        return 2
    except fileio.NoSpaceError as err:  # a full disk: where and how much, no TensorFlow trace
        print(f"seg4reg train: {err}", file=sys.stderr)
        return 1
    monitor = cfg.train.checkpoint_monitor
    print(f"run directory: {fileio.absolute(run_dir)}")
    if cfg.train.fit_on == "all":  # nothing held out: the last epoch is the model, its validation is in-sample
        final = summary.get("final", {}).get(monitor)
        print(f"model.keras: the last epoch ({monitor} {final} on validation images it trained on), "
              f"{summary['images_per_s']} img/s, {summary['wall_time_s']} s")
    else:
        print(f"best {monitor}: {summary.get('best_' + monitor)} (epoch {summary.get('best_epoch')}), "
              f"{summary['images_per_s']} img/s, {summary['wall_time_s']} s")
    return 0
