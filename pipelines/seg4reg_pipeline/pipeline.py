"""`create_pipeline(...)`: the seg4reg TFX pipeline as a pure factory (runner-independent).

ExampleGen (fixed split) -> StatisticsGen -> ImportSchemaGen (curated pipelines/schema) ->
ExampleValidator -> ValidationGate -> Trainer (`seg4reg_pipeline.trainer.run_fn`) ->
Seg4RegEvaluator (vs the latest blessed model) -> LoadCheck (`seg4reg serve`) -> ServingPusher.
"""
from __future__ import annotations

import os
from typing import Sequence

from tfx import v1 as tfx

from seg4reg_pipeline import PIPELINE_NAME
from seg4reg_pipeline.components import LoadCheck, Seg4RegEvaluator, ServingPusher, ValidationGate
from seg4reg_pipeline.example_gen import make_example_gen

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema", "schema.pbtxt")
RUN_FN = "seg4reg_pipeline.trainer.run_fn"
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
DEFAULT_GPU_TYPE = "NVIDIA_TESLA_T4"  # a Vertex AI accelerator type (NVIDIA_L4, NVIDIA_TESLA_A100, ...)


def trainer_resources(*, gpus: int = 0, gpu_type: str = DEFAULT_GPU_TYPE, cpus: float | None = None,
                      memory_gb: float | None = None):
    """The Kubeflow V2 / Vertex `ResourceSpec` of the Trainer's container: `gpus` accelerators of `gpu_type`,
    `cpus` vCPUs and `memory_gb` GB of memory (limits); None when nothing is asked for.

    Raises ValueError naming the option for a negative count or size, or an empty GPU type.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f"--gpus: expected an int >= 0, got {gpus!r}")
    for name, value in (("--cpus", cpus), ("--memory", memory_gb)):
        if value is not None and not value > 0:
            raise ValueError(f"{name}: expected a positive number, got {value!r}")
    if gpus and not gpu_type:
        raise ValueError("--gpu-type: expected an accelerator type such as NVIDIA_TESLA_T4, got ''")
    if not gpus and cpus is None and memory_gb is None:
        return None
    spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
    if gpus:
        spec.accelerator.type, spec.accelerator.count = gpu_type, gpus
    if cpus is not None:
        spec.cpu_limit = float(cpus)
    if memory_gb is not None:
        spec.memory_limit = float(memory_gb)
    return spec


def create_pipeline(*, pipeline_root: str, data_root: str, config_yaml: str, serving_base: str,
                    bless_smape: float, regression_tolerance: float = 0.0, config_path: str = "",
                    overrides: Sequence[str] = (), split: str = "training", schema_file: str = SCHEMA_FILE,
                    serve_command: str = "", model_name: str = "seg4reg", source_format: str | None = None,
                    pipeline_name: str = PIPELINE_NAME,
                    metadata_connection_config=None, beam_pipeline_args: Sequence[str] = DEFAULT_BEAM_ARGS,
                    enable_cache: bool = True, trainer_resource_spec=None) -> tfx.dsl.Pipeline:
    """The pipeline (paths may be local or remote, e.g. gs:// for Vertex).

    Args:
        pipeline_root: artifacts (and, for LocalDagRunner, the sqlite MLMD given as
            `metadata_connection_config`). data_root: an AASCE-format root or `seg4reg data convert` shards.
        config_yaml: the resolved experiment config (`seg4reg_tf.training.config.save_config` text);
            config_path and overrides are recorded with it for lineage.
        serving_base: the TF Serving model base path the Pusher writes `N/` into.
        bless_smape: absolute blessing threshold (SMAPE, %); regression_tolerance: SMAPE points the
            candidate may exceed the latest blessed model by.
        serve_command: the `seg4reg` executable used for the load check (default: this environment's).
        source_format: "aasce" | "tfrecords" when `data_root` cannot be inspected (remote); else detected.
        trainer_resource_spec: the Trainer container's resources in a compiled spec (`trainer_resources`:
            GPUs, vCPUs, memory); None = the orchestrator's default.
    """
    example_gen = make_example_gen(data_root, split, source_format)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    example_validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                                        schema=schema_gen.outputs["schema"])
    gate = ValidationGate(statistics=statistics_gen.outputs["statistics"],
                          anomalies=example_validator.outputs["anomalies"], schema=schema_gen.outputs["schema"])
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN, examples=example_gen.outputs["examples"], schema=gate.outputs["validated_schema"],
        custom_config={"config_yaml": config_yaml, "config_path": config_path, "overrides": list(overrides)})
    if trainer_resource_spec is not None:
        trainer.with_platform_config(trainer_resource_spec)
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = Seg4RegEvaluator(examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
                                 baseline_model=baseline.outputs["model"], bless_smape=float(bless_smape),
                                 regression_tolerance=float(regression_tolerance))
    load_check = LoadCheck(model=trainer.outputs["model"], blessing=evaluator.outputs["blessing"],
                           serve_command=serve_command, model_name=model_name)
    pusher = ServingPusher(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
                           infra_blessing=load_check.outputs["infra_blessing"], serving_base=serving_base)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, gate, trainer, baseline,
                    evaluator, load_check, pusher],
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args))


def local_metadata_config(pipeline_root: str):
    """sqlite MLMD under the pipeline root (LocalDagRunner)."""
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.join(pipeline_root, "metadata.sqlite"))
