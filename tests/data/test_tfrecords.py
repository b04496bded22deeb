import os

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.data.tfrecords import convert_split, parse_example, parse_examples, record_to_example
from tests.fixtures import write_spine_records


def test_record_round_trip_exact(tmp_path):
    recs = write_spine_records(tmp_path / "img", n=2)
    # Integer-valued landmarks and 2-decimal angles are exactly representable after float32 cast check.
    for rec in recs:
        ex = record_to_example(rec)
        d = parse_example(tf.constant(ex.SerializeToString()))
        with open(rec.image_path, "rb") as f:
            assert d["image/encoded"].numpy() == f.read()
        assert d["image/filename"].numpy().decode() == rec.filename
        assert int(d["image/height"]) == rec.height and int(d["image/width"]) == rec.width
        assert d["landmarks"].shape == (68, 2)
        np.testing.assert_array_equal(d["landmarks"].numpy(), rec.landmarks.astype(np.float32))
        np.testing.assert_array_equal(d["angles"].numpy(), rec.angles.astype(np.float32))


def test_landmarks_row_major_order(tmp_path):
    rec = write_spine_records(tmp_path / "img", n=1)[0]
    ex = record_to_example(rec)
    flat = list(ex.features.feature["landmarks"].float_list.value)
    assert len(flat) == 136
    np.testing.assert_allclose(flat[:4], [rec.landmarks[0, 0], rec.landmarks[0, 1], rec.landmarks[1, 0],
                                          rec.landmarks[1, 1]], rtol=1e-6)


def test_convert_split_shards_and_batched_parse(tmp_path):
    recs = write_spine_records(tmp_path / "img", n=5)
    paths = convert_split("unused", str(tmp_path / "tfr"), "training", num_shards=2, records=recs, progress=False)
    assert [os.path.basename(p) for p in paths] == ["training-00000-of-00002.tfrecord",
                                                     "training-00001-of-00002.tfrecord"]
    counts = [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in paths]
    assert counts == [3, 2]
    batch = next(iter(tf.data.TFRecordDataset(paths[0]).batch(3)))
    d = parse_examples(batch)
    assert d["landmarks"].shape == (3, 68, 2)
    names = [n.decode() for n in d["image/filename"].numpy()]
    assert names == [recs[0].filename, recs[2].filename, recs[4].filename]


def test_record_to_example_bad_landmarks(tmp_path):
    rec = write_spine_records(tmp_path / "img", n=1)[0]
    import dataclasses

    bad = dataclasses.replace(rec, landmarks=np.zeros((67, 2)))
    with pytest.raises(ValueError, match="landmarks expected shape"):
        record_to_example(bad)
    with pytest.raises(ValueError, match="num_shards"):
        convert_split("x", str(tmp_path), "training", num_shards=0, records=[rec])
