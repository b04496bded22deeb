"""Subprocess entry for the strategy tests: `python _worker.py STRATEGY DATA RUN [logical_cpus]`."""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

if __name__ == "__main__":
    strategy, data, run = sys.argv[1:4]
    import tensorflow as tf

    if len(sys.argv) > 4:  # must happen before TensorFlow initialises its devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[4]))
    from seg4reg_tf.training.config import config_from_dict
    from seg4reg_tf.training.train import train
    from tests.fixtures import TINY_EXPERIMENT as TINY

    cfg = config_from_dict(TINY, ["model.variant=reg_only", "train.epochs=1", "train.steps_per_epoch=2",
                                  "train.val_steps=1", "data.batch_size=2"])
    summary = train(cfg, data, run, strategy_name=strategy, verbose=2)
    print("SUMMARY " + json.dumps({k: summary[k] for k in ("replicas", "global_batch", "epochs_run", "strategy")}))
