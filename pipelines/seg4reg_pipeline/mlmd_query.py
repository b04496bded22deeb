"""Reading the pipeline's ML Metadata: the outcome of the latest run and the lineage of a pushed version."""
from __future__ import annotations

import json
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

NODE_ORDER = ("FileBasedExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "ValidationGate",
              "Trainer", "latest_blessed_model_resolver", "Seg4RegEvaluator", "LoadCheck", "ServingPusher")
_STATES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
_INPUTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def open_store(pipeline_root: str) -> metadata_store.MetadataStore:
    """The sqlite MLMD of a LocalDagRunner pipeline root (read-only use)."""
    path = os.path.join(pipeline_root, "metadata.sqlite")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no ML Metadata store (has `seg4reg-pipeline run` used this pipeline root?)")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def props(node) -> dict:
    """Properties and custom properties of an MLMD artifact/execution as plain Python values."""
    out = {}
    for src in (node.properties, node.custom_properties):
        for k, v in src.items():
            kind = v.WhichOneof("value")
            if kind == "proto_value":
                continue
            out[k] = getattr(v, kind) if kind else None
    return out


class Store:
    """Small helpers over an MLMD store."""

    def __init__(self, store: metadata_store.MetadataStore):
        self.store = store
        self._types = {t.id: t.name for t in store.get_artifact_types()}
        self._exec_types = {t.id: t.name for t in store.get_execution_types()}

    def artifact_type(self, artifact) -> str:
        return self._types.get(artifact.type_id, "?")

    def node_of(self, execution) -> str:
        for ctx in self.store.get_contexts_by_execution(execution.id):
            if ctx.type == "node":
                return ctx.name.split(".", 1)[-1]
        return self._exec_types.get(execution.type_id, "?").rsplit(".", 1)[-1]

    def events(self, execution, kinds) -> list:
        evs = [e for e in self.store.get_events_by_execution_ids([execution.id]) if e.type in kinds]
        arts = {a.id: a for a in self.store.get_artifacts_by_id([e.artifact_id for e in evs])}
        return [(e.path.steps[0].key if e.path.steps else "", arts[e.artifact_id]) for e in evs]

    def producer(self, artifact):
        evs = [e for e in self.store.get_events_by_artifact_ids([artifact.id]) if e.type in _OUTPUTS]
        if not evs:
            return None
        return self.store.get_executions_by_id([min(e.execution_id for e in evs)])[0]

    def latest_run(self) -> list:
        """[(node id, state name, execution)] of the newest pipeline run, in pipeline order."""
        runs = self.store.get_contexts_by_type("pipeline_run")
        if not runs:
            return []
        run = max(runs, key=lambda c: c.id)
        rows = [(self.node_of(e), _STATES.get(e.last_known_state, "?"), e)
                for e in self.store.get_executions_by_context(run.id)]
        order = {n: i for i, n in enumerate(NODE_ORDER)}
        return sorted(rows, key=lambda r: (order.get(r[0], 99), r[2].id))


def run_outcome(pipeline_root: str) -> dict:
    """{"nodes": [(node, state)], "pushed", "version", "destination", "reason", "blessed", "load_checked"}
    of the latest run (values None where the component did not run)."""
    s = Store(open_store(pipeline_root))
    rows = s.latest_run()
    out = {"nodes": [(n, st) for n, st, _ in rows], "pushed": None, "version": None, "destination": None,
           "reason": None, "blessed": None, "load_checked": None, "metrics": {}}
    for node, _state, execution in rows:
        outputs = dict(s.events(execution, _OUTPUTS))
        if node == "Seg4RegEvaluator" and "blessing" in outputs:
            p = props(outputs["blessing"])
            out["blessed"] = p.get("blessed") == 1
            out["metrics"] = {k: p[k] for k in ("smape", "mae_pt", "mae_mt", "mae_tl", "dice_mean", "baseline_smape")
                              if k in p}
            out["bless_reason"] = p.get("reason")
        elif node == "LoadCheck" and "infra_blessing" in outputs:
            p = props(outputs["infra_blessing"])
            out["load_checked"] = p.get("blessed") == 1
            out["load_check_reason"] = p.get("reason")
        elif node == "ServingPusher" and "pushed_model" in outputs:
            p = props(outputs["pushed_model"])
            out["pushed"] = p.get("pushed") == 1
            out["version"] = p.get("pushed_version")
            out["destination"] = p.get("pushed_destination")
            out["reason"] = p.get("reason")
    return out


