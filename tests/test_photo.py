"""The whole-photo path (dpi_jax.photo) on real photographs that ship inside installed wheels, nothing downloaded:

- ``skimage.data.astronaut()`` (Eileen Collins, 512x512; the file skimage/data/astronaut.png of the scikit-image
  wheel) and ``skimage.data.coffee()`` (a cup of coffee, no face; skimage/data/coffee.png);
- matplotlib's ``mpl-data/sample_data/grace_hopper.jpg`` (Grace Hopper, 512x600), via
  ``matplotlib.cbook.get_sample_data``.

The expected face boxes and eye positions below were measured by eye on enlarged crops of the photos with a pixel
grid drawn over them (hairline to chin, cheek to cheek), not taken from the detector.
"""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpi_jax.photo import align, detect, paste, pipeline

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("joblib")
if detect.importlib.util.find_spec("mtcnn") is None:
    pytest.skip("the mtcnn wheel (detector weights) is not installed", allow_module_level=True)

# (x1, y1, x2, y2) and the centres of the (image-)left and right eye, measured by hand.
ASTRONAUT_BOX, ASTRONAUT_EYES = (183, 72, 265, 180), ((201, 101), (247.5, 104))
HOPPER_BOX, HOPPER_EYES = (170, 148, 350, 328), ((222, 188), (305, 187))


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return w * h / (area(a) + area(b) - w * h)


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


@pytest.fixture(scope="module")
def astronaut():
    assert (Path(skimage_data.__file__).parent / "astronaut.png").exists()  # in the wheel: nothing is downloaded
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def hopper():
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


@pytest.fixture(scope="module")
def config():
    from configs import photo

    return photo.get_config()


@pytest.fixture(scope="module")
def pair(astronaut, hopper):
    """Both portraits side by side on white (two faces)."""
    image = np.full((600, 1024, 3), 255, np.uint8)
    image[:512, :512], image[:, 512:] = astronaut, hopper
    return image


def with_fields(config, **fields):
    config = config.copy_and_resolve_references()
    config.update(fields)
    return config


def check_face(face, box, eyes, offset=(0, 0)):
    box = np.asarray(box, float) + np.tile(offset, 2)
    assert iou(face.box, box) >= 0.5, (face.box, box)
    np.testing.assert_allclose(face.landmarks[:2], np.asarray(eyes) + offset, atol=8)
    assert face.landmarks[0, 0] < face.landmarks[2, 0] < face.landmarks[1, 0]  # eye, nose, eye left to right
    assert face.landmarks[2, 1] < face.landmarks[3, 1] and face.landmarks[2, 1] < face.landmarks[4, 1]  # mouth below


def test_detector_finds_the_faces(astronaut, hopper):
    for image, box, eyes in [(astronaut, ASTRONAUT_BOX, ASTRONAUT_EYES), (hopper, HOPPER_BOX, HOPPER_EYES)]:
        faces = [f for f in detect.detect_faces(image) if f.score >= 0.9]
        assert len(faces) == 1
        check_face(faces[0], box, eyes)


def test_no_face_in_coffee_or_a_flat_image(config):
    assert pipeline.find_faces(skimage_data.coffee(), config) == []
    assert pipeline.find_faces(np.full((200, 300, 3), 128, np.uint8), config) == []
    assert pipeline.find_faces(np.zeros((8, 5, 3), np.uint8), config) == []  # smaller than the 12x12 window


def test_detection_on_a_shrunk_copy_maps_back_and_small_faces_are_skipped(astronaut, config, caplog):
    big = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.Resampling.BICUBIC))
    (face,) = pipeline.find_faces(big, with_fields(config, detect_max_side=512))
    check_face(detect.Face(face.box / 2, face.score, face.landmarks / 2), ASTRONAUT_BOX, ASTRONAUT_EYES)
    with caplog.at_level(logging.WARNING):
        assert pipeline.find_faces(astronaut, with_fields(config, min_face_size=150)) == []
    assert "skipped a face" in caplog.text


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale = 0.3, 1.7
    m = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 12.0], [scale * np.sin(angle), scale * np.cos(angle),
                                                                        -4.0]])
    np.testing.assert_allclose(align.similarity(src, align.apply(m, src)), m, atol=1e-9)
    np.testing.assert_allclose(align.compose(align.invert(m), m), np.eye(3)[:2], atol=1e-12)


def test_align_then_identity_then_paste_reproduces_the_face(astronaut, config):
    (face,) = pipeline.find_faces(astronaut, config)
    size = align.native_size(face.landmarks, 64)
    crop, photo_to_crop = align.align(astronaut, face.landmarks, size)
    assert crop.shape == (size, size, 3)
    np.testing.assert_allclose(align.apply(photo_to_crop, face.landmarks), align.template(size), atol=0.05 * size)
    out = paste.paste_faces(astronaut, astronaut.shape, [crop], [photo_to_crop])  # upscale 1, "restoration" = crop
    x1, y1, x2, y2 = np.round(face.box).astype(int)
    assert psnr(out[y1:y2, x1:x2], astronaut[y1:y2, x1:x2]) >= 35
    assert psnr(out, astronaut) >= 35


