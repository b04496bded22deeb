"""Export: SavedModel signatures with in-graph preprocessing, the TF Serving layout, warmup records.

Public API: `export_model(model, data_cfg, base_path, version)`, `export_run(run_dir, base_path, version)`
(in `seg4reg_tf.export.savedmodel`; imported lazily here so `import seg4reg_tf.export` stays cheap).
"""


def __getattr__(name):
    if name in ("export_model", "export_run", "latest_version_dir"):
        from seg4reg_tf.export import savedmodel

        return getattr(savedmodel, name)
    raise AttributeError(f"module 'seg4reg_tf.export' has no attribute {name!r}")
