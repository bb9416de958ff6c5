"""The commands: a user's mistake exits 2 with one line, --verbose shows the traceback."""

import pytest
from absl import flags

from dpi_jax import cli
from dpi_jax.errors import InputError
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
    check_cli(["sample.py", "--config", "configs/paper.py:x8", "--config.dpi.tua=3"], "config.dpi.tua",
              "did you mean 'dpi.tau'?")
    check_cli(["sample.py", "--config", "configs/paper.py:x8", "--config.batch_size=abc"], "--config.batch_size=abc")
    check_cli(["sample.py", "--config", "configs/paper.py:x8", "--config.batch_size=0", "--config.dpi.tau=nan"],
              "config.batch_size = 0: must be an integer >= 1", "config.dpi.tau = nan")


def test_sample_cli_verbose_shows_the_traceback(tmp_path):
    proc = run_python(["sample.py", "--config", "configs/paper.py:x8", f"--config.prior_checkpoint={tmp_path}",
                       f"--config.input_dir={tmp_path}", "--config.crt_checkpoint=", "--verbose"], check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "not a dpi-jax model checkpoint" in proc.stderr


@pytest.mark.slow
def test_train_cli_setup_errors(tmp_path):
    check_cli(["train.py", "--config", "configs/crt.py:x8", f"--config.workdir={tmp_path}", "--config.k=0"],
              "config.k = 0")
    check_cli(["train.py", "--config", "configs/crt.py:x8"], "config.workdir")
    check_cli(["train.py", "--config", "configs/crt.py:x8", "--config.optim.lerning_rate=1"],
              "did you mean 'optim.learning_rate'?")
    check_cli(["train.py", "--config", "configs/crt.py:x8", f"--config.workdir={tmp_path}",
               f"--config.data.folder={tmp_path / 'none'}"], "config.data.folder", "an existing folder")


@pytest.mark.slow
def test_evaluate_bench_port_cli_setup_errors(tmp_path):
    check_cli(["-m", "dpi_jax.evaluate", "--config", "configs/paper.py:x8", "--config.dpi.omega=0"],
              "config.dpi.omega = 0")
    check_cli(["-m", "dpi_jax.bench", "--config", "configs/paper.py:x8", "--config.dpi.s=-1"], "config.dpi.s = -1")
    check_cli(["-m", "dpi_jax.port", str(tmp_path / "missing.pt"), str(tmp_path / "out"), "--model", "crt"],
              "missing.pt")


# --- cli.main_with_args: the tools with positional arguments --------------------------------------------------------

def define_test_flags(fv):
    flags.DEFINE_integer("count", 3, "how many", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("kind", "a", ["a", "b"], "which one", flag_values=fv)


def test_main_with_args_parses_on_fresh_flags_each_call(capsys):
    """Help exits 0 and names the flags; a bad flag or a wrong number of arguments is one line and status 2, before
    the program runs; two calls in one process parse their own values (no global flags)."""
    calls = []

    def program(fv, src, dst=None):
        if src == "bad":
            raise InputError("bad input")
        calls.append((src, dst, fv.count, fv.kind, fv.verbose))

    def main(argv):
        return cli.main_with_args(argv, define_test_flags, program, prog="tool", description="A tool.",
                                  positional=("SRC",), at_most=2)

    assert main(["x", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tool SRC [flags]\n\nA tool.\n")
    assert all(name in out for name in ("--count", "--kind", "--[no]verbose"))
    for argv, words in ((["x", "--nope"], ("Unknown command line flag 'nope'",)),
                        (["x", "--count=abc"], ("--count=abc",)),
                        (["x", "--count", "0"], ("--count=0", "not a positive integer")),
                        (["x", "--kind=c"], ("--kind=c", "<a|b>")),
                        ([], ("tool takes SRC", "[]")),
                        (["x", "y", "z"], ("tool takes SRC", "['x', 'y', 'z']"))):
        assert main(argv) == 2, argv
        line = error_line(capsys.readouterr().err)
        assert all(word in line for word in words), (argv, line)
    assert calls == []
    assert main(["x", "--count", "5", "y", "--kind=b"]) == 0
    assert main(["z", "--verbose"]) == 0
    assert calls == [("x", "y", 5, "b", False), ("z", None, 3, "a", True)]
    assert main(["bad"]) == 2 and error_line(capsys.readouterr().err) == "error: bad input"  # through run_cli


def test_metrics_command_line_names_its_commands(capsys):
    from dpi_jax.metrics.__main__ import main

    assert main(["--help"]) == 0 and "python -m dpi_jax.metrics fid DIR_A DIR_B" in capsys.readouterr().out
    assert main(["is", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m dpi_jax.metrics is FOLDER [flags]") and "--splits" in out
    for argv, word in ((["--json"], "no command"), (["psnr", "a", "b"], "unknown command 'psnr'")):
        assert main(argv) == 2
        line = error_line(capsys.readouterr().err)
        assert word in line and "fid, stats, lpips, is, id, musiq, clipiqa" in line
    assert main(["id", "a", "b", "--descriptor=fc6"]) == 2 and "--descriptor=fc6" in capsys.readouterr().err
    assert main(["lpips", "a"]) == 2 and "takes DIR_A DIR_B" in capsys.readouterr().err
