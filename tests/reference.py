"""Access to the reference fixtures (outputs of the authors' PyTorch code, NCHW) copied under tests/fixtures."""

import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "reference"

# The tiny random networks of adm_tiny.pt and crt_tiny.pt (see fixtures/reference/README.md).
ADM_TINY = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2,2", learn_sigma=True,
                attention_resolutions="16,8", num_heads=4, num_head_channels=16, use_scale_shift_norm=True,
                resblock_updown=True)
CRT_TINY = dict(image_size=64, num_channels=32, num_res_blocks=1, channel_mult="1,1,2,2", learn_sigma=False,
                attention_resolutions="8", num_heads=2, num_head_channels=16, use_scale_shift_norm=True,
                resblock_updown=True)
# The random 32x32 models of the reference trajectory (see fixtures/reference/README.md).
TRAJ_ADM = dict(ADM_TINY, attention_resolutions="8")
TRAJ_CRT = dict(CRT_TINY, image_size=32, channel_mult="1,2", attention_resolutions="16")


def load_npz(name: str) -> dict:
    with np.load(FIXTURES / name) as data:
        return {key: data[key] for key in data.files}


def nchw_to_nhwc(array) -> jnp.ndarray:
    return jnp.asarray(np.asarray(array).transpose(0, 2, 3, 1))


def run_python(args, env=None, check=True) -> subprocess.CompletedProcess:
    """``python *args`` in the repository root (fresh process: own devices and jax flags); output captured."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=dict(os.environ, **(env or {})),
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"python {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


def random_vggface_params(seed: int = 2):
    """Random VGG-Face parameters for the evaluation's tests: He-normal kernels (activations stay O(1) through the 16
    layers), biases N(0, 0.1). Drawn in float32: the float64 draw of its 138M values took 5.5 s."""
    import jax

    from dpi_jax.metrics import identity

    rng = np.random.default_rng(seed)

    def draw(leaf):
        values = rng.standard_normal(leaf.shape, np.float32)
        values *= np.float32((2 / np.prod(leaf.shape[:-1])) ** 0.5 if len(leaf.shape) > 1 else 0.1)
        return values

    return jax.tree.map(draw, identity.abstract_params())
