"""python scripts/add_intervals.py VERSION_DIR INTERVALS_JSON --out BASE --version N

A shipped one-network version exported again, unchanged but for calibrated intervals per angle
(`cobb_angles_lower` / `cobb_angles_upper`; INTERVALS_JSON from `benchmarks/interval_calibration.py --write`
on that version): the network is unpacked (`seg4reg_tf.export.unpack`) and exported with the same config
and float16 weights. Prints the new version directory and the largest change of any angle output on
synthetic X-rays (0 expected)."""
import argparse

import cv2
import numpy as np
import tensorflow as tf

from seg4reg_tf.data.synth import synth_example
from seg4reg_tf.export.savedmodel import ANGLE_OUTPUTS, export_model
from seg4reg_tf.export.unpack import unpack_single

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version_dir")
    parser.add_argument("intervals")
    parser.add_argument("--out", required=True, help="TF Serving model base path")
    parser.add_argument("--version", required=True, type=int)
    args = parser.parse_args()
    try:
        cfg, model = unpack_single(args.version_dir)
    except ValueError as err:
        parser.error(str(err))
    path = export_model(model, args.out, args.version, config=cfg, weights_dtype="float16", intervals=args.intervals)
    rng = np.random.default_rng(0)
    images = tf.constant([cv2.imencode(".jpg", synth_example(rng, height_range=(900, 1100))[0])[1].tobytes()
                          for _ in range(4)])
    old, new = (tf.saved_model.load(p).signatures["serving_default"](image_bytes=images)
                for p in (args.version_dir, path))
    change = max(float(np.max(np.abs(old[k].numpy() - new[k].numpy()))) for k in ANGLE_OUTPUTS if k in old)
    print(path)
    print(f"largest change of an angle output: {change:g} deg")
