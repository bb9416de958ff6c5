"""Helpers of the fault tests (tests/test_inputs_outputs.py, test_validation.py, test_checkpoint_faults.py,
test_port.py, test_cli.py): tiny random checkpoints, odd and bad image files, a sampling config over them, and the
one-line error check. Their fixtures (``ckpts``, ``odd_inputs``) are in tests/conftest.py."""

import struct
import zlib
from pathlib import Path

import jax
import ml_collections
import numpy as np

from configs import paper
from dpi_jax import sample_lib
from dpi_jax.models import abstract_params, make_model


def random_params(kind, config, seed=0):
    abstract = abstract_params(make_model(kind, config))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.05 * rng.standard_normal(s.shape)).astype(np.float32), abstract)





def face(seed, size=32):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def huge_png(path: Path, side: int = 20000):
    """A genuine side x side 1-bit black PNG (50 MB of pixels, a few tens of kB of file)."""
    row = b"\x00" + bytes((side + 7) // 8)
    raw = zlib.compress(row * side, 9)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))





GOOD = ["a_rgb", "b_gray", "c_rgba", "d_palette", "e_16bit", "f_cmyk"]
BAD = ["g_huge", "h_corrupt", "i_empty", "j_truncated"]


def sample_config(ckpts, inputs, out, **overrides) -> ml_collections.ConfigDict:
    """configs/paper.py:x8 on the tiny checkpoints ``ckpts``, 2 steps; ``overrides`` by dotted name
    (``**{"dpi.k": 0}``)."""
    config = paper.get_config("x8")
    config.input_dir, config.output_dir = str(inputs), str(out)
    config.prior_checkpoint, config.crt_checkpoint = str(ckpts / "adm"), str(ckpts / "crt")
    config.diffusion.respacing, config.batch_size = "2", 4
    config.update_from_flattened_dict(overrides)
    return config


def run_main(config, capsys):
    """(exit status, stderr) of sample_lib.main, in-process."""
    status = sample_lib.main(config)
    return status, capsys.readouterr().err


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]
