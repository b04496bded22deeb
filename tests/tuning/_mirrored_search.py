"""Subprocess entry: `python _mirrored_search.py DATA OUT`: a 1-trial search under Mirrored on 2 logical CPUs."""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root

if __name__ == "__main__":
    data, out = sys.argv[1:3]
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]  # before TensorFlow initialises its devices
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from seg4reg_tf.training.config import config_from_dict
    from seg4reg_tf.tuning import search
    from tests.fixtures import TINY_EXPERIMENT as TINY

    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen["strategy"] = type(tf.distribute.get_strategy()).__name__
            seen["variable_type"] = type(self.model.trainable_variables[0].value).__name__

    original_fit = search.Seg4RegHyperModel.fit

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        seen["replicas"] = self.replicas
        return original_fit(self, hp, model, *args, callbacks=list(callbacks or ()) + [Probe()], **kwargs)

    search.Seg4RegHyperModel.fit = fit
    cfg = config_from_dict(TINY, ["model.variant=reg_only", "train.epochs=1", "train.steps_per_epoch=2",
                                  "train.val_steps=1", "data.batch_size=2", "train.strategy=mirrored"])
    summary = search.run_search(cfg, data, out, trials=1, algorithm="random", verbose=0)
    print("SEEN " + json.dumps({**seen, "completed": summary["completed"]}))
