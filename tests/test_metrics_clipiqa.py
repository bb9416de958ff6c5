"""CLIP-IQA in Flax against pyiqa's ``clipiqa`` computation (tests/iqa_reference.py) with the same random weights.

The "user's file" is a random CLIP RN50 (``RN50.pt``'s keys and shapes, float16 values like the published file) in
a TorchScript archive, as OpenAI publishes it. Tolerance: 1e-4 relative on the image features (to their largest
magnitude) and on the scores. Both sides compute in float32; the ResNet's convolutions and the attention pool sum
thousands of products in another order (XLA vs PyTorch's CPU kernels), which leaves differences of order 1e-6
relative (measured: 1.4e-6 on the features, 2e-6 on the scores); 1e-4 keeps a margin for other CPUs while any
mistake in the computation (a wrong pool, normalisation or prompt) moves the values by far more.
"""

import jax
import numpy as np
import pytest

from dpi_jax.metrics import clipiqa as jc
from dpi_jax.port import PortError

torch = pytest.importorskip("torch")
from tests import iqa_reference as ref  # noqa: E402  (needs torch)

RTOL = 1e-4


@pytest.fixture(scope="module")
def clip():
    """(reference model, its state_dict as arrays, the converted params, reference token ids)."""
    model = ref.random_clip(0)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    tokenizer = ref.openai_tokenizer()
    tokens = (ref.clip_tokenize(tokenizer, ref.CLIPIQA_PROMPTS) if tokenizer is not None
              else torch.from_numpy(jc.token_array()))
    return model, state, jc.params_from_state_dict(state), tokens


def _nchw(images):
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255


def _rel(ours, theirs):
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 57, 83)])  # square; odd and non-square (pools round down)
@pytest.mark.slow
def test_features_and_scores_match_pyiqa(clip, shape):
    model, _, params, tokens = clip
    images = np.random.default_rng(sum(shape)).integers(0, 256, shape + (3,), dtype=np.uint8)
    x = _nchw(images)
    with torch.no_grad():
        normalised = (x - torch.tensor(ref.CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(ref.CLIP_STD).view(1, 3, 1, 1)
        features = model.encode_image(normalised, pos_embedding=False).numpy()
        scores = ref.clipiqa_reference(model, x, tokens).numpy()[:, 0]
        text = model.encode_text(tokens).numpy()
    ours = np.asarray(jax.jit(jc.image_features)(params, images))
    score = jc.clipiqa_images(params, images, progress=False)
    print(f"features {_rel(ours, features):.1e}, text {_rel(params['text_features'], text):.1e}, scores "
          f"{_rel(score, scores):.1e}")
    assert ours.shape == (shape[0], 1024)
    assert _rel(ours, features) <= RTOL
    assert _rel(params["text_features"], text) <= RTOL
    np.testing.assert_allclose(score, scores, rtol=RTOL)


def test_prompt_tokens_are_openai_clip_tokenize():
    tokenizer = ref.openai_tokenizer()
    if tokenizer is None:
        pytest.skip("openai-clip (its BPE tokenizer) is not installed")
    assert jc.PROMPTS == tuple(ref.CLIPIQA_PROMPTS)
    np.testing.assert_array_equal(jc.token_array(), ref.clip_tokenize(tokenizer, ref.CLIPIQA_PROMPTS).numpy())


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.slow
def test_port_command_reads_a_torchscript_archive(clip, tmp_path):
    """RN50.pt is a TorchScript archive of float16 weights with three size entries besides CLIP's keys."""
    from dpi_jax import port

    _, state, params, _ = clip

    class Archive(torch.nn.Module):
        def forward(self, x):
            return x

    root = Archive()
    for key, value in dict(state, input_resolution=np.array(224), context_length=np.array(77),
                           vocab_size=np.array(49408)).items():
        *path, leaf = key.split(".")
        module = root
        for name in path:
            if not hasattr(module, name):
                module.add_module(name, Archive())
            module = getattr(module, name)
        tensor = torch.from_numpy(np.asarray(value))
        module.register_buffer(leaf, tensor.half() if tensor.is_floating_point() else tensor)
    torch.jit.save(torch.jit.script(root), tmp_path / "RN50.pt")
    assert jc.is_torchscript(tmp_path / "RN50.pt")
    assert port.main([str(tmp_path / "RN50.pt"), str(tmp_path / "clipiqa"), "--model", "clipiqa"]) == 0
    loaded = jc.load(tmp_path / "clipiqa")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)  # the random weights are float16 values already
    assert port.main([str(tmp_path / "RN50.pt"), str(tmp_path / "clipiqa"), "--model", "clipiqa"]) == 2  # exists


def test_port_refuses_missing_unexpected_and_misshaped_keys(clip):
    _, state, _, _ = clip
    state = dict(state)
    del state["visual.layer3.2.bn1.running_var"]
    del state["transformer.resblocks.11.ln_2.bias"]
    state["visual.layer5.0.conv1.weight"] = np.zeros((1,), np.float32)
    state["text_projection"] = np.zeros((512, 768), np.float32)  # ViT-L/14's
    state["visual.layer1.0.bn1.num_batches_tracked"] = np.zeros((), np.float32)  # ignored
    with pytest.raises(PortError) as err:
        jc.params_from_state_dict(state)
    message = str(err.value)
    assert "missing keys (2):" in message
    assert "\n  transformer.resblocks.11.ln_2.bias\n" in message and "\n  visual.layer3.2.bn1.running_var\n" in message
    assert "unexpected keys (1):\n  visual.layer5.0.conv1.weight" in message
    assert "text_projection: checkpoint (512, 768), model expects (512, 1024)" in message
    assert "num_batches_tracked" not in message


def test_missing_weights_name_the_file_and_port_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        jc.load(tmp_path / "nowhere")
    message = str(err.value)
    for part in ("RN50.pt", "openaipublic", f"python -m dpi_jax.port RN50.pt {tmp_path / 'nowhere'} --model clipiqa"):
        assert part in message


def test_folder_scores_images_of_two_sizes(clip, tmp_path):
    from PIL import Image

    model, _, params, tokens = clip
    rng = np.random.default_rng(3)
    images = {"a": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
              "b": rng.integers(0, 256, (57, 83, 3), dtype=np.uint8),
              "c": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)}
    for name, image in images.items():
        Image.fromarray(image).save(tmp_path / f"{name}.png")
    result = jc.clipiqa_folder(params, tmp_path, progress=False)  # batches of the shapes compiled above
    with torch.no_grad():
        expected = {name: float(ref.clipiqa_reference(model, _nchw(x[None]), tokens)[0, 0])
                    for name, x in images.items()}
    assert result["per_image"] == pytest.approx(expected, rel=RTOL)
    assert result["mean"] == pytest.approx(np.mean(list(expected.values())), rel=RTOL)
