"""Every config rule: a bad field is refused at start-up, before anything is loaded, naming the field, its value and
what is allowed."""

import ml_collections
import pytest

from configs import crt, default
from dpi_jax import validation
from tests.fault_kit import error_line, run_main, sample_config
from tests.reference import ROOT

# --- config validation ----------------------------------------------------------------------------------------------

SAMPLING_CASES = [  # (field, value, words the message must hold)
    ("batch_size", 0, ">= 1"),
    ("dpi.k", 0, ">= 1"),
    ("diffusion.respacing", "abc", "'ddimN'"),
    ("diffusion.respacing", "2000", "2000"),
    ("dtype", "float16", "'bfloat16'"),
    ("grid_rows", 0, ">= 1"),
    ("dpi.method", "bogus", "ddim"),
    ("dpi.var_type", "bogus", "learned_range"),
    ("dpi.tau", -1.0, "[0, 1000)"),
    ("dpi.tau", float("nan"), "[0, 1000)"),
    ("dpi.tau", 1000.0, "[0, 1000)"),
    ("dpi.s", -1.0, "> 0"),
    ("dpi.s", 0.0, "> 0"),
    ("dpi.s", float("nan"), "> 0"),
    ("dpi.omega", 0.0, "> 0"),
    ("dpi.omega", -5.0, "> 0"),
    ("dpi.eta", 2.0, "[0, 1]"),
    ("num_images", -1, ">= 0"),
    ("num_seeds", 0, ">= 1"),
    ("seed_chunk", -1, ">= 0"),
    ("scale", 0, ">= 1"),
    ("diffusion.num_timesteps", 0, ">= 1"),
    ("mode", "bogus", "'synthetic'"),
    ("diffusion.beta_schedule", "quadratic", "'cosine'"),
    ("output_dir", "", "a folder"),
]


@pytest.mark.parametrize("field, value, allowed", SAMPLING_CASES, ids=lambda v: str(v))
def test_sampling_config_rule(field, value, allowed):
    config = default.get_config()
    config.update_from_flattened_dict({field: value})
    with pytest.raises(validation.ConfigError) as err:
        validation.check_sampling(config)
    message = str(err.value)
    assert f"config.{field} = " in message and allowed in message, message
    assert repr(value) in message or str(value) in message, message


def test_every_shipped_config_is_valid():
    """Every file under configs/ (found by glob), with each variant its get_config(arg) offers (listed in its
    VARIANTS): a sampling config passes check_sampling, a training config (it has a model section) check_training."""
    import importlib
    import inspect

    checked, files = [], []
    for path in sorted((ROOT / "configs").glob("*.py")):
        module = importlib.import_module(f"configs.{path.stem}")
        if not hasattr(module, "get_config"):
            continue
        files.append(path.stem)
        takes_variant = bool(inspect.signature(module.get_config).parameters)
        assert takes_variant == hasattr(module, "VARIANTS"), f"configs/{path.name}: VARIANTS lists get_config's args"
        for variant in getattr(module, "VARIANTS", [None]):
            config = module.get_config(variant) if variant else module.get_config()
            if "model" in config:
                if not config.model.config:  # train_default: the base the crt_* and ddpm_* files complete
                    continue
                config.workdir = config.workdir or "runs/x"
                if config.data.source == "folder":  # the data folder is the user's
                    config.data.source = "synthetic"
                validation.check_training(config)
            else:
                validation.check_sampling(config)
            checked.append(f"{path.stem}:{variant}" if variant else path.stem)
    assert set(files) - {"train_default"} == {name.split(":")[0] for name in checked}, checked
    assert {"paper:x8", "paper:real", "paper:x16_ddim20", "crt:real", "crt_demo:x4", "prior_only:x4"} <= set(checked)


def test_sampling_reports_every_problem_before_loading_anything(tmp_path, capsys):
    config = sample_config(tmp_path / "no", tmp_path, tmp_path / "out", batch_size=0, dtype="float16",
                           **{"dpi.k": 0})
    status, err = run_main(config, capsys)  # the checkpoints do not exist: the config is checked first
    line = error_line(err)
    assert status == 2 and all(f in line for f in ("batch_size = 0", "dtype = 'float16'", "k = 0"))
    assert not (tmp_path / "out").exists()


