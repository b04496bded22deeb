import keras
import numpy as np
import pytest

from seg4reg_tf.models import Seg4RegEnsemble, build_model
from seg4reg_tf.models.ensemble import check_members
from tests.fixtures import TINY_SIZE, box_spine_batch, set_seed, tiny_data_config, tiny_model_config

H, W = TINY_SIZE


def _member(seed, size=TINY_SIZE, **kw):
    set_seed(seed)
    return build_model(tiny_model_config(**kw), size)


def _outputs(model, x):
    return {k: np.asarray(v) for k, v in model({"image": x}, training=False).items()}


def test_ensemble_is_the_mean_of_its_members_with_consistency_recomputed():
    members = [_member(1), _member(2), _member(3, head="image")]
    x = box_spine_batch(2)[0]
    each = [_outputs(m, x) for m in members]
    assert not np.allclose(each[0]["cobb_angles"], each[1]["cobb_angles"])  # different seeds, different opinions
    got = _outputs(Seg4RegEnsemble(members), x)
    assert set(got) == set(each[0])
    for key in got:
        if key == "consistency":  # of the averaged heads, not the mean of the members' consistencies
            want = np.mean(np.abs(got["cobb_angles_image"] - got["cobb_angles_segmentation"]), axis=-1)
            assert not np.allclose(want, (each[0][key] + each[1][key] + each[2][key]) / 3)
        else:
            want = (each[0][key] + each[1][key] + each[2][key]) / 3
        np.testing.assert_allclose(got[key], want, rtol=1e-5, atol=1e-5, err_msg=key)


def test_ensemble_refuses_members_that_cannot_be_averaged():
    with pytest.raises(ValueError, match="at least 2"):
        Seg4RegEnsemble([_member(1)])
    with pytest.raises(ValueError, match=r"members\[1\]: image_size"):
        Seg4RegEnsemble([_member(1), _member(2, size=(H * 2, W))])
    with pytest.raises(ValueError, match=r"members\[1\]: model.variant"):
        Seg4RegEnsemble([_member(1), _member(2, variant="reg_only")])
    with pytest.raises(ValueError, match=r"members\[1\]: model.attention_centered True"):
        Seg4RegEnsemble([_member(1, attention_target="mask"),
                         _member(2, attention_target="mask", attention_centered=True)])
    with pytest.raises(ValueError, match=r"members\[0\]: expected a Seg4RegPlus"):
        Seg4RegEnsemble([keras.layers.Dense(3), _member(2)])
    with pytest.raises(ValueError, match=r"members\[1\]: preprocessing.clahe False differs from members\[0\]'s True"):
        Seg4RegEnsemble([_member(1), _member(2, size=tiny_data_config())])  # CLAHE on vs off: one graph preprocesses


def test_members_are_compared_in_one_place():
    """check_members (what Seg4RegEnsemble and export_run call) names the member as asked; the headline
    head is compared only when asked (export: config.yaml names one head)."""
    members = [_member(1, head="image"), _member(2)]
    check_members(members)
    with pytest.raises(ValueError, match=r"^run_b: model.head 'mean' differs from run_a's 'image'"):
        check_members(members, names=["run_a", "run_b"], same_head=True)
    ensemble = Seg4RegEnsemble([_member(1), _member(2)])
    assert ensemble.preprocessing == ensemble.members[0].preprocessing is not None


def test_ensemble_saves_and_reloads(tmp_path):
    ensemble = Seg4RegEnsemble([_member(1), _member(2)])
    path = str(tmp_path / "e.keras")
    ensemble.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Seg4RegEnsemble) and len(loaded.members) == 2
    x = box_spine_batch(2)[0]
    a, b = _outputs(ensemble, x), _outputs(loaded, x)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
