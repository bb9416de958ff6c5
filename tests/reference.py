"""Access to the reference fixtures (outputs of the authors' PyTorch code, NCHW) copied under tests/fixtures."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "reference"


def load_npz(name: str) -> dict:
    with np.load(FIXTURES / name) as data:
        return {key: data[key] for key in data.files}


def nchw_to_nhwc(array) -> jnp.ndarray:
    return jnp.asarray(np.asarray(array).transpose(0, 2, 3, 1))