def test_runs_are_checked_by_name_before_loading_anything(tmp_path, capsys):
    """config.runs (the demo's x4 and x8): a field a run changes is checked like any other and named with its run;
    a field that the sampling config does not have is refused by its path."""
    config = sample_config(tmp_path / "no", tmp_path, tmp_path / "out")
    config.runs = ml_collections.ConfigDict(dict(a=dict(dpi=dict(tau=100.0)), b=dict(dpi=dict(tau=-1.0))))
    status, err = run_main(config, capsys)
    line = error_line(err)
    assert status == 2 and "tau" in line and "(in run b)" in line and "(in run a)" not in line
    config.runs = ml_collections.ConfigDict(dict(a=dict(sigma=1.0)))
    status, err = run_main(config, capsys)
    assert status == 2 and "config.runs.a.sigma: not a field of the sampling config" in error_line(err)
    config.runs = ml_collections.ConfigDict(dict(a=dict(tau=100.0)))  # a field of a section, by its path
    status, err = run_main(config, capsys)
    assert status == 2 and "config.runs.a.tau: not a field of the sampling config; did you mean 'dpi.tau'?" in (
        error_line(err))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value", [("dpi.k", 3), ("scale", 3), ("dpi.k", 64)])
def test_k_and_scale_must_divide_the_prior_size(ckpts, odd_inputs, tmp_path, capsys, field, value):
    status, err = run_main(sample_config(ckpts, odd_inputs, tmp_path / "out", **{field: value}), capsys)
    line = error_line(err)
    assert status == 2 and f"config.{field} = {value}" in line and "image size 32" in line
    assert not (tmp_path / "out").exists()


def train_config() -> ml_collections.ConfigDict:
    """configs/crt.py:x8 with a workdir and synthetic data (its data folder is the user's)."""
    config = crt.get_config("x8")
    config.workdir, config.data.source = "runs/x", "synthetic"
    return config


TRAINING_CASES = [
    ("batch_size", 0, ">= 1"),
    ("num_steps", 0, ">= 1"),
    ("k", 0, ">= 1"),
    ("k", 3, "divisor"),
    ("scale", 7, "divisor"),
    ("degradation", "blurry", "'codeformer'"),
    ("sample_respacing", "x", "'ddimN'"),
    ("ema_decay", 1.5, "[0, 1]"),
    ("var_type", "bogus", "'fixed_small'"),
    ("log_every", 0, ">= 1"),
    ("checkpoint_every", 0, ">= 1"),
    ("keep_checkpoints", 0, ">= 1"),
    ("optim.learning_rate", 0.0, "(0, inf)"),
    ("optim.learning_rate", float("nan"), "(0, inf)"),
    ("optim.schedule", "linear", "'cosine'"),
    ("optim.b2", 1.0, "[0, 1)"),
    ("optim.warmup_steps", -1, ">= 0"),
    ("optim.grad_clip", -1.0, "[0, inf)"),
    ("data.source", "web", "'folder'"),
    ("data.folder", "", "an existing folder"),
    ("data.workers", 0, ">= 1"),
    ("model.kind", "vae", "'crt'"),
    ("loss.posterior_from", "x", "'gt'"),
    ("diffusion.num_timesteps", 0, ">= 1"),
    ("workdir", "", "a folder"),
]


@pytest.mark.parametrize("field, value, allowed", TRAINING_CASES, ids=lambda v: str(v))
def test_training_config_rule(field, value, allowed):
    config = train_config()
    if field == "data.folder":
        config.data.source = "folder"
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(validation.ConfigError) as err:
        validation.check_training(config)
    message = str(err.value)
    assert f"config.{field} = " in message and allowed in message, message


def test_training_config_names_an_impossible_model_config():
    config = train_config()
    config.model.config.num_chanels = 4
    with pytest.raises(validation.ConfigError, match="config.model.config.*num_chanels"):
        validation.check_training(config)


def test_unknown_field_names_the_closest_one():
    assert validation.closest_field(default.get_config(), "dpi.tua") == "; did you mean 'dpi.tau'?"
    # a field of a section, named without it (the layout before config.dpi / config.diffusion): its path
    assert validation.closest_field(default.get_config(), "tau") == "; did you mean 'dpi.tau'?"
    assert validation.closest_field(default.get_config(), "tua") == "; did you mean 'dpi.tau'?"
    assert validation.closest_field(default.get_config(), "respacing") == "; did you mean 'diffusion.respacing'?"
    assert (validation.closest_field(crt.get_config("x8"), "optim.lerning_rate")
            == "; did you mean 'optim.learning_rate'?")
    assert validation.closest_field(crt.get_config("x8"), "modle.kind") == "; did you mean 'model.kind'?"
    assert validation.closest_field(default.get_config(), "zzzzzz") == ""
