"""What the tests share: the tiny configs, the synthetic spines and X-rays, and the SavedModel contract.

Plain functions and constants (pytest fixtures in tests/conftest.py may wrap them). Only numpy and
OpenCV are imported at the top: TensorFlow, Keras and the package's configs load when a function
needs them, so tests/pipelines (driving the side environment) can import this module cheaply.
"""
from __future__ import annotations

import copy
import os

import cv2
import numpy as np

# -- seeds ---------------------------------------------------------------------------------------
# `make test-seeds` reruns the tests marked `numeric` (a training effect, a metric after training, a
# calibrated number) with SEG4REG_TEST_SEED = 0..9, oneDNN on and off: what another CPU kind's floats
# would do to them. Unset, every seed is the test's own.
SEED_SHIFT = int(os.environ.get("SEG4REG_TEST_SEED", "0"))


def set_seed(seed: int = 0) -> int:
    """`keras.utils.set_random_seed(seed + SEED_SHIFT)` (Python, NumPy, TF and Keras); returns that seed."""
    import keras

    keras.utils.set_random_seed(seed + SEED_SHIFT)
    return seed + SEED_SHIFT


# -- tiny configs -------------------------------------------------------------------------------
TINY_SIZE = (64, 32)  # model input (H, W): the smallest the encoders take (multiples of 8)
TINY_MODEL = {"reg_width": 4, "reg_depth": 3, "seg_width": 4, "seg_depth": 2}
TINY_EXPERIMENT = {
    "name": "tiny",
    "data": {"image_size": list(TINY_SIZE), "clahe": False, "batch_size": 4, "shuffle_buffer": 16,
             "augment": {"enabled": False}},
    "model": {"variant": "seg4reg_plus", "encoder": "light", **TINY_MODEL, "joint_warmup_epochs": 1},
    "train": {"epochs": 2, "optimizer": "adam", "learning_rate": 0.001, "schedule": "constant",
              "seed": SEED_SHIFT},
}


def tiny_experiment(overrides: dict | None = None) -> dict:
    """A deep copy of TINY_EXPERIMENT with `overrides` merged in, section by section (nested dicts merge)."""
    def merge(base: dict, extra: dict) -> dict:
        out = copy.deepcopy(base)
        for key, value in extra.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
                else copy.deepcopy(value)
        return out

    return merge(TINY_EXPERIMENT, overrides or {})


def tiny_model_config(**kw):
    """ModelConfig of TINY_MODEL (`kw` overrides any field)."""
    from seg4reg_tf.models.config import ModelConfig

    return ModelConfig(**{**TINY_MODEL, **kw})


def tiny_data_config(**kw):
    """DataConfig at TINY_SIZE without CLAHE (`kw` overrides any field)."""
    from seg4reg_tf.data.config import DataConfig

    kw.setdefault("image_size", TINY_SIZE)
    kw.setdefault("clahe", False)
    return DataConfig(**kw)


# -- synthetic spines (landmarks: (68, 2) float64 x, y; TL, TR, BL, BR per vertebra, T1 first) -------
def sine_spine(h: int, w: int, *, amplitude: float = 0.08, periods: float = 1.0, phase: float = 0.0,
               span: tuple[float, float] = (0.1, 0.9), width: float = 0.24, height: float = 0.7,
               tilt_gain: float = 1.0) -> np.ndarray:
    """17 rectangles down a sinusoidal centre line in an h x w image.

    Vertebra v sits in the middle of the v-th of 17 equal slots of rows span[0] * h .. span[1] * h, at
    x = w / 2 + amplitude * w * sin(2 pi periods t + phase), t in [0, 1] along the span. Its endplates
    are perpendicular to the centre line (tilt = tilt_gain * atan(dx/dy)); it is width * w wide and
    height * slot tall.
    """
    top, bottom = span[0] * h, span[1] * h
    pitch = (bottom - top) / 17.0
    k = 2 * np.pi * periods / (bottom - top)
    amp = amplitude * w
    out = np.zeros((68, 2))
    for v in range(17):
        cy = top + (v + 0.5) * pitch
        cx = w / 2.0 + amp * np.sin(k * (cy - top) + phase)
        theta = tilt_gain * np.arctan(amp * k * np.cos(k * (cy - top) + phase))  # dx/dy of the centre line
        u = np.array([np.cos(theta), -np.sin(theta)])  # along the endplate, rightwards
        n = np.array([np.sin(theta), np.cos(theta)])  # down the spine
        c, hw, hh = np.array([cx, cy]), width * w / 2.0, height * pitch / 2.0
        out[4 * v : 4 * v + 4] = [c - hw * u - hh * n, c + hw * u - hh * n, c - hw * u + hh * n, c + hw * u + hh * n]
    return out


