"""`seg4reg-pipeline run | compile | lineage`: the TFX pipeline from the command line.

Exit status of `run`: 0 a model was pushed (or this exact model already serves there), 2 usage or
config error, 3 data validation failed (anomalies), 4 not blessed, 5 load check failed, 1 any other
failure. Progress (components starting and finishing, training epochs, evaluation) goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import warnings

from seg4reg_pipeline import IMAGE

EXIT_PUSHED, EXIT_ERROR, EXIT_USAGE, EXIT_INVALID_DATA, EXIT_NOT_BLESSED, EXIT_LOAD_CHECK = 0, 1, 2, 3, 4, 5
PIPELINE_KEYS = {"bless_smape": float, "regression_tolerance": float}
_PROGRESS = re.compile(r"^Component (\S+) is (running|finished)\.$")


def _quiet_environment() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF 2.16 logs harmless cuFFT/cuDNN errors at 2
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", module="apache_beam")


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or record.name.startswith("seg4reg_pipeline"):
            return True
        m = _PROGRESS.match(record.getMessage())
        if m:
            record.msg, record.args = f"{m.group(1)}: {m.group(2)}", None
            return True
        return False


def _setup_logging() -> None:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(_ProgressFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def load_pipeline_config(path: str, overrides: list[str]) -> tuple[str, dict]:
    """(resolved experiment config as YAML text, the `pipeline:` section) of a config file + `--set` overrides.

    Raises ValueError naming the key (seg4reg_tf's ConfigError for the experiment part).
    """
    import yaml

    from seg4reg_tf.training.config import apply_overrides, config_from_dict, read_config_dict, to_dict

    data = apply_overrides(read_config_dict(path), overrides)
    section = data.pop("pipeline", None) or {}
    if not isinstance(section, dict):
        raise ValueError(f"pipeline: expected a mapping, got {section!r}")
    for key, value in section.items():
        if key not in PIPELINE_KEYS:
            raise ValueError(f"pipeline.{key}: unknown key (expected one of {', '.join(PIPELINE_KEYS)})")
        try:
            section[key] = PIPELINE_KEYS[key](value)
        except (TypeError, ValueError):
            raise ValueError(f"pipeline.{key}: expected a number, got {value!r}") from None
    cfg = config_from_dict(data)
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None), section


def _common(p: argparse.ArgumentParser, *, local: bool = True) -> None:
    from seg4reg_tf.config_machinery import add_override_argument

    p.add_argument("--data", required=True, metavar="ROOT",
                   help="an AASCE-format root (data/training, labels/training) or a directory of "
                        "`seg4reg data convert` shards")
    p.add_argument("--config", required=True, help="experiment YAML (may carry a `pipeline:` section)")
    p.add_argument("--pipeline-root", required=True, metavar="DIR", help="artifacts" + (" and the sqlite MLMD"
                                                                                       if local else ""))
    p.add_argument("--serving-base", required=True, metavar="DIR", help="TF Serving model base path to push to")
    p.add_argument("--bless-smape", type=float, default=None, metavar="MAX",
                   help="absolute blessing threshold, SMAPE %% on the eval split (default: pipeline.bless_smape "
                        "of the config)")
    p.add_argument("--regression-tolerance", type=float, default=None, metavar="PTS",
                   help="SMAPE points a candidate may lose against the latest blessed model (default: "
                        "pipeline.regression_tolerance of the config, else 0)")
    add_override_argument(p)
    p.add_argument("--split", default="training", help="the split of ROOT to use (default training)")
    p.add_argument("--schema", default=None, help="curated schema (default pipelines/schema/schema.pbtxt)")
    p.add_argument("--model-name", default="seg4reg", help="model name for the load check (default seg4reg)")
    p.add_argument("--serve-command", default="", metavar="SEG4REG",
                   help="the `seg4reg` executable that serves the candidate in the load check (default: this "
                        "environment's; give the serving environment's, e.g. .venv/bin/seg4reg)")
    p.add_argument("--beam-arg", action="append", default=None, metavar="ARG",
                   help="a Beam pipeline argument, repeatable (e.g. --beam-arg=--runner=DataflowRunner); "
                        "default: DirectRunner in memory, one worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seg4reg-pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run the pipeline with LocalDagRunner (sqlite MLMD under the pipeline root)")
    _common(p)
    p.add_argument("--no-cache", action="store_true", help="re-run every component (default: reuse cached outputs)")
    p.set_defaults(func=_run)
    c = sub.add_parser("compile", help="compile the pipeline to a Kubeflow V2 / Vertex Pipelines JSON spec")
    _common(c, local=False)
    c.add_argument("--out", required=True, help="output JSON file")
    c.add_argument("--image", default=IMAGE,
                   help=f"container image of every component: pipelines/Dockerfile, built by `make pipeline-image` "
                        f"and pushed to a registry (default {IMAGE})")
    c.add_argument("--gpus", type=int, default=0, metavar="N",
                   help="GPUs for the Trainer's container (use train.strategy: mirrored for N > 1; default 0)")
    c.add_argument("--gpu-type", default=None, metavar="TYPE",
                   help="accelerator type of --gpus (Vertex AI names: NVIDIA_TESLA_T4, NVIDIA_L4, NVIDIA_TESLA_A100, "
                        "...; default NVIDIA_TESLA_T4)")
    c.add_argument("--cpus", type=float, default=None, metavar="N", help="vCPUs for the Trainer's container")
    c.add_argument("--memory", type=float, default=None, metavar="GB", help="memory for the Trainer's container (GB)")
    c.add_argument("--source-format", choices=("aasce", "tfrecords"), default=None,
                   help="the kind of --data, needed when it is not a local directory (e.g. gs://)")
    c.set_defaults(func=_compile)
    q = sub.add_parser("lineage", help="what produced a pushed version: data, schema, config, metrics, blessing")
    q.add_argument("--pipeline-root", required=True, metavar="DIR")
    q.add_argument("--serving-base", required=True, metavar="DIR")
    q.add_argument("--version", type=int, default=None, help="pushed version (default: the newest)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=_lineage)
    return parser


def _pipeline_from_args(args, *, local: bool, source_format: str | None = None, trainer_resource_spec=None):
    from seg4reg_pipeline import IMAGE_SCHEMA_FILE
    from seg4reg_pipeline.pipeline import DEFAULT_BEAM_ARGS, SCHEMA_FILE, create_pipeline, local_metadata_config

    config_yaml, section = load_pipeline_config(args.config, args.overrides)
    bless = args.bless_smape if args.bless_smape is not None else section.get("bless_smape")
    if bless is None:
        raise ValueError(f"no blessing threshold: pass --bless-smape MAX or set pipeline.bless_smape in {args.config}")
    tol = args.regression_tolerance
    if tol is None:
        tol = section.get("regression_tolerance", 0.0)
    if tol < 0:
        raise ValueError(f"--regression-tolerance: expected a number >= 0, got {tol}")
    data = os.path.abspath(args.data) if local or "://" not in args.data else args.data
    if local and not os.path.isdir(data):
        raise ValueError(f"--data {args.data}: not a directory")
    root = os.path.abspath(args.pipeline_root) if local else args.pipeline_root
    if args.schema:
        schema = os.path.abspath(args.schema) if local or "://" not in args.schema else args.schema
    else:  # compiled: the schema inside the image (pipelines/Dockerfile), not this machine's copy
        schema = SCHEMA_FILE if local else IMAGE_SCHEMA_FILE
    if local and not os.path.isfile(schema):
        raise ValueError(f"--schema {schema}: file not found")
    serve = args.serve_command
    if serve and os.sep in serve:
        serve = os.path.abspath(serve)
        if not os.access(serve, os.X_OK):
            raise ValueError(f"--serve-command {args.serve_command}: not an executable file")
    if local:
        os.makedirs(root, exist_ok=True)
    return create_pipeline(
        pipeline_root=root, data_root=data, config_yaml=config_yaml, config_path=os.path.abspath(args.config),
        overrides=args.overrides, serving_base=os.path.abspath(args.serving_base) if local else args.serving_base,
        bless_smape=bless, regression_tolerance=tol, split=args.split, schema_file=schema, serve_command=serve,
        model_name=args.model_name, source_format=source_format,
        metadata_connection_config=local_metadata_config(root) if local else None,
        beam_pipeline_args=args.beam_arg if args.beam_arg is not None else DEFAULT_BEAM_ARGS,
        enable_cache=not getattr(args, "no_cache", False), trainer_resource_spec=trainer_resource_spec)


def _fail(code: int, msg: str) -> int:
    print(f"seg4reg-pipeline: {msg}", file=sys.stderr)
    return code


def _run(args) -> int:
    from tfx import v1 as tfx

    from seg4reg_pipeline.components import DataValidationError
    from seg4reg_pipeline.mlmd_query import run_outcome

    try:
        pipeline = _pipeline_from_args(args, local=True)
    except ValueError as err:
        return _fail(EXIT_USAGE, f"error: {err}")
    _setup_logging()
    failure = None
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as err:  # noqa: BLE001 - a component failed: report it with the outcome below
        failure = err
    outcome = run_outcome(args.pipeline_root)
    print("components: " + ", ".join(f"{n} {st}" for n, st in outcome["nodes"]), file=sys.stderr)
    if failure is not None:
        chain, e = [], failure
        while e is not None and e not in chain:
            chain.append(e)
            e = e.__cause__ or e.__context__
        if any(isinstance(x, DataValidationError) or "data validation failed" in str(x) for x in chain):
            msg = next(str(x) for x in chain if "data validation failed" in str(x))
            return _fail(EXIT_INVALID_DATA, f"stopped before training: {msg}\nnothing pushed")
        return _fail(EXIT_ERROR, f"the pipeline failed: {type(failure).__name__}: {failure}\nnothing pushed")
    m = outcome["metrics"]
    if m:
        print("evaluation: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()), file=sys.stderr)
    if outcome["pushed"]:
        print(f"pushed: {outcome['destination']} ({outcome['reason']})")
        return EXIT_PUSHED
    if outcome["blessed"] is False:
        return _fail(EXIT_NOT_BLESSED, f"not blessed: {outcome.get('bless_reason')}; nothing pushed")
    if outcome["load_checked"] is False:
        return _fail(EXIT_LOAD_CHECK, f"{outcome.get('load_check_reason')}; nothing pushed")
    return _fail(EXIT_ERROR, f"nothing pushed ({outcome['reason']})")


def _compile(args) -> int:
    import yaml
    from tfx import v1 as tfx

    from seg4reg_pipeline.pipeline import DEFAULT_GPU_TYPE, trainer_resources

    if args.gpu_type is not None and not args.gpus:
        return _fail(EXIT_USAGE, "error: --gpu-type: applies with --gpus N (N >= 1)")
    try:
        resources = trainer_resources(gpus=args.gpus, gpu_type=args.gpu_type or DEFAULT_GPU_TYPE, cpus=args.cpus,
                                      memory_gb=args.memory)
        pipeline = _pipeline_from_args(args, local=False, source_format=args.source_format,
                                       trainer_resource_spec=resources)
    except ValueError as err:
        return _fail(EXIT_USAGE, f"error: {err}")
    strategy = yaml.safe_load(load_pipeline_config(args.config, args.overrides)[0])["train"]["strategy"]
    if args.gpus > 1 and strategy == "default":
        print(f"seg4reg-pipeline: warning: the Trainer gets {args.gpus} GPUs but train.strategy is 'default' "
              "(one device); add --set train.strategy=mirrored to use them all", file=sys.stderr)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=args.image),
        output_dir=os.path.dirname(out), output_filename=os.path.basename(out))
    runner.run(pipeline, write_out=True)
    print(out)
    return 0


def format_lineage(info: dict) -> str:
    """Readable text of `mlmd_query.lineage`."""
    def art(a):
        return f"{a['type']} #{a['id']} {a['uri']}"

    b, e, i = info["blessing"], info["evaluation"] or {}, info["infra_blessing"]
    examples = info["data"]["examples"]
    metrics = ", ".join(f"{k} {e[k]:.3f}" for k in ("smape", "mae_pt", "mae_mt", "mae_tl", "dice_mean")
                        if isinstance(e.get(k), float))
    lines = [
        f"version {info['version']}: {info['destination']}",
        f"  data:       {info['data']['input_base']}  -> {art(info['data']['examples'])}"
        f" (span {examples.get('span')}, fingerprint {examples.get('input_fingerprint')})",
        f"  statistics: {art(info['statistics'])}",
        f"  anomalies:  {art(info['anomalies'])}",
        f"  schema:     {info['schema']['schema_file']} -> {art(info['schema'])}",
        f"  config:     {info['config']['path']} with --set {' '.join(info['config']['overrides'] or []) or '(none)'}",
        f"  model:      {art(info['model'])}",
        f"  metrics:    {metrics or 'n/a'} ({art(info['evaluation']) if info['evaluation'] else 'no evaluation'})",
        f"  blessing:   {'BLESSED' if b.get('blessed') == 1 else 'NOT BLESSED'} ({b.get('reason')})"
        + (f", baseline model #{b['baseline_model_id']} SMAPE {b['baseline_smape']:.3f}" if "baseline_model_id" in b
           else ", no baseline"),
        f"  load check: {'passed' if i.get('blessed') == 1 else 'failed'} ({i.get('reason')})",
        "  executions: " + ", ".join(f"{k} #{v['id']} {v['state']}" for k, v in info["executions"].items()),
        "  resolved config:",
    ]
    lines += ["    " + ln for ln in (info["config"]["resolved"] or "").splitlines()]
    return "\n".join(lines)


def _lineage(args) -> int:
    from seg4reg_pipeline.mlmd_query import lineage

    try:
        info = lineage(os.path.abspath(args.pipeline_root), args.serving_base, args.version)
    except (FileNotFoundError, LookupError) as err:
        return _fail(EXIT_ERROR, str(err.args[0] if err.args else err))
    print(json.dumps(info, indent=2, default=str) if args.json else format_lineage(info))
    return 0


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # config errors (ConfigError) name the key
        return _fail(EXIT_USAGE, f"error: {err}")


if __name__ == "__main__":
    sys.exit(main())
