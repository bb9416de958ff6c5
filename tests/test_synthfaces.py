"""Synthetic faces: determinism, variety, sizes, splits, PNG files, and that the pictures are laid out as faces."""

import numpy as np
import pytest
from PIL import Image

from dpi_jax.demo import synthfaces as sf


def test_same_seed_same_face_in_any_order():
    first = [sf.face(s) for s in (3, 11, 7)]
    again = [sf.face(s) for s in (7, 3, 11)]
    for a, b in zip(first, [again[1], again[2], again[0]], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sf.faces([3, 11, 7]), np.stack(first))


def test_different_seeds_differ():
    x = sf.faces(range(20)).astype(np.float32)
    diffs = [np.abs(x[i] - x[j]).mean() for i in range(20) for j in range(i + 1, 20)]
    # Measured: min 16, mean 50 (of 255) over these 190 pairs; backgrounds, skin, hair and clothes all change.
    assert min(diffs) > 8.0
    assert np.mean(diffs) > 30.0


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shape_and_dtype(size):
    x = sf.face(5, size)
    assert x.shape == (size, size, 3) and x.dtype == np.uint8
    batch = sf.faces([1, 2], size)
    assert batch.shape == (2, size, size, 3) and batch.dtype == np.uint8
    assert sf.faces([], size).shape == (0, size, size, 3)


def test_same_face_at_every_size():
    for seed in range(8):
        small = sf.face(seed, 64).astype(np.float32)
        big = np.asarray(Image.fromarray(sf.face(seed, 128)).resize((64, 64), Image.Resampling.BOX), np.float32)
        # Same parameters, drawn at 256 vs 512 px: only edge antialiasing and rounding differ. Measured over 30 seeds:
        # mean 0.7, max 1.3 (of 255); a different face is ~50 away (test_different_seeds_differ).
        assert np.abs(small - big).mean() < 4.0, seed


def test_splits_are_disjoint_and_checked():
    assert sf.TRAIN_SEEDS.step == sf.HELDOUT_SEEDS.step == 1 and sf.TRAIN_SEEDS.stop <= sf.HELDOUT_SEEDS.start
    assert sf.split_seeds("train", 3) == [0, 1, 2]
    assert sf.split_seeds("heldout", 2, start=5) == [1_000_005, 1_000_006]
    assert sf.split_seeds("heldout", 1, start=999_999) == [1_999_999]
    with pytest.raises(ValueError, match="unknown split"):
        sf.split_seeds("test", 1)
    with pytest.raises(ValueError, match="past its end"):
        sf.split_seeds("train", 2, start=999_999)
    with pytest.raises(ValueError):
        sf.split_seeds("train", -1)


def test_training_reads_only_train_faces_and_evaluation_only_heldout_ones():
    """What each consumer draws: the training source the train seeds, sample.py / evaluate's ``synthfaces:heldout``
    the held-out seeds; and no held-out picture is a training picture."""
    from configs import default
    from dpi_jax import data, sample_lib

    train, heldout = data.SynthSource("train", 32, count=4), data.SynthSource("heldout", 32, count=4)
    for j in range(4):
        np.testing.assert_array_equal(train[j], sf.face(j, 32))
        np.testing.assert_array_equal(heldout[j], sf.face(1_000_000 + j, 32))
    assert not any(np.array_equal(train[i], heldout[j]) for i in range(4) for j in range(4))
    config = default.get_config()
    config.input_dir, config.num_images, config.scale = "synthfaces:heldout", 2, 4
    inputs = sample_lib.list_inputs(config, 32)
    assert [item[0] for item in inputs] == ["heldout_1000000", "heldout_1000001"]
    np.testing.assert_array_equal(inputs[1][3], heldout[1])


def test_write_pngs_round_trip_and_no_overwrite(tmp_path):
    out = tmp_path / "new" / "faces"
    sentinel = np.full((8, 8, 3), 7, np.uint8)
    out.mkdir(parents=True)
    Image.fromarray(sentinel).save(out / "heldout_1000001.png")

    paths = sf.write_pngs(out, split="heldout", count=3, size=32)
    assert [p.name for p in paths] == ["heldout_1000000.png", "heldout_1000001.png", "heldout_1000002.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(paths[0])), sf.face(1_000_000, 32))
    np.testing.assert_array_equal(np.asarray(Image.open(paths[2])), sf.face(1_000_002, 32))
    np.testing.assert_array_equal(np.asarray(Image.open(paths[1])), sentinel)  # kept

    sf.write_pngs(out, split="heldout", count=3, size=32, overwrite=True)
    np.testing.assert_array_equal(np.asarray(Image.open(paths[1])), sf.face(1_000_001, 32))


def test_cli(tmp_path, capsys):
    assert sf.main([str(tmp_path), "--split", "train", "--count", "2", "--size", "32", "--start", "4"]) == 0
    assert "wrote 2 files" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_4.png", "train_5.png"]
    sf.main([str(tmp_path), "--split", "train", "--count", "3", "--size", "32", "--start", "4"])
    assert "wrote 1 files" in capsys.readouterr().out
    assert sf.main([str(tmp_path), "--split", "bogus"]) == 2  # one line naming the flag (dpi_jax.cli)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--split" in err


def test_the_head_is_in_the_middle():
    x = sf.faces(range(50)).astype(np.float32)
    centre = x[:, 24:40, 24:40].mean(axis=(1, 2))
    corners = np.concatenate([x[:, :6, :6], x[:, :6, -6:]], axis=1).mean(axis=(1, 2))
    # Measured 57 on average: the centre is the face, the top corners background.
    assert np.abs(centre - corners).mean(axis=1).mean() > 25.0
    r, g, b = x[:, 26:38, 26:38].mean(axis=(0, 1, 2))
    assert r > g > b  # skin tones, on average


def test_drawn_layout_is_a_face():
    """Over many seeds: the head stays in the picture, and eyes, nose and mouth sit in order inside it."""
    counts = {"glasses": 0, "beard": 0, "hair": set(), "mouth": set()}
    n = 400
    for seed in range(n):
        p = sf._draw_params(np.random.default_rng(seed))
        assert 0.05 < p.cx - p.hw and p.cx + p.hw < 0.95
        assert 0.0 < p.cy - p.hh and p.cy + p.hh < 0.9
        assert abs(p.angle) <= 8.0
        assert p.eye_dx + p.eye_w < p.hw * 0.8 and p.eye_dx > p.eye_w  # two separate eyes inside the head
        assert p.eye_y + p.eye_h < p.nose_y < p.mouth_y < p.cy + p.hh
        assert p.iris_r < p.eye_h
        if p.glasses:
            assert p.glasses_w < p.eye_dx  # the two lenses do not overlap
        counts["glasses"] += p.glasses is not None
        counts["beard"] += p.beard is not None
        counts["hair"].add(p.hair_style)
        counts["mouth"].add(p.mouth)
    assert 0.12 < counts["glasses"] / n < 0.28
    assert 0.08 < counts["beard"] / n < 0.25
    assert counts["hair"] == set(sf._HAIR_STYLES)
    assert counts["mouth"] == {"closed", "open", "laugh"}