def tilted_spine(tilts_deg, centres_x, centres_y, half_w: float = 20.0, half_h: float = 10.0) -> np.ndarray:
    """17 rectangles placed by hand: vertebra v centred at (centres_x[v], centres_y[v]), tilted by
    tilts_deg[v] (the geometry tests choose the tilts, hence the Cobb angles, directly)."""
    out = np.zeros((68, 2))
    local = np.array([[-half_w, -half_h], [half_w, -half_h], [-half_w, half_h], [half_w, half_h]])  # TL TR BL BR
    for v in range(17):
        t = np.radians(tilts_deg[v])
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        out[4 * v : 4 * v + 4] = local @ rot.T + [centres_x[v], centres_y[v]]
    return out


def interp_tilts(knots_idx, knots_deg) -> np.ndarray:
    """17 vertebra tilts (degrees) interpolated linearly between (vertebra index, tilt) knots."""
    return np.interp(np.arange(17), knots_idx, knots_deg)


SPINE_Y = 100.0 + 50.0 * np.arange(17)  # tilted_spine centres, 100 .. 900 px
C_CURVE_X = 300.0 - 0.05 * SPINE_Y + 120.0 * np.sin(np.pi * np.arange(17) / 16)  # one bump: one side of the chord
S_CURVE_X = 200.0 + 0.05 * SPINE_Y + 30.0 * np.sin(2 * np.pi * np.arange(17) / 16)  # both sides of the chord


# -- letterboxing, written out independently of seg4reg_tf.geometry.Letterbox --------------------
def letterbox_by_hand(orig_h, orig_w, size=(512, 256)) -> np.ndarray:
    """(scale, pad_top, pad_left, orig_h, orig_w) of an aspect-keeping, centre-padded resize to `size`."""
    h, w = size
    scale = min(h / orig_h, w / orig_w)
    return np.array([scale, (h - orig_h * scale) / 2.0, (w - orig_w * scale) / 2.0, orig_h, orig_w])


def to_model_frame(landmarks, t) -> np.ndarray:
    """Original-pixel landmarks mapped by a letterbox_by_hand transform `t`."""
    return np.stack([landmarks[:, 0] * t[0] + t[2], landmarks[:, 1] * t[0] + t[1]], axis=1)


