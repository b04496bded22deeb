"""python scripts/add_upright_check.py VERSION_DIR DATA_ROOT --out BASE --version N

A shipped one-network version (float16 weights) given a fitted upright check (`model.upright_check`,
`seg4reg_tf.models.upright_probe`) and exported as a new version with the same network: the model is
unpacked (`seg4reg_tf.export.unpack`), the check fitted on DATA_ROOT's fixed training split and its
errors on the validation split printed (wrong-sided images per orientation)."""
import argparse
import dataclasses
import json

from seg4reg_tf.data.sources import training_splits
from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.export.unpack import unpack_single
from seg4reg_tf.training.upright import fit_upright_check, training_images, with_upright_check

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version_dir")
    parser.add_argument("data_root")
    parser.add_argument("--out", required=True, help="TF Serving model base path")
    parser.add_argument("--version", required=True, type=int)
    args = parser.parse_args()
    try:
        cfg, model = unpack_single(args.version_dir)
    except ValueError as err:
        parser.error(str(err))
    model = with_upright_check(model)
    result = fit_upright_check(model, *training_images(cfg.data, *training_splits(args.data_root)))
    print(json.dumps(result, indent=2))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, upright_check=True))
    print(export_model(model, args.out, args.version, config=cfg, weights_dtype="float16"))
