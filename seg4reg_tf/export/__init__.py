"""Export: SavedModel signatures with in-graph preprocessing, the TF Serving layout, warmup records.

Public API: `export_model(model, base_path, version)` (the model carries its preprocessing),
`export_run(run_dir, base_path, version)` (in `seg4reg_tf.export.savedmodel`; imported lazily here so
`import seg4reg_tf.export` stays cheap).
"""
from seg4reg_tf._lazy import lazy_getattr

__getattr__ = lazy_getattr(__name__, {"export_model": "seg4reg_tf.export.savedmodel",
                                      "export_run": "seg4reg_tf.export.savedmodel",
                                      "latest_version_dir": "seg4reg_tf.export.layout"})
