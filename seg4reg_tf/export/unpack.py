"""Keras models back out of an exported version (to fine-tune a shipped model: `train.init_weights`)."""
from __future__ import annotations

import os

import numpy as np

from seg4reg_tf import fileio
from seg4reg_tf.export.layout import CONFIG_RELPATH, MEMBER_CONFIG_RELPATH, PREDICT_IMAGE

WEIGHTS_COLLECTION = "weights_float16"  # what `export_model(..., weights_dtype="float16")` tracks, in order


def unpack_savedmodel(version_dir, out_dir, tolerance_deg: float = 0.01) -> list[str]:
    """Write the model of a float16-weight export as `member_<i>.keras` (one per ensemble member, or
    `member_0.keras`) under `out_dir`; returns their paths.

    The variables are read from the export's ordered float16 collection into models rebuilt from
    assets.extra's configs (each carrying its config's preprocessing, so it exports as it is); the
    rebuilt model must reproduce the SavedModel's `predict_image` angles on a test image within
    `tolerance_deg`, otherwise nothing is written.

    Raises:
        ValueError naming the version directory when it has no float16 collection (a float32 export
        tracks its variables without an order) or the rebuilt model does not reproduce it.
    """
    import tensorflow as tf

    from seg4reg_tf.models.ensemble import Seg4RegEnsemble
    from seg4reg_tf.models.preprocessing import Preprocessing
    from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus
    from seg4reg_tf.training.config import load_config

    version_dir = os.fspath(version_dir)
    loaded = tf.saved_model.load(version_dir)
    if not hasattr(loaded, WEIGHTS_COLLECTION):
        raise ValueError(f"{version_dir}: no {WEIGHTS_COLLECTION!r} variable collection; only exports made with "
                         "--weights float16 keep their variables in model order")
    member_files = []
    while fileio.isfile(os.path.join(version_dir, MEMBER_CONFIG_RELPATH.format(index=len(member_files)))):
        member_files.append(os.path.join(version_dir, MEMBER_CONFIG_RELPATH.format(index=len(member_files))))
    configs = [load_config(f) for f in member_files or [os.path.join(version_dir, CONFIG_RELPATH)]]
    members = [Seg4RegPlus(c.model, preprocessing=Preprocessing.of(c.data), load_encoder_weights=False)
               for c in configs]
    model = members[0] if len(members) == 1 else Seg4RegEnsemble(members)
    targets = [v for v in model.variables if v.dtype == "float32"]
    halves = list(getattr(loaded, WEIGHTS_COLLECTION))
    if len(halves) != len(targets) or any(tuple(h.shape) != tuple(v.shape) for h, v in zip(halves, targets)):
        raise ValueError(f"{version_dir}: its {len(halves)} float16 variables do not match the {len(targets)} "
                         "of the model its configs describe")
    for h, v in zip(halves, targets):
        v.assign(tf.cast(h, tf.float32))
    image = np.random.default_rng(0).random((1, *members[0].image_size, 1), dtype=np.float32)
    want = loaded.signatures[PREDICT_IMAGE](image=tf.constant(image))["cobb_angles"].numpy()
    got = np.asarray(model({"image": image}, training=False)["cobb_angles"])
    if not np.allclose(want, got, atol=tolerance_deg):
        raise ValueError(f"{version_dir}: the rebuilt model gives {got.round(3).tolist()} deg, the SavedModel "
                         f"{want.round(3).tolist()}: not reproduced within {tolerance_deg} deg")
    fileio.makedirs(out_dir)
    paths = []
    for i, member in enumerate(members):  # each written whole, then renamed into place (any filesystem)
        paths.append(os.path.join(os.fspath(out_dir), f"member_{i}.keras"))
        member.save(fileio.incoming_path(paths[-1]))  # keeps the .keras suffix Keras requires
        fileio.replace(fileio.incoming_path(paths[-1]), paths[-1])
    return paths


def unpack_single(version_dir):
    """(its ExperimentConfig, the Keras model) of a one-network version, unpacked through a temporary folder;
    ValueError for an ensemble (the scripts that re-export a shipped version with an addition use it)."""
    import tempfile

    import keras

    from seg4reg_tf.training.config import load_config

    cfg = load_config(fileio.join(os.fspath(version_dir), CONFIG_RELPATH))
    with tempfile.TemporaryDirectory() as tmp:
        paths = unpack_savedmodel(version_dir, tmp)
        if len(paths) != 1:
            raise ValueError(f"{version_dir}: an ensemble of {len(paths)}; expected one network")
        return cfg, keras.saving.load_model(paths[0], compile=False)