def _describe_artifact(s: Store, art) -> dict:
    p = props(art)
    d = {"type": s.artifact_type(art), "id": art.id, "uri": art.uri}
    d.update({k: v for k, v in p.items() if k not in ("tfx_version",)})
    return d


def lineage(pipeline_root: str, serving_base: str, version: int | None = None) -> dict:
    """What produced `serving_base/version` (default: the newest version this pipeline pushed there):
    the data, schema, config, metrics and blessings, from MLMD."""
    from seg4reg_tf import fileio

    s = Store(open_store(pipeline_root))
    base = fileio.absolute(serving_base).rstrip("/")
    pushed = []
    for art in s.store.get_artifacts_by_type("PushedModel"):
        p = props(art)
        dest = p.get("pushed_destination")
        if p.get("pushed") == 1 and dest and os.path.dirname(fileio.absolute(dest)) == base:
            pushed.append((int(p["pushed_version"]), art))
    if not pushed:
        raise LookupError(f"{pipeline_root}: no model was pushed to {base} by this pipeline")
    if version is None:
        version = max(v for v, _ in pushed)
    matches = sorted((a for v, a in pushed if v == version), key=lambda a: a.id)
    if not matches:
        raise LookupError(f"{base}/{version}: not pushed by this pipeline (pushed: {sorted({v for v, _ in pushed})})")
    pushed_art = matches[0]
    pusher = s.producer(pushed_art)
    inputs = dict(s.events(pusher, _INPUTS))
    model, blessing, infra = inputs["model"], inputs["model_blessing"], inputs["infra_blessing"]
    trainer = s.producer(model)
    t_inputs = dict(s.events(trainer, _INPUTS))
    t_props = props(trainer)
    custom = json.loads(t_props.get("custom_config") or "{}")
    examples, vschema = t_inputs["examples"], t_inputs["schema"]
    example_gen = s.producer(examples)
    gate = s.producer(vschema)
    g_inputs = dict(s.events(gate, _INPUTS))
    schema_gen = s.producer(g_inputs["schema"])
    evaluator = s.producer(blessing)
    evaluation = dict(s.events(evaluator, _OUTPUTS)).get("evaluation")
    eg = props(example_gen)
    return {
        "version": version, "destination": props(pushed_art).get("pushed_destination"),
        "pushed_model": _describe_artifact(s, pushed_art),
        "data": {"input_base": eg.get("input_base"), "input_config": eg.get("input_config"),
                 "examples": _describe_artifact(s, examples)},
        "statistics": _describe_artifact(s, g_inputs["statistics"]),
        "anomalies": _describe_artifact(s, g_inputs["anomalies"]),
        "schema": {"schema_file": props(schema_gen).get("schema_file"), **_describe_artifact(s, vschema)},
        "config": {"path": custom.get("config_path"), "overrides": custom.get("overrides"),
                   "resolved": custom.get("config_yaml")},
        "model": _describe_artifact(s, model),
        "evaluation": None if evaluation is None else _describe_artifact(s, evaluation),
        "blessing": _describe_artifact(s, blessing),
        "infra_blessing": _describe_artifact(s, infra),
        "executions": {name: {"id": e.id, "state": _STATES.get(e.last_known_state, "?")}
                       for name, e in (("ExampleGen", example_gen), ("ImportSchemaGen", schema_gen),
                                       ("ValidationGate", gate), ("Trainer", trainer), ("Evaluator", evaluator),
                                       ("Pusher", pusher))},
    }
