"""Speed and memory of the DPI sampler, as one JSON line.

    python -m dpi_jax.bench --config configs/paper.py:x8 --batch 16 --steps 50 --dtype bf16  # ffhq_10m + CRT_256
    python -m dpi_jax.bench --config configs/paper.py:x8 --tiny                              # small models, for a CPU
    python -m dpi_jax.bench --tiny --sweep                                   # images/s at batch 1, 4, 8 and seeds
    python -m dpi_jax.bench --tiny --dtype_check --steps 10                  # bfloat16 against float32, same inputs
    python -m dpi_jax.bench --reference /path/to/DPI --batch 1 --steps 4 --repeats 3     # against the authors' code

Random weights of the paper's model sizes (``FFHQ_10M`` and ``CRT_256``; ``--tiny``: 64x64 models with 32 channels),
drawn on the host (:func:`random_params`).

Default mode reports: compile seconds of the whole sampler and its temporary memory (XLA's plan: it must not grow
with ``--steps``), seconds per sampler step per image, images/s at ``--steps``, GFLOP per prior+CRT call from XLA's
cost analysis, achieved TFLOP/s, the same for a scan of the prior+CRT forwards alone (``overhead`` = sampler time /
forwards time), how many recompilations changing tau, s, omega and the seed caused, the peak host memory of the
process (``peak_host_mib``, from ``getrusage``) and the device's peak memory where the backend reports it
(``device_peak_mib``, null on CPU). ``--sweep`` adds ``sweep``: one row per batch size (1, 4, 8) and one for
``--seeds`` seeds vmapped by :func:`dpi_jax.sampler.sample_seeds` at batch 1, each with images/s
(``--sweep_batches`` changes the batch sizes). ``--dtype_check`` instead compares the sampler's output in bfloat16
with float32's on the same parameters, inputs and keys (:func:`dtype_agreement`).

``--reference DIR`` times the authors' PyTorch sampler (a checkout of JerryYann/DPI; needs torch and kornia) against
this project's on the same networks (the reference's randomly initialised models, ported with
:func:`dpi_jax.port.convert_state_dict`), the same respaced DDPM schedule, the same x_T and LR input, in alternating
repetitions (best of ``--repeats``), and prints seconds per image-step for both, their ratio
(``speedup`` = reference / project: > 1 means this project is faster) and the threads each side used. Both sides use
every core the process may run on (PyTorch's intra-op threads and XLA's CPU thread pool).
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from tqdm import tqdm

from dpi_jax import cli, diffusion, inference, sampler, validation
from dpi_jax.errors import InputError
from dpi_jax.models import ADM, CRT, CRT_256, FFHQ_10M, abstract_params

FLAGS = flags.FLAGS

TINY_PRIOR = dict(FFHQ_10M, image_size=64, num_channels=32, channel_mult=(1, 2, 2), attention_resolutions="16",
                  num_head_channels=16)
TINY_CRT = dict(CRT_256, image_size=64, num_channels=32, channel_mult=(1, 2, 2), attention_resolutions="16")
SWEEP_BATCHES = (1, 4, 8)


def _best_times(fns, repeats):
    """The best of ``repeats`` timings of each function, measured in turns so that load changes hit all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for n, fn in enumerate(fns):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[n] = min(best[n], time.perf_counter() - start)
    return best


