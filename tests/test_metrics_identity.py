"""DeepFace's VGG-Face identity metric in Flax, with random weights.

The Keras counterpart is Keras 3 on the JAX backend (``KERAS_BACKEND=jax``) running DeepFace's VGG-Face layer list as
written in deepface 0.0.103's ``models/facial_recognition/tf/VGGFace.py`` (``base_model()``, the embedding model cut at
``model.layers[-5]`` + Flatten, then ``l2_normalize``): DeepFace itself imports TensorFlow, which is too heavy for
this project's CI, so its model class is not imported here. The weights file is written by Keras's own legacy HDF5
writer (the format of ``vgg_face_weights.h5``: ``layer_names``/``weight_names`` attributes) and also read back by
Keras's legacy ``load_weights``, as DeepFace loads it. Where deepface, TensorFlow and tf-keras are installed,
``test_matches_deepface_itself`` also runs DeepFace's own code end to end (``DeepFace.verify`` on image files).

Tolerance: 1e-4 relative on the embeddings, as max |ours - reference| / max |reference| (components are ReLU outputs,
many exactly 0, so a per-component relative error is undefined); distances to 1e-5 (DeepFace rounds them to 6
decimals). Both sides run float32 convolutions over 16 layers with fan-ins up to 25088; summation order differs
(Keras's conv lowering vs ours, padding layers vs padded convolutions), leaving relative differences of order 1e-6.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from dpi_jax.metrics import identity as vf
from dpi_jax.port import PortError

h5py = pytest.importorskip("h5py")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3's jax backend and NumPy 2 copy=

RTOL = 1e-4


@pytest.fixture(scope="module")
def params():
    """Random VGG-Face params (He-normal kernels, small random biases) in the Keras/Flax HWIO layout."""
    rng = np.random.default_rng(0)
    out = {}
    for name, cin, cout, k in vf.LAYERS:
        std = np.sqrt(2.0 / (k * k * cin))
        out[name] = {"kernel": (rng.standard_normal((k, k, cin, cout), np.float32) * std).astype(np.float32),
                     "bias": (rng.standard_normal(cout, np.float32) * 0.01).astype(np.float32)}
    return jax.device_put(out)


def _faces(n, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _deepface_model(keras):
    """DeepFace's ``base_model()`` layer list (deepface 0.0.103, tf/VGGFace.py) in Keras 3. The kernels start at
    zero instead of Glorot draws (initialising 145M parameters costs seconds; every weight is loaded afterwards)."""
    L = keras.layers
    Conv2D = lambda filters, kernel, **kw: L.Conv2D(filters, kernel, kernel_initializer="zeros", **kw)
    model = keras.Sequential([keras.Input((224, 224, 3))])
    for width, convs in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]:
        for _ in range(convs):
            model.add(L.ZeroPadding2D((1, 1)))
            model.add(Conv2D(width, (3, 3), activation="relu"))
        model.add(L.MaxPooling2D((2, 2), strides=(2, 2)))
    model.add(Conv2D(4096, (7, 7), activation="relu"))
    model.add(L.Dropout(0.5))
    model.add(Conv2D(4096, (1, 1), activation="relu"))
    model.add(L.Dropout(0.5))
    model.add(Conv2D(2622, (1, 1)))
    model.add(L.Flatten())
    model.add(L.Activation("softmax"))
    return model


def _write_legacy_h5(path, layers):
    """A Keras legacy HDF5 weights file: [(layer name, [(weight name, shape), ...])], datasets left unwritten
    (h5py allocates them lazily, so full-size shapes cost nothing)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layers]
        f.attrs["keras_version"] = b"2.2.4"
        for name, weights in layers:
            group = f.create_group(name)
            group.attrs["weight_names"] = [w.encode() for w, _ in weights]
            for w, shape in weights:
                group.create_dataset(w, shape, dtype="f4")


@pytest.mark.slow
def test_matches_keras_counterpart(tmp_path, params):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    from keras.src.legacy.saving import legacy_h5_format

    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, this test expects the JAX backend")
    source = _deepface_model(keras)
    source.set_weights([np.asarray(params[name][w]) for name, *_ in vf.LAYERS for w in ("kernel", "bias")])
    path = tmp_path / vf.WEIGHTS_FILE
    with h5py.File(path, "w") as f:  # what Keras 2's model.save_weights("x.h5") wrote
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    del source

    model = _deepface_model(keras)  # DeepFace: base_model(), then load_model_weights -> model.load_weights(file)
    model.load_weights(str(path))
    assert model.layers[-5].filters == 4096 and model.layers[-5].kernel_size == (1, 1)  # fc7, DeepFace's cut
    fc7_flat = keras.layers.Flatten()(model.layers[-5].output)  # DeepFace's embedding model
    descriptor = keras.Model(model.inputs[0], [fc7_flat, model.layers[-2].output])  # + the 2622-d one of old deepface

    faces = _faces(2, 256, 1)
    inputs = np.asarray(vf.deepface_preprocess(faces))
    fc7, fc8 = (np.asarray(o) for o in descriptor(inputs, training=False))
    ref = fc7 / (np.linalg.norm(fc7, axis=1, keepdims=True) + 1e-10)  # VggFaceClient.forward's l2_normalize
    del model, descriptor

    ported = vf.convert(path)
    for name, *_ in vf.LAYERS:
        np.testing.assert_array_equal(ported[name]["kernel"], params[name]["kernel"])
        np.testing.assert_array_equal(ported[name]["bias"], params[name]["bias"])
    ours = np.asarray(vf.vggface_embeddings(ported, faces))
    rel = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
    print(f"fc7 embedding: max error {rel:.2e} of the largest component")
    assert ours.shape == (2, 4096) and rel <= RTOL
    ours_fc8 = np.asarray(vf.VGGFace("fc8").apply({"params": ported}, inputs))
    rel8 = np.max(np.abs(ours_fc8 - fc8)) / np.max(np.abs(fc8))
    print(f"fc8 logits: max error {rel8:.2e} of the largest component")
    assert rel8 <= RTOL


