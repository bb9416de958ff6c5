"""The commands: a user's mistake exits 2 with one line, --verbose shows the traceback."""

import pytest

from tests.fault_kit import error_line
from tests.reference import run_python

# --- the commands: exit 2, one line, --verbose ---------------------------------------------------------------------

def check_cli(args, *words, status=2):
    proc = run_python(args, check=False)
    line = error_line(proc.stderr)
    assert proc.returncode == status, proc.stderr
    for word in words:
        assert word in line, line
    return proc


@pytest.mark.slow
def test_sample_cli_unknown_field_and_bad_values():
    check_cli(["sample.py", "--config", "configs/x8.py", "--config.tua=3"], "config.tua", "did you mean 'tau'?")
    check_cli(["sample.py", "--config", "configs/x8.py", "--config.batch_size=abc"], "--config.batch_size=abc")
    check_cli(["sample.py", "--config", "configs/x8.py", "--config.batch_size=0", "--config.tau=nan"],
              "config.batch_size = 0: must be an integer >= 1", "config.tau = nan")


def test_sample_cli_verbose_shows_the_traceback(tmp_path):
    proc = run_python(["sample.py", "--config", "configs/x8.py", f"--config.prior_checkpoint={tmp_path}",
                       f"--config.input_dir={tmp_path}", "--config.crt_checkpoint=", "--verbose"], check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "not a dpi-jax model checkpoint" in proc.stderr


@pytest.mark.slow
def test_train_cli_setup_errors(tmp_path):
    check_cli(["train.py", "--config", "configs/crt_x8.py", f"--config.workdir={tmp_path}", "--config.k=0"],
              "config.k = 0")
    check_cli(["train.py", "--config", "configs/crt_x8.py"], "config.workdir")
    check_cli(["train.py", "--config", "configs/crt_x8.py", "--config.optim.lerning_rate=1"],
              "did you mean 'optim.learning_rate'?")
    check_cli(["train.py", "--config", "configs/crt_x8.py", f"--config.workdir={tmp_path}",
               f"--config.data.folder={tmp_path / 'none'}"], "config.data.folder", "an existing folder")


@pytest.mark.slow
def test_evaluate_bench_port_cli_setup_errors(tmp_path):
    check_cli(["-m", "dpi_jax.evaluate", "--config", "configs/x8.py", "--config.omega=0"], "config.omega = 0")
    check_cli(["-m", "dpi_jax.bench", "--config", "configs/x8.py", "--config.s=-1"], "config.s = -1")
    check_cli(["-m", "dpi_jax.port", str(tmp_path / "missing.pt"), str(tmp_path / "out"), "--model", "crt"],
              "missing.pt")
