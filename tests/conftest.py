"""Fixtures shared by the fault tests (helpers: tests/fault_kit.py)."""

import numpy as np
import pytest
from PIL import Image

from dpi_jax import checkpoint
from tests.fault_kit import face, huge_png, random_params
from tests.reference import TRAJ_ADM, TRAJ_CRT


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory):
    """Tiny random 32x32 prior (adm) and CRT checkpoints."""
    root = tmp_path_factory.mktemp("ckpts")
    checkpoint.save_model(root / "adm", random_params("adm", TRAJ_ADM), TRAJ_ADM, kind="adm")
    checkpoint.save_model(root / "crt", random_params("crt", TRAJ_CRT, 1), TRAJ_CRT, kind="crt")
    return root


@pytest.fixture
def odd_inputs(tmp_path):
    """Good images in every odd format, and bad files of every kind."""
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(face(0)).save(folder / "a_rgb.png")
    Image.fromarray(face(1)[..., 0]).save(folder / "b_gray.png")
    Image.fromarray(np.dstack([face(2), np.full((32, 32), 128, np.uint8)])).save(folder / "c_rgba.png")
    Image.fromarray(face(3)).convert("P").save(folder / "d_palette.png")
    Image.fromarray((face(4)[..., 0].astype(np.uint16) * 257)).save(folder / "e_16bit.png")
    Image.fromarray(face(5)).convert("CMYK").save(folder / "f_cmyk.jpg")
    huge_png(folder / "g_huge.png")
    (folder / "h_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "i_empty.png").write_bytes(b"")
    good = folder / "j_truncated.png"
    Image.fromarray(face(6)).save(good)
    good.write_bytes(good.read_bytes()[:200])
    return folder