def test_preprocessing_matches_deepface_with_opencv():
    """``DeepFace.verify(..., detector_backend="skip")``'s preparation re-traced with cv2 and NumPy: extract_faces
    (BGR -> RGB, /255 when max > 1), represent (RGB -> BGR), resize_image (scale, cv2.resize, centred zero padding,
    float32, /255 when max > 1), normalization "base"."""
    cv2 = pytest.importorskip("cv2")

    def deepface(rgb):
        img = rgb[:, :, ::-1]  # what cv2.imread gives
        img = img[:, :, ::-1]  # extract_faces(color_face="rgb")
        if img.max() > 1:
            img = img / 255
        img = img[:, :, ::-1]  # verify -> represent(img_obj["face"][:, :, ::-1]); skip: ::-1 twice
        factor = min(224 / img.shape[0], 224 / img.shape[1])
        img = cv2.resize(img, (int(img.shape[1] * factor), int(img.shape[0] * factor)))
        d0, d1 = 224 - img.shape[0], 224 - img.shape[1]
        img = np.pad(img, ((d0 // 2, d0 - d0 // 2), (d1 // 2, d1 - d1 // 2), (0, 0)), "constant")
        img = np.asarray(img, np.float32)
        return img / 255.0 if img.max() > 1 else img

    rng = np.random.default_rng(2)
    cases = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in
             [(2, 256, 256, 3), (1, 100, 100, 3), (1, 300, 200, 3), (1, 97, 131, 3), (1, 224, 224, 3),
              (1, 448, 448, 3)]]
    # max <= 1 (a black image): DeepFace does not divide by 255. Only without a resize: DeepFace would then resize
    # the uint8 array with cv2's fixed-point arithmetic, which is not reproduced (a difference of < 1 grey level)
    cases.append(rng.integers(0, 2, (1, 224, 224, 3), dtype=np.uint8))
    for images in cases:
        ours = np.asarray(vf.deepface_preprocess(images))
        ref = np.stack([deepface(im) for im in images])
        assert ours.shape == ref.shape == (len(images), 224, 224, 3)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6, err_msg=str(images.shape))


@pytest.mark.slow
def test_acc_and_cs_against_numpy(params):
    sr, gt = _faces(3, 64, 3), _faces(3, 64, 4)
    gt[0] = sr[0]  # one identical pair: distance 0, verified at any threshold
    emb_sr = np.asarray(vf.vggface_embeddings(params, sr), np.float64)
    emb_gt = np.asarray(vf.vggface_embeddings(params, gt), np.float64)
    d = 1 - np.sum(emb_sr * emb_gt, 1) / (np.linalg.norm(emb_sr, axis=1) * np.linalg.norm(emb_gt, axis=1))
    d = np.round(d, 6)
    threshold = float(np.sort(d)[1])  # two of three pairs verified ("distance <= threshold")
    result = vf.identity_metrics(params, sr, gt, threshold=threshold, batch_size=2, progress=False)
    np.testing.assert_allclose(result["distances"], d, atol=2e-6)
    assert result["distances"][0] == 0.0
    assert result["acc"] == pytest.approx(np.mean(d <= threshold)) == pytest.approx(2 / 3)
    assert result["cs"] == pytest.approx(np.mean(d), abs=2e-6)
    assert vf.THRESHOLD == 0.68


def test_miskeyed_h5_is_refused_with_both_lists(tmp_path):
    layers = [(f"conv2d_{i}", [(f"conv2d_{i}/kernel:0", (k, k, cin, cout)), (f"conv2d_{i}/bias:0", (cout,))])
              for i, (_, cin, cout, k) in enumerate(vf.LAYERS, start=1)]
    del layers[2]  # conv2_1 (3, 3, 64, 128)
    layers.append(("dense_9", [("dense_9/kernel:0", (10, 4)), ("dense_9/bias:0", (4,))]))
    layers.insert(0, ("zero_padding2d_1", []))  # layers without weights are skipped, as Keras does
    path = tmp_path / "bad.h5"
    _write_legacy_h5(path, layers)
    with pytest.raises(PortError) as err:
        vf.convert(path)
    message = str(err.value)
    assert "missing layers (1):\n  conv2_1 (layer #3): (3, 3, 64, 128) + (128,)" in message
    assert "unexpected layers (1):\n  dense_9: (10, 4) + (4,)" in message
    # same layer count, one kernel of the wrong width: a shape mismatch naming both shapes
    zeros = lambda *shape: np.broadcast_to(np.float32(0), shape)  # no memory
    fake = [(f"c{i}", [("k", zeros(k, k, cin, cout)), ("b", zeros(cout))])
            for i, (_, cin, cout, k) in enumerate(vf.LAYERS)]
    fake[14] = ("c14", [("k", zeros(1, 1, 4096, 4000)), ("b", zeros(4000))])
    with pytest.raises(PortError, match=r"shape mismatches \(1\):\n  fc7 \(layer #15\): file layer 'c14' holds "
                                        r"\(1, 1, 4096, 4000\) \+ \(4000,\), model expects \(1, 1, 4096, 4096\)"):
        vf.params_from_layers(fake)
    with pytest.raises(PortError, match="not a Keras HDF5 weights file"):
        with h5py.File(tmp_path / "empty.h5", "w"):
            pass
        vf.convert(tmp_path / "empty.h5")


@pytest.mark.slow
def test_checkpoint_round_trip_and_missing_directory(tmp_path, params):
    vf.save(tmp_path / "vggface", params)
    loaded = vf.load(tmp_path / "vggface")
    for name, *_ in vf.LAYERS:
        np.testing.assert_array_equal(np.asarray(loaded[name]["kernel"]), params[name]["kernel"])
    with pytest.raises(FileNotFoundError) as err:
        vf.load(tmp_path / "nowhere")
    message = str(err.value)
    assert "vgg_face_weights.h5" in message and "deepface" in message
    assert f"python -m dpi_jax.port vgg_face_weights.h5 {tmp_path / 'nowhere'} --model vggface" in message


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("deepface", "tensorflow", "tf_keras")),
                    reason="needs deepface 0.0.103, tensorflow and tf-keras (not in the dev extras: ~1.4 GB)")
