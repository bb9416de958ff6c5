"""The session's compilation cache, and fixtures shared by the fault tests (helpers: tests/fault_kit.py)."""

import os
import shutil
import tempfile

import numpy as np
import pytest
from PIL import Image

from dpi_jax import checkpoint, compile_cache
from tests.fault_kit import face, huge_png, random_params
from tests.reference import TRAJ_ADM, TRAJ_CRT

_SESSION_CACHE = []  # the cache folder this session made (removed at its end)


def pytest_configure(config):
    """One persistent compilation cache (dpi_jax.compile_cache) for the whole session, in this process and in every
    tool the tests launch: a program that several tests compile (the tiny sampler, a train step, the metric
    networks), in-process or in a subprocess, is compiled once. The folder is new for every session (so a run here
    measures what CI measures), unless DPI_JAX_CACHE_DIR is set; pytest-xdist's workers inherit it. Programs of any
compile time are kept (DPI_JAX_CACHE_MIN_COMPILE_S=0)."""
    if compile_cache.ENV not in os.environ:
        _SESSION_CACHE.append(tempfile.mkdtemp(prefix="dpi_jax_test_xla_"))
        os.environ[compile_cache.ENV] = _SESSION_CACHE[0]
    # every program, also the ~100 small ones (70 ms each) that each launched tool compiles on its way
    os.environ.setdefault(compile_cache.MIN_ENV, "0")
    compile_cache.enable()


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject.toml's addopts): one worker per core, at most 4. Two workers on 2 cores take the whole
    suite from about 16 to 12 minutes (docs/testing.md); beyond 4, the tests that launch 2 or 3 processes of their own
    and XLA's thread pools would only contend, and each worker holds its own compiled programs (~2 GB)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """The modules with the most slow tests run first, each module's tests together and in their order: the last
    tests of a run on several workers (pytest-xdist) are then short ones, and no worker waits alone at the end on a
    2-minute test. Module-scoped fixtures are set up once per worker, as before."""
    modules = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    weight = {path: sum(item.get_closest_marker("slow") is not None for item in group)
              for path, group in modules.items()}
    items[:] = [item for path in sorted(modules, key=lambda p: -weight[p]) for item in modules[path]]


def pytest_unconfigure(config):
    for folder in _SESSION_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


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