def test_two_faces_give_two_crops_and_both_are_pasted(pair, config):
    faces = pipeline.find_faces(pair, config)
    assert len(faces) == 2
    check_face(faces[0], ASTRONAUT_BOX, ASTRONAUT_EYES)
    check_face(faces[1], HOPPER_BOX, HOPPER_EYES, offset=(512, 0))
    inputs = [pipeline.face_input(pair, f.landmarks, 64, 8) for f in faces]
    assert all(lr.shape == (8, 8, 3) and lr.dtype == np.uint8 for lr, _ in inputs)
    # "Restore" the faces as flat green and blue squares; upscale 2: both must appear where the faces are.
    colours = [(0, 255, 0), (0, 0, 255)]
    restored = [np.broadcast_to(np.asarray(c, np.float32), (64, 64, 3)) for c in colours]
    background = paste.background_upsampler(pair, 2)
    assert background.shape == (1200, 2048, 3)
    out = paste.paste_faces(background, pair.shape, restored, [t for _, t in inputs])
    for face, colour in zip(faces, colours, strict=True):
        x, y = np.round(face.landmarks[2] * 2).astype(int)  # the nose, in the output
        np.testing.assert_allclose(out[y, x], colour, atol=2)
    np.testing.assert_array_equal(out[:10, :10], background[:10, :10])  # away from the faces: the background


@pytest.mark.parametrize("kind", ["gray", "rgba", "exif"])
def test_grayscale_rgba_and_exif_rotated_photos(astronaut, config, tmp_path, kind):
    path = tmp_path / f"photo_{kind}.{'jpg' if kind == 'exif' else 'png'}"
    if kind == "gray":
        Image.fromarray(astronaut).convert("L").save(path)
    elif kind == "rgba":
        Image.fromarray(np.concatenate([astronaut, np.full((512, 512, 1), 255, np.uint8)], -1), "RGBA").save(path)
    else:  # stored rotated; the EXIF Orientation 6 says "turn 90 degrees clockwise to view"
        exif = Image.Exif()
        exif[pipeline.EXIF_ORIENTATION_TAG] = 6
        Image.fromarray(astronaut[:, :400]).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    image = pipeline.read_photo(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if kind == "exif":
        assert image.shape == (512, 400, 3)
        assert psnr(image, astronaut[:, :400]) > 30  # upright again (JPEG-compressed)
    (face,) = pipeline.find_faces(image, config)
    check_face(face, ASTRONAUT_BOX, ASTRONAUT_EYES)


@pytest.mark.slow
def test_sample_py_photo_mode_writes_every_output(pair, config, tmp_path, caplog):
    """End to end through sample_lib.main with the demo weights (64x64 prior, x8: 8x8 LR crops), 10 steps."""
    from dpi_jax import sample_lib

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(pair).resize((512, 300)).save(photos / "pair.png")
    Image.fromarray(skimage_data.coffee()).resize((300, 200)).save(photos / "coffee.jpg")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = tmp_path / "out"
    run_config = with_fields(config, input_dir=str(photos), output_dir=str(out), respacing="10", num_seeds=2,
                             batch_size=2, upscale=1.5)
    with caplog.at_level(logging.INFO):
        assert sample_lib.main(run_config) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["pair.png", "pair_compare.png", "coffee.png", "coffee_compare.png"]
                           + [f"pair_face{i}{suffix}.png" for i in (0, 1) for suffix in ("_lr", "_s0", "_s1")])
    assert "coffee.jpg: no face found" in caplog.text and "broken.png" in caplog.text
    restored = np.asarray(Image.open(out / "pair.png"))
    assert restored.shape == (450, 768, 3)
    assert np.asarray(Image.open(out / "pair_compare.png")).shape == (454, 2 * 768 + 6, 3)
    assert np.asarray(Image.open(out / "coffee.png")).shape == (300, 450, 3)
    assert np.asarray(Image.open(out / "pair_face1_s0.png")).shape == (64, 64, 3)
    assert np.asarray(Image.open(out / "pair_face0_lr.png")).shape == (8, 8, 3)
    # The faces changed, the corners did not.
    background = paste.background_upsampler(np.asarray(Image.open(photos / "pair.png")), 1.5)
    np.testing.assert_array_equal(restored[:20, :20], background[:20, :20])
    assert np.abs(restored.astype(int) - background).max() > 20

    # A second run keeps what exists and restores nothing.
    before = (out / "pair.png").read_bytes()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert sample_lib.main(run_config) == 0
    assert "exists: skipped" in caplog.text and (out / "pair.png").read_bytes() == before


def test_photo_fields_are_validated():
    """configs/photo.py passes the start-up checks; its own fields are checked like every other field."""
    from configs import photo
    from dpi_jax import validation

    config = photo.get_config()
    validation.check_sampling(config)
    config.upscale, config.face_threshold, config.mask_blur = 0.0, 2.0, 0.5
    with pytest.raises(validation.ConfigError) as err:
        validation.check_sampling(config)
    assert [p.split(" =")[0] for p in err.value.problems] == ["config.upscale", "config.face_threshold",
                                                               "config.mask_blur"]
