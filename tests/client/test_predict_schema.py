"""The predict JSON under the glossary's names (schema 4): the same answers as schema 3 gave, key by key,
on validation X-rays, and schema 3 files still read (with a deprecation warning)."""
from __future__ import annotations

import json
import math
import pathlib

import pytest

from seg4reg_tf.client.predict import JSON_SCHEMA_VERSION, RENAMED_KEYS, LocalPredictor, read_result, run_predict
from seg4reg_tf.geometry import VERTEBRA_NAMES

REPO = pathlib.Path(__file__).resolve().parents[2]
REAL = REPO / ".." / "shared" / "aasce" / "boostnet_labeldata" / "data" / "training"
DATA = pathlib.Path(__file__).parent / "data"
# written by `seg4reg predict --model serving/models/seg4reg/7` before the renames (schema 3; the vertebrae's
# corners left out)
SCHEMA3 = {"sunhl-1th-03-Jan-2017-164 A AP.jpg": "schema3_164A.json",  # measured, no caution
           "sunhl-1th-06-Jan-2017-189 A AP.jpg": "schema3_189A.json"}  # the fitted vertebrae disagree: a caution


def _same(old, new, where: str, tol: float) -> None:
    """Key by key: the same keys, strings and flags equal, numbers within `tol`."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and set(old) == set(new), (where, sorted(set(old) ^ set(new)))
        for k in old:
            _same(old[k], new[k], f"{where}.{k}", tol)
    elif isinstance(old, list):
        assert isinstance(new, list) and len(old) == len(new), where
        for i, (a, b) in enumerate(zip(old, new)):
            _same(a, b, f"{where}[{i}]", tol)
    elif isinstance(old, float) and not isinstance(new, bool):
        assert isinstance(new, (int, float)) and math.isclose(old, new, abs_tol=tol), (where, old, new)
    else:
        assert old == new, (where, old, new)


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/aasce/boostnet_labeldata (real AASCE X-rays)")
@pytest.mark.slow
def test_the_renamed_json_answers_as_schema_3_did(tmp_path):
    files = [REAL / name for name in SCHEMA3]
    assert run_predict(files, tmp_path, LocalPredictor(str(REPO / "serving" / "models" / "seg4reg" / "7")),
                       progress=False) == 0
    for name, fixture in SCHEMA3.items():
        with pytest.warns(DeprecationWarning, match="'segmentation_geometry' is read as 'fitted_vertebrae'"):
            old = read_result((DATA / fixture).read_text())
        new = json.loads((tmp_path / f"{pathlib.Path(name).stem}.json").read_text())
        assert new["schema_version"] == JSON_SCHEMA_VERSION == old["schema_version"]
        assert set(RENAMED_KEYS.values()) <= set(new) and not set(RENAMED_KEYS) & set(new)
        new["vertebrae"]["landmarks"] = None  # not kept in the fixture
        top_down = new.pop("curves_top_to_bottom")  # added in schema 4: the curves without AASCE's column order
        present = [k for k, c in old["curves"].items() if c["end_vertebrae"] != "no curve"]
        by_top = sorted(present, key=lambda k: [VERTEBRA_NAMES.index(old["curves"][k][e]) for e in ("upper", "lower")])
        assert [c["slot"] for c in top_down] == by_top
        assert all({**old["curves"][c["slot"]], "slot": c["slot"]} == c for c in top_down)
        _same(old, new, name, tol=0.01)  # degrees: the reference model answers to the same 0.01 deg
    assert "caution" in new and new["caution"].startswith("the vertebrae fitted to the segmentation")


def test_a_current_json_is_read_unchanged_and_silently(recwarn):
    current = {"schema_version": JSON_SCHEMA_VERSION, "heads_disagreement": 1.5, "fitted_vertebrae": None}
    assert read_result(json.dumps(current)) == current
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
