"""A model at the films' own shape (88 x 32, 2.75:1 like 352 x 128), not 2:1: the exported signatures,
the letterbox into it, and the SavedModel answering as the Keras model does on the same input, with the
vertebrae mapped back to the film's own pixels."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.data.preprocess import decode_image, preprocess
from seg4reg_tf.export.prediction import Prediction
from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus
from tests.fixtures import (
    GEOMETRY_OUTPUTS,
    MODEL_OUTPUTS,
    check_signatures,
    letterbox_by_hand,
    set_seed,
    sine_spine,
    spine_xray,
    tiny_data_config,
    tiny_model_config,
)

SIZE = (88, 32)
FILMS = ((330, 120), (300, 150), (352, 96))  # the model's aspect; wider (padded above and below); narrower


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    set_seed(5)
    cfg = tiny_data_config(image_size=SIZE)
    model = Seg4RegPlus(tiny_model_config(geometry_head=True, head="fused"), preprocessing=cfg)
    base = tmp_path_factory.mktemp("film_shaped") / "seg4reg"
    export_model(model, base, 1)
    return model, cfg, base / "1"


def test_signatures_at_the_films_shape(exported):
    model, _, path = exported
    attention = model(np.zeros((1, *SIZE, 1), "float32"))["attention_map"].shape[1:3]
    check_signatures(path, SIZE, outputs=MODEL_OUTPUTS + GEOMETRY_OUTPUTS, attention_size=tuple(attention))


def test_serving_default_letterboxes_and_maps_back_at_the_films_shape(exported):
    model, cfg, path = exported
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    for h, w in FILMS:
        data = cv2.imencode(".png", spine_xray(h, w, sine_spine(h, w, amplitude=0.06)))[1].tobytes()
        got = {k: v.numpy() for k, v in fn(image_bytes=tf.constant([data])).items()}
        t = letterbox_by_hand(h, w, SIZE)
        assert got["scale"][0] == pytest.approx(t[0], rel=1e-6)
        np.testing.assert_allclose(got["padding"][0], t[1:3], atol=0.51)  # centre padding, up to rounding

        image, _ = preprocess(decode_image(tf.constant(data)), cfg)
        ref = {k: np.asarray(v) for k, v in model(image[None], training=False).items()}
        for key in ("cobb_angles", "cobb_angles_geometry", "cobb_angles_segmentation", "vertebra_tilts"):
            np.testing.assert_allclose(got[key], ref[key], atol=1e-3, err_msg=f"{key} of a {h} x {w} film")
        # the fused answer is the mean of the two heads at this size too
        np.testing.assert_allclose(got["cobb_angles"], 0.5 * (ref["cobb_angles_geometry"]
                                                              + ref["cobb_angles_segmentation"]), atol=1e-3)
        # vertebrae in the film's pixels: the model frame's landmarks un-letterboxed by hand
        pred = Prediction.from_outputs(got)
        by_hand = (ref["vertebra_landmarks"][0] - [got["padding"][0][1], got["padding"][0][0]]) / got["scale"][0]
        np.testing.assert_allclose(pred.vertebrae, by_hand, atol=1e-2)