def _flops(lowered) -> float:
    """XLA's FLOP count of a lowered program, taken before backend passes: after them, GPU convolutions are cuDNN
    calls that the count leaves out (the compiled H200 program counted 4.9 of the 404 GFLOP of a prior+CRT call)."""
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def memory_figures() -> dict:
    """Peak resident memory of this process so far (MiB) and the device's peak use where the backend reports it."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return {"peak_host_mib": round(peak_kib / 1024, 1),
            "device_peak_mib": None if peak is None else round(peak / 2**20, 1)}


def threads() -> dict:
    """The cores this process may use (XLA's CPU thread pool has one thread per core) and PyTorch's threads, if
    PyTorch is loaded."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch = sys.modules.get("torch")
    return {"cpus": cores, "torch_threads": torch.get_num_threads() if torch else None}


def random_params(module, seed: int, batch: int = 1):
    """Random parameters for ``module`` drawn by NumPy on the host (compiling a UNet's ``init`` takes longer than the
    figures it serves): kernels normal with variance 1 / fan-in, norm scales 1, biases normal with std 0.02. Unlike
    guided-diffusion's initialisation, no layer starts at zero, so the networks' outputs depend on every layer."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = getattr(path[-1], "key", "")
        if name == "scale":
            return np.ones(leaf.shape, leaf.dtype)
        std = 0.02 if name == "bias" or len(leaf.shape) < 2 else np.prod(leaf.shape[:-1]) ** -0.5
        return (std * rng.standard_normal(leaf.shape)).astype(leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract_params(module, batch))


def model_name(tiny: bool) -> str:
    return "tiny-64" if tiny else "ffhq_10m+crt_256"


def _modules(tiny: bool, dtype) -> tuple[ADM, CRT]:
    """The prior and the CRT modules: the paper's sizes, or the tiny ones."""
    prior_cfg, crt_cfg = (TINY_PRIOR, TINY_CRT) if tiny else (FFHQ_10M, CRT_256)
    return ADM(**prior_cfg, dtype=dtype), CRT(**crt_cfg, dtype=dtype)


def make_networks(tiny: bool, dtype, batch: int = 1) -> sampler.Networks:
    """The prior and the CRT (the paper's sizes, or the tiny ones) with random parameters (:func:`random_params`)."""
    prior, crt = _modules(tiny, dtype)
    return sampler.Networks(prior, random_params(prior, 0, batch), crt, random_params(crt, 1, batch))


def _prior_crt_call(nets: sampler.Networks, x, t):
    """One prior call and one CRT call, as a sampler step makes them (the CRT reads the prior's x-hat-0 channels)."""
    return nets.crt_fn()(nets.prior_fn()(x, t)[..., :3], t, x)


def _x_T(lr, k: int):
    """A fixed x_T of the size the sampler restores ``lr`` to at sparsity ``k``."""
    return jax.random.normal(jax.random.key(7), lr.shape[:1] + (lr.shape[1] * k,) * 2 + (3,))


def _lr_input(key, nets: sampler.Networks, batch: int, k: int):
    size = nets.prior.image_size
    return jax.random.uniform(key, (batch, size // k, size // k, 3), minval=-1, maxval=1)


def run(config, batch: int, steps: int, dtype, tiny: bool, repeats: int, compile_only: bool = False,
        nets: sampler.Networks | None = None) -> dict:
    """The default figures (see the module docstring) for one batch size."""
    nets = nets or make_networks(tiny, dtype, batch)
    settings = sampler.Settings(**config.dpi)
    schedule = diffusion.make_schedule(config.diffusion.num_timesteps, config.diffusion.beta_schedule, str(steps))
    lr = _lr_input(jax.random.key(2), nets, batch, settings.k)

    # The whole sampler: compile ahead of time (compile seconds, XLA's memory plan), then time it.
    start = time.perf_counter()
    lowered = sampler.lower(jax.random.key(3), lr, nets, schedule, settings)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()  # from the persistent cache when it holds the program (dpi_jax.compile_cache)
    compile_s, xla_compile_s = time.perf_counter() - start, time.perf_counter() - lowered_at
    memory = compiled.memory_analysis()
    figures = {
        "device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
        "model": model_name(tiny), "dtype": jnp.dtype(dtype).name, "batch": batch,
        "steps": steps, "compile_s": round(compile_s, 2), "xla_compile_s": round(xla_compile_s, 2),
        "temp_mib": getattr(memory, "temp_size_in_bytes", float("nan")) / 2**20,
    }
    if compile_only:
        return figures | threads() | memory_figures()
    run_sampler = lambda: sampler.sample(jax.random.key(4), lr, nets, schedule, settings)  # noqa: E731
    jax.block_until_ready(run_sampler())
    count = sampler.compilation_count()
    t_max = config.diffusion.num_timesteps - 1
    for seed, tau, s, omega in [(5, 0.0, 1.0, 10.0), (6, t_max, 2.0, 3.0 * t_max)]:
        other = settings.replace(tau=tau, s=s, omega=omega)
        jax.block_until_ready(sampler.sample(jax.random.key(seed), lr, nets, schedule, other))
    recompilations = sampler.compilation_count() - count

    # The networks alone: one prior and one CRT call per step, chained so that nothing is hoisted out of the loop.
    def forwards(x):
        def body(x, t):
            return _prior_crt_call(nets, x, jnp.full((batch,), t)), None
        return jax.lax.scan(body, x, schedule.timestep_map)[0]

    def one_call(x):
        return _prior_crt_call(nets, x, jnp.zeros((batch,), jnp.int32))

    # The step progress bar of sample.py (dpi_jax.inference.StepBar): reports every 1/50 of the steps to a bar.
    bar = tqdm(total=steps * (repeats + 1), file=io.StringIO(), mininterval=0)
    report_every = max(1, steps // inference.REPORTS_PER_RUN)
    run_reporting = lambda: sampler.sample(jax.random.key(4), lr, nets, schedule, settings,  # noqa: E731
                                           report_every=report_every)
    with sampler.watch_steps(lambda i: bar.update(1)):
        jax.block_until_ready(run_reporting())

    x_T = _x_T(lr, settings.k)
    call_flops = _flops(jax.jit(one_call).lower(x_T))
    forwards_jit = jax.jit(forwards)
    jax.block_until_ready(forwards_jit(x_T))
    with sampler.watch_steps(lambda i: bar.update(1)):
        sampler_s, forwards_s, reporting_s = _best_times(
            [run_sampler, lambda: forwards_jit(x_T), lambda: (run_reporting(), jax.effects_barrier())[0]], repeats)

    total_flops = call_flops * steps
    return figures | {
        "sampler_s": sampler_s, "forwards_s": forwards_s,
        "s_per_step_per_image": sampler_s / (steps * batch), "images_per_s": batch / sampler_s,
        "gflop_per_prior_crt_call_per_image": call_flops / batch / 1e9,
        "sampler_tflops": total_flops / sampler_s / 1e12,
        "forwards_s_per_step_per_image": forwards_s / (steps * batch),
        "forwards_tflops": total_flops / forwards_s / 1e12,
        "overhead": sampler_s / forwards_s,
        "progress_bar_s": reporting_s, "progress_bar_overhead_pct": 100 * (reporting_s / sampler_s - 1),
        "recompilations_on_tau_s_omega_seed": recompilations,
    } | threads() | memory_figures()


def sweep(config, steps: int, dtype, tiny: bool, repeats: int, seeds: int,
          batches=SWEEP_BATCHES) -> list[dict]:
    """images/s of :func:`sampler.sample` at each batch size, and of :func:`sampler.sample_seeds` with ``seeds``
    seeds vmapped at batch 1 (images = seeds x batch). One compilation per row; the best of ``repeats`` runs."""
    nets = make_networks(tiny, dtype)
    settings = sampler.Settings(**config.dpi)
    schedule = diffusion.make_schedule(config.diffusion.num_timesteps, config.diffusion.beta_schedule, str(steps))
    rows = []
    cases = [(b, None) for b in batches] + ([(1, seeds)] if seeds else [])
    for batch, num_seeds in cases:
        lr = _lr_input(jax.random.key(2), nets, batch, settings.k)
        if num_seeds is None:
            fn = lambda lr=lr: sampler.sample(jax.random.key(4), lr, nets, schedule, settings)  # noqa: E731
        else:
            keys = jax.random.split(jax.random.key(4), num_seeds)
            fn = lambda lr=lr, keys=keys: sampler.sample_seeds(keys, lr, nets, schedule, settings)  # noqa: E731
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first_s = time.perf_counter() - start
        (best,) = _best_times([fn], repeats)
        images = batch * (num_seeds or 1)
        rows.append({"batch": batch, "seeds": num_seeds or 1, "images": images, "first_call_s": round(first_s, 2),
                     "s_per_step_per_image": best / (steps * images), "images_per_s": images / best})
    return rows


def dtype_agreement(config, steps: int, batch: int, tiny: bool) -> dict:
    """How far bfloat16 compute moves the sampler's output from float32's, with the same (float32) parameters, LR
    input, x_T and keys: the largest and mean absolute difference of the restored images (range [-1, 1]), their PSNR
    (peak-to-peak 2), and the relative error of one prior+CRT call on x_T. The parameters stay float32 either way
    (``ADM(dtype=...)`` casts at each layer, as guided-diffusion's fp16 policy)."""
    nets32 = make_networks(tiny, jnp.float32, batch)
    prior16, crt16 = _modules(tiny, jnp.bfloat16)
    nets16 = sampler.Networks(prior16, nets32.prior_params, crt16, nets32.crt_params)
    settings = sampler.Settings(**config.dpi)
    schedule = diffusion.make_schedule(config.diffusion.num_timesteps, config.diffusion.beta_schedule, str(steps))
    lr = _lr_input(jax.random.key(2), nets32, batch, settings.k)
    out = {name: np.asarray(sampler.sample(jax.random.key(4), lr, nets, schedule, settings), np.float64)
           for name, nets in (("float32", nets32), ("bfloat16", nets16))}
    diff = np.abs(out["bfloat16"] - out["float32"])
    x_T = _x_T(lr, settings.k)
    t = jnp.full((batch,), config.diffusion.num_timesteps // 2, jnp.int32)
    one_call = jax.jit(_prior_crt_call)
    calls = {name: np.asarray(one_call(nets, x_T, t), np.float64) for name, nets in (("float32", nets32),
                                                                                      ("bfloat16", nets16))}
    call_error = np.linalg.norm(calls["bfloat16"] - calls["float32"]) / np.linalg.norm(calls["float32"])
    return {"model": model_name(tiny), "batch": batch, "steps": steps,
            "device": jax.devices()[0].device_kind, "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()), "psnr_db": float(10 * np.log10(4.0 / np.mean(diff**2))),
            "one_call_relative_error": float(call_error)}


# --- the authors' sampler, for --reference -----------------------------------------------------------------------


def _import_reference(reference: str):
    """guided_diffusion from the authors' checkout, imported as a bare package (its ``__init__`` pulls in training
    code and an absolute path of the authors' machine). Their ``get_mask`` imports torchvision's Grayscale; where
    torchvision cannot be imported (a CUDA build beside a CPU torch), a stand-in with the same ITU-R 601 weights is
    registered."""
    root = Path(reference).resolve()
    if not (root / "guided_diffusion" / "gaussian_diffusion.py").is_file():
        raise FileNotFoundError(f"{root} is not a checkout of the authors' DPI repository (no "
                                "guided_diffusion/gaussian_diffusion.py)")
    try:
        import kornia  # noqa: F401  (the reference's gaussian_diffusion imports kornia.filters)
        import torch
    except ImportError as err:
        raise ImportError(f"--reference needs torch and kornia ({err}): pip install torch kornia") from err
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

        class Grayscale:
            def __init__(self, num_output_channels: int = 1):
                self.num_output_channels = num_output_channels

            def __call__(self, img):
                r, g, b = img[:, 0], img[:, 1], img[:, 2]
                return (0.2989 * r + 0.587 * g + 0.114 * b)[:, None].to(img.dtype)

        transforms = types.ModuleType("torchvision.transforms")
        transforms.Grayscale = Grayscale
        package = types.ModuleType("torchvision")
        package.transforms = transforms
        sys.modules.update({"torchvision": package, "torchvision.transforms": transforms})
    if "guided_diffusion" not in sys.modules:
        package = types.ModuleType("guided_diffusion")
        package.__path__ = [str(root / "guided_diffusion")]
        sys.modules["guided_diffusion"] = package
    from guided_diffusion import script_util

    return torch, script_util


def _torch_config(config: dict) -> dict:
    """A model config in the form guided-diffusion's create_model takes (channel_mult as "1,2,2")."""
    out = dict(config)
    if isinstance(out.get("channel_mult"), (tuple, list)):
        out["channel_mult"] = ",".join(str(m) for m in out["channel_mult"])
    return out


def side_by_side(reference: str, batch: int, steps: int, repeats: int, tiny: bool = False,
                 manifest: str | None = None) -> dict:
    """Seconds per image-step of the authors' sampler and of :func:`sampler.sample` on the same networks, inputs and
    respaced DDPM schedule, timed in alternation (best of ``repeats``)."""
    from dpi_jax import port

    if steps < 2:
        raise InputError(f"--steps = {steps}: the side-by-side needs at least 2 steps")
    torch, script_util = _import_reference(reference)
    if tiny:
        prior_cfg, crt_cfg = _torch_config(TINY_PRIOR), _torch_config(TINY_CRT)
    else:
        configs = json.loads(Path(manifest).read_text())
        prior_cfg, crt_cfg = configs["ffhq_10m"]["config"], configs["crt_256"]["config"]
    torch.manual_seed(0)
    ref_prior = script_util.create_model(**prior_cfg).eval()
    ref_crt = script_util.create_model(**crt_cfg).eval()
    with torch.no_grad():  # a random corrector's output scaled down, so that the condition stays in range
        for p in ref_crt.out.parameters():
            p.mul_(0.05)
    ref_diffusion = script_util.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                                          timestep_respacing=str(steps))
    k, size = 2, int(prior_cfg["image_size"])
    rng = np.random.default_rng(0)
    lr_np = np.clip(rng.standard_normal((batch, 3, size // k, size // k)), -1, 1).astype(np.float32)
    x_T_np = rng.standard_normal((batch, 3, size, size)).astype(np.float32)

    def reference_sampler():
        # The authors' loop (their p_sample_loop without its data plumbing): y starts as the LR pixels on the grid,
        # 1e-6 elsewhere; each step returns the next sample and condition.
        grid = torch.full((batch, 3, size, size), 1e-6)
        grid[:, :, ::k, ::k] = torch.from_numpy(lr_np)
        img, cond = torch.from_numpy(x_T_np), grid.clone()
        with torch.no_grad():
            for i in reversed(range(steps)):
                out = ref_diffusion.p_sample(ref_prior, ref_crt, img, torch.full((batch,), i, dtype=torch.long),
                                             clip_denoised=True, mask=cond, mask0=grid)
                img, cond = out["sample"], out["mask"]
        return img

    nets = sampler.Networks(
        ADM(**prior_cfg), port.convert_state_dict(ref_prior.state_dict(), prior_cfg, kind="adm"),
        CRT(**crt_cfg), port.convert_state_dict(ref_crt.state_dict(), crt_cfg, kind="crt"))
    schedule = diffusion.make_schedule(1000, "linear", str(steps))
    # The reference's hard-coded DDPM-1000 thresholds put every step of a short schedule in stage II (RACM): so here.
    settings = sampler.Settings(tau=999.0, s=1.2, omega=750.0 * 1000 / steps, k=k)
    lr, x_T = jnp.asarray(lr_np.transpose(0, 2, 3, 1)), jnp.asarray(x_T_np.transpose(0, 2, 3, 1))

    def project_sampler():
        return sampler.sample(jax.random.key(0), lr, nets, schedule, settings, x_T=x_T)

    start = time.perf_counter()
    jax.block_until_ready(project_sampler())
    first_s = time.perf_counter() - start
    reference_sampler()  # warm-up (oneDNN primitive caches)
    times = {"reference": [], "project": []}
    for _ in range(repeats):
        for name, fn in (("reference", reference_sampler), ("project", project_sampler)):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    per = {name: min(values) / (batch * steps) for name, values in times.items()}
    return {
        "model": model_name(tiny), "batch": batch, "steps": steps, "repeats": repeats,
        "reference_s_per_image_step": round(per["reference"], 4), "project_s_per_image_step": round(per["project"], 4),
        "speedup": round(per["reference"] / per["project"], 3), "project_first_call_s": round(first_s, 2),
        "all_s": {name: [round(v, 3) for v in values] for name, values in times.items()},
    } | threads() | memory_figures()


def define_flags() -> None:
    """The command line's flags, defined by the entry point (importing dpi_jax.bench defines none)."""
    cli.define_config_file("config", "configs/paper.py:x8", "Sampling config (tau, s, omega, k).")
    flags.DEFINE_integer("batch", 1, "Images per batch.", lower_bound=1)
    flags.DEFINE_integer("steps", 20, "Sampler steps (respacing of the 1000-step schedule).", lower_bound=1)
    flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16"], "Compute dtype of the networks.")
    flags.DEFINE_bool("tiny", False, "Small 64x64 models instead of the paper's 256x256 ones.")
    flags.DEFINE_bool("compile_only", False, "Only compile the sampler: compile seconds and memory.")
    flags.DEFINE_integer("repeats", 3, "Timed runs of each; the best is reported.", lower_bound=1)
    flags.DEFINE_bool("dtype_check", False, "Only compare the sampler's output in bfloat16 with float32's "
                      "(dtype_agreement): differences, PSNR, one call's relative error.")
    flags.DEFINE_bool("sweep", False, "Also images/s at batch 1, 4, 8 and with --seeds seeds vmapped.")
    flags.DEFINE_list("sweep_batches", ["1", "4", "8"], "Batch sizes of the sweep.")
    flags.DEFINE_integer("seeds", 4, "Seeds of the sweep's sample_seeds row (batch 1); 0: no such row.",
                         lower_bound=0)
    flags.DEFINE_string("reference", None, "A checkout of the authors' DPI repository: time it side by side.")
    flags.DEFINE_string("manifest", "tests/fixtures/reference/checkpoint_manifests.json",
                        "The reference's model configs (ffhq_10m, crt_256), for --reference.")


def main():
    """The command line's work (:func:`dpi_jax.cli.run`): a bad config or flag exits with status 2 and one line
    ``error: ...`` on stderr."""
    if FLAGS.reference:
        print(json.dumps(side_by_side(FLAGS.reference, FLAGS.batch, FLAGS.steps, FLAGS.repeats, FLAGS.tiny,
                                      FLAGS.manifest)))
        return
    validation.check_sampling(FLAGS.config)
    if FLAGS.dtype_check:
        print(json.dumps({"dtype_check": dtype_agreement(FLAGS.config, FLAGS.steps, FLAGS.batch, FLAGS.tiny)}))
        return
    dtype = {"fp32": jnp.float32, "bf16": jnp.bfloat16}[FLAGS.dtype]
    figures = run(FLAGS.config, FLAGS.batch, FLAGS.steps, dtype, FLAGS.tiny, FLAGS.repeats, FLAGS.compile_only)
    if FLAGS.sweep and not FLAGS.compile_only:
        batches = tuple(int(b) for b in FLAGS.sweep_batches)
        figures["sweep"] = sweep(FLAGS.config, FLAGS.steps, dtype, FLAGS.tiny, FLAGS.repeats, FLAGS.seeds, batches)
        figures |= memory_figures()
    print(json.dumps(figures))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