# -- synthetic X-rays ---------------------------------------------------------------------------
def spine_xray(h: int, w: int, landmarks: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 [h, w]: a dark noisy vertical gradient with the vertebrae filled bright (T1 170 .. L5 234)."""
    rng = np.random.default_rng(seed)
    img = np.linspace(20, 60, h)[:, None] + np.zeros((1, w)) + rng.normal(0, 6, (h, w))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for v in range(17):
        q = landmarks[4 * v : 4 * v + 4][[0, 1, 3, 2]]
        cv2.fillPoly(img, [np.round(q).astype(np.int32)], color=170 + 4 * v)
    return img


def write_spine_records(directory, n: int = 3, sizes=((300, 120), (200, 160), (256, 100)), ext: str = ".png"):
    """n spine_xray images ("img {i} A AP{ext}", sizes cycled, curves differing per image) written into
    `directory`; returns their AasceRecords (angles: the official Cobb angles of the landmarks, 2 decimals)."""
    from seg4reg_tf.data.aasce import AasceRecord
    from seg4reg_tf.geometry import cobb_angles

    os.makedirs(directory, exist_ok=True)
    records = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        lm = sine_spine(h, w, amplitude=0.05 + 0.03 * (i % 4), phase=0.7 * i)
        name = f"img {i} A AP{ext}"
        path = os.path.join(str(directory), name)
        assert cv2.imwrite(path, spine_xray(h, w, lm, seed=i))
        records.append(AasceRecord(filename=name, image_path=path, height=h, width=w, landmarks=lm,
                                   angles=np.round(cobb_angles(lm, h), 2)))
    return records


def label_map_spine(h: int, w: int, phase: float = 0.0):
    """(landmarks, uint8 label map [h, w]) of a wide-vertebra sine_spine: the oracle models' input."""
    from seg4reg_tf.geometry import landmarks_to_label_map

    lm = sine_spine(h, w, amplitude=0.1, phase=phase, width=0.36, height=0.72)
    return lm, landmarks_to_label_map(lm, h, w)


def label_encoded_jpeg(labels: np.ndarray) -> bytes:
    """8-bit JPEG whose grey value is label * 15 (= label / 17 of 255)."""
    ok, data = cv2.imencode(".jpg", (labels.astype(np.uint16) * 15).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    return data.tobytes()


def label_encoded_png16(labels: np.ndarray) -> bytes:
    """16-bit PNG whose grey value is label * 3855 (= label / 17 of 65535)."""
    ok, data = cv2.imencode(".png", labels.astype(np.uint16) * 3855)
    assert ok
    return data.tobytes()


def box_spine_batch(n: int = 4, seed: int = 0):
    """A model-sized batch at TINY_SIZE: (images float32 [n, 64, 32, 1], labels int32 [n, 64, 32],
    angles float32 [n, 3]). Six upright 6 x 8 px boxes (labels 1..6) on faint noise, shifted right per
    image; the angles are fixed training targets, not the geometry of the boxes (n <= 4)."""
    h, w = TINY_SIZE
    rng = np.random.default_rng(seed)
    x = (0.1 * rng.random((n, h, w, 1))).astype("float32")
    labels = np.zeros((n, h, w), "int32")
    for i in range(n):
        c = 10 + 4 * i
        for v in range(6):
            r0 = 6 + 9 * v
            labels[i, r0:r0 + 6, c:c + 8] = v + 1
            x[i, r0:r0 + 6, c:c + 8, 0] += 0.8
    angles = np.array([[40.0, 20.0, 15.0], [25.0, 10.0, 12.0], [60.0, 30.0, 28.0], [12.0, 6.0, 5.0]],
                      "float32")[:n]
    return x, labels, angles


def box_spine_dataset(n: int = 4, batch: int = 2, seed: int = 0):
    """box_spine_batch as a tf.data.Dataset of ({"image"}, {"angles", "labels"}) batches."""
    import tensorflow as tf

    x, labels, angles = box_spine_batch(n, seed)
    return tf.data.Dataset.from_tensor_slices(({"image": x}, {"angles": angles, "labels": labels})).batch(batch)


# -- the exported SavedModel's signatures (docs/architecture.md, "The exported SavedModel") --------
MODEL_OUTPUTS = ("cobb_angles", "cobb_angles_image", "cobb_angles_segmentation", "consistency",
                 "vertebra_labels", "attention_map")
GEOMETRY_OUTPUTS = ("cobb_angles_geometry", "end_vertebrae", "vertebra_landmarks", "vertebra_tilts",
                    "vertebra_visible")  # with model.geometry_head
UPRIGHT_OUTPUTS = ("upright_margin",)  # with model.upright_check
INTERVAL_OUTPUTS = ("cobb_angles_lower", "cobb_angles_upper")  # exported with intervals
VARIANT_OUTPUTS = MODEL_OUTPUTS + GEOMETRY_OUTPUTS + UPRIGHT_OUTPUTS + INTERVAL_OUTPUTS
MEASURABLE_OUTPUTS = ("measurable_score", "measurable_reason")
MAPPING_OUTPUTS = ("original_size", "scale", "padding")


def _contract(image_size, attention_size):
    """{signature: (input name, dtype name, shape), {output: (dtype name, shape)}}, -1 = any size."""
    from seg4reg_tf.export.layout import IMAGE_BYTES_INPUT, PREDICT_EXAMPLE, PREDICT_IMAGE, SERVING_DEFAULT

    h, w = image_size
    ah, aw = attention_size if attention_size is not None else (None, None)
    model = {
        "cobb_angles": ("DT_FLOAT", [-1, 3]),
        "cobb_angles_image": ("DT_FLOAT", [-1, 3]),
        "cobb_angles_segmentation": ("DT_FLOAT", [-1, 3]),
        "consistency": ("DT_FLOAT", [-1]),
        "vertebra_labels": ("DT_UINT8", [-1, h, w]),
        "attention_map": ("DT_FLOAT", [-1, ah, aw]),  # None: any fixed size
        "cobb_angles_geometry": ("DT_FLOAT", [-1, 3]),
        "end_vertebrae": ("DT_INT32", [-1, 3, 2]),
        "vertebra_landmarks": ("DT_FLOAT", [-1, 68, 2]),
        "vertebra_tilts": ("DT_FLOAT", [-1, 17]),
        "vertebra_visible": ("DT_FLOAT", [-1, 17]),
        "upright_margin": ("DT_FLOAT", [-1]),
        "cobb_angles_lower": ("DT_FLOAT", [-1, 3]),
        "cobb_angles_upper": ("DT_FLOAT", [-1, 3]),
        "measurable_score": ("DT_FLOAT", [-1]),
        "measurable_reason": ("DT_STRING", [-1]),
    }
    mapping = {"original_size": ("DT_INT32", [-1, 2]), "scale": ("DT_FLOAT", [-1]), "padding": ("DT_FLOAT", [-1, 2])}
    return {
        SERVING_DEFAULT: ((IMAGE_BYTES_INPUT, "DT_STRING", [-1]), {**model, **mapping}),
        PREDICT_IMAGE: (("image", "DT_FLOAT", [-1, h, w, 1]), model),
        PREDICT_EXAMPLE: (("examples", "DT_STRING", [-1]), {**model, **mapping}),
    }


def signature_defs(version_dir) -> dict:
    """{name: SignatureDef proto} read from `version_dir`/saved_model.pb (no graph is loaded)."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(str(version_dir), "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    return dict(sm.meta_graphs[0].signature_def)


def check_signatures(saved_model, image_size, outputs=MODEL_OUTPUTS, attention_size=None) -> None:
    """Assert the signatures of an exported model: `saved_model` is a version dir or a mapping
    {name: SignatureDef} (e.g. from GetModelMetadata). `outputs`: the model outputs the variant has
    (of VARIANT_OUTPUTS; the measurability and, bar predict_image, mapping outputs always come too).
    `attention_size`: the attention map's (h, w), if the caller knows it."""
    from tensorflow.core.framework import types_pb2

    unknown = set(outputs) - set(VARIANT_OUTPUTS)
    assert not unknown, f"not model outputs: {sorted(unknown)}"
    sigs = signature_defs(saved_model) if isinstance(saved_model, (str, os.PathLike)) else dict(saved_model)
    contract = _contract(image_size, attention_size)
    assert set(contract) <= set(sigs), f"signatures {sorted(sigs)} lack {sorted(set(contract) - set(sigs))}"
    for name, ((in_key, in_dtype, in_shape), all_outputs) in contract.items():
        sig = sigs[name]
        assert sig.method_name == "tensorflow/serving/predict", name
        assert list(sig.inputs) == [in_key], (name, list(sig.inputs))
        info = sig.inputs[in_key]
        assert types_pb2.DataType.Name(info.dtype) == in_dtype, (name, in_key)
        assert [d.size for d in info.tensor_shape.dim] == in_shape, (name, in_key)
        assert in_key in info.name, (name, info.name)  # explicit tensor names
        want = {k: v for k, v in all_outputs.items() if k in outputs or k not in VARIANT_OUTPUTS}
        assert set(sig.outputs) == set(want), (name, sorted(sig.outputs), sorted(want))
        for key, (dtype, shape) in want.items():
            out = sig.outputs[key]
            assert types_pb2.DataType.Name(out.dtype) == dtype, (name, key)
            got = [d.size for d in out.tensor_shape.dim]
            assert len(got) == len(shape), (name, key, got)
            for g, s in zip(got, shape):
                assert g == s if s is not None else g > 0, (name, key, got, shape)


def load_benchmark(name: str):
    """The module of the script benchmarks/<name>.py (benchmarks/ is not a package)."""
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "benchmarks", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def strip_preprocessing(keras_file) -> None:
    """Rewrite a Seg4RegPlus .keras file as one saved before models carried their preprocessing (no key)."""
    import json
    import zipfile

    with zipfile.ZipFile(keras_file) as z:
        files = {name: z.read(name) for name in z.namelist()}
    config = json.loads(files["config.json"])
    del config["config"]["preprocessing"]
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(keras_file, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