def test_matches_deepface_itself(tmp_path):
    """DeepFace's own code end to end (TensorFlow, Keras 2) when installed: random weights saved by Keras 2 as
    ``vgg_face_weights.h5``, ``DeepFace.verify(detector_backend="skip")`` on image files of several sizes (resize
    down, up, and with padding) against the port of that file and :func:`identity_metrics` on the same files."""
    from PIL import Image

    from dpi_jax.demo import synthfaces
    from dpi_jax.images import read_rgb

    sizes = [(256, 256), (256, 256), (160, 160), (200, 256)]
    pairs = []
    for k, (h, w) in enumerate(sizes):
        sr = np.asarray(Image.fromarray(synthfaces.face(k, 256)).resize((w, h), Image.Resampling.BICUBIC))
        gt = np.asarray(Image.fromarray(synthfaces.face(k if k < 2 else 10 + k, 256)).resize((w, h)))
        if k == 1:
            gt = np.clip(sr.astype(int) + np.random.default_rng(k).integers(-20, 21, sr.shape), 0, 255).astype(np.uint8)
        paths = [tmp_path / f"sr{k}.png", tmp_path / f"gt{k}.png"]
        Image.fromarray(sr).save(paths[0])
        Image.fromarray(gt).save(paths[1])
        pairs.append([str(p) for p in paths])
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    script = Path(__file__).parent / "fixtures" / "metrics" / "deepface_reference.py"
    env = {**os.environ, "DEEPFACE_HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    run = subprocess.run([sys.executable, str(script), str(tmp_path), str(tmp_path / "pairs.json")], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    ref = np.load(tmp_path / "deepface_reference.npz")
    assert float(ref["threshold"][0]) == vf.THRESHOLD

    params = jax.device_put(vf.convert(tmp_path / ".deepface" / "weights" / vf.WEIGHTS_FILE))
    distances, errors = [], []
    for (a, b), ref_emb in zip(pairs, ref["embeddings"], strict=True):
        ours = np.asarray(vf.vggface_embeddings(params, np.stack([read_rgb(a)])))[0], np.asarray(
            vf.vggface_embeddings(params, np.stack([read_rgb(b)])))[0]
        errors += [np.max(np.abs(o - r)) / np.max(np.abs(r)) for o, r in zip(ours, ref_emb, strict=True)]
        distances.append(vf.cosine_distance(ours[0], ours[1]))
    print(f"embeddings: max error {max(errors):.2e} of the largest component; distances ours {distances}, "
          f"DeepFace {ref['distances'].tolist()}")
    assert max(errors) <= RTOL
    np.testing.assert_allclose(distances, ref["distances"], atol=1e-5)
    same_size = slice(0, 2)
    sr = np.stack([read_rgb(a) for a, _ in pairs[same_size]])
    gt = np.stack([read_rgb(b) for _, b in pairs[same_size]])
    metrics = vf.identity_metrics(params, sr, gt, progress=False)
    np.testing.assert_allclose(metrics["distances"], ref["distances"][same_size], atol=1e-5)
    assert metrics["acc"] == np.mean(ref["verified"][same_size])
