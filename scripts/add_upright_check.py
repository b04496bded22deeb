"""python scripts/add_upright_check.py VERSION_DIR DATA_ROOT --out BASE --version N

A shipped one-network version (float16 weights) given a fitted upright check (`model.upright_check`,
`seg4reg_tf.models.upright_probe`) and exported as a new version with the same network: the model is
unpacked (`seg4reg_tf.export.unpack`), the check fitted on DATA_ROOT's fixed training split and its
errors on the validation split printed (wrong-sided images per orientation)."""
import argparse
import dataclasses
import json
import tempfile

import keras

from seg4reg_tf.data.sources import training_splits
from seg4reg_tf.export.layout import CONFIG_RELPATH
from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.export.unpack import unpack_savedmodel
from seg4reg_tf.training.config import load_config
from seg4reg_tf.training.upright import fit_upright_check, training_images, with_upright_check

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version_dir")
    parser.add_argument("data_root")
    parser.add_argument("--out", required=True, help="TF Serving model base path")
    parser.add_argument("--version", required=True, type=int)
    args = parser.parse_args()
    cfg = load_config(f"{args.version_dir}/{CONFIG_RELPATH}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = unpack_savedmodel(args.version_dir, tmp)
        if len(paths) != 1:
            parser.error(f"{args.version_dir}: an ensemble of {len(paths)}; expected one network")
        model = with_upright_check(keras.saving.load_model(paths[0], compile=False))
    result = fit_upright_check(model, *training_images(cfg.data, *training_splits(args.data_root)))
    print(json.dumps(result, indent=2))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, upright_check=True))
    print(export_model(model, args.out, args.version, config=cfg, weights_dtype="float16"))
