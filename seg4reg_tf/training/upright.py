"""Fitting the upright check (`models.upright_probe`) of a trained model on its training images."""
from __future__ import annotations

import logging

import keras
import numpy as np

from seg4reg_tf import fileio
from seg4reg_tf.data.pipeline import build_dataset
from seg4reg_tf.models.upright_probe import upright_errors

log = logging.getLogger(__name__)


def dataset_images(dataset) -> np.ndarray:
    """float32 [N, H, W, 1] model inputs of every batch of a `(features, ...)` dataset, in [0, 1]."""
    batches = [np.asarray(element[0]["image"], np.float32) for element in dataset]
    if not batches:
        raise ValueError("upright check: the dataset holds no images")
    images = np.concatenate(batches)
    return images / 255.0 if images.max() > 1.0 else images


def with_upright_check(model):
    """A copy of a `Seg4RegPlus` trained without the upright check that has one (unfitted), with the
    same weights; `model` itself when it has one."""
    if model.upright is not None:
        return model
    config = model.get_config()
    config["model_config"] = {**config["model_config"], "upright_check": True}
    clone = type(model).from_config(config)
    for name in ("regressor", "segmenter", "geometry"):
        part = getattr(model, name)
        if part is not None:
            getattr(clone, name).set_weights(part.get_weights())
    clone.joint_weight.assign(model.joint_weight)
    return clone


def fit_upright_check(model, train_images: np.ndarray, val_images: np.ndarray | None = None) -> dict:
    """Fit `model.upright` on upright training inputs [N, H, W, 1]; returns {"n_train", and with
    validation images "validation_errors": {view: wrong-sided images of n_val}, "n_val"}."""
    if model.upright is None:
        raise ValueError("upright check: the model has none (model.upright_check is false)")
    model.upright.fit(train_images)
    result = {"n_train": int(len(train_images))}
    if val_images is not None and len(val_images):
        result["validation_errors"] = upright_errors(model.upright, val_images)
        result["n_val"] = int(len(val_images))
        log.info("upright check fitted on %d images; wrong side on validation (%d per view): %s",
                 len(train_images), len(val_images), result["validation_errors"])
    return result


def training_images(data_cfg, train_split, val_split) -> tuple[np.ndarray, np.ndarray]:
    """The unaugmented model inputs [N, H, W, 1] of two `data.sources.Split`s, preprocessed by `data_cfg`."""
    return tuple(dataset_images(build_dataset(cfg=data_cfg, training=False, batch_size=16, **s.dataset_kwargs()))
                 for s in (train_split, val_split))


def fit_saved_upright_check(model_path: str, data_cfg, train_split, val_split) -> dict:
    """Fit the upright check of the model saved at `model_path` (a `.keras` file with one) on the
    `training_images` of `train_split`, report it on `val_split`'s, and save the model back in place
    (atomically). Returns `fit_upright_check`'s result."""
    model = keras.saving.load_model(model_path, compile=False)
    result = fit_upright_check(model, *training_images(data_cfg, train_split, val_split))
    incoming = fileio.incoming_path(model_path)
    model.save(incoming)
    fileio.replace(incoming, model_path)
    return result
