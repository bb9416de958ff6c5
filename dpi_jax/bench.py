"""Speed of the DPI sampler, as one JSON line.

    python -m dpi_jax.bench --config configs/x8.py --batch 16 --steps 50 --dtype bf16   # full ffhq_10m + CRT_256
    python -m dpi_jax.bench --config configs/x8.py --tiny                                  # small models, for a CPU

Random weights of the paper's model sizes (``FFHQ_10M`` and ``CRT_256``; ``--tiny``: 64x64 models with 32 channels).
Reports: compile seconds of the whole sampler and its temporary memory (XLA's plan: it must not grow with
``--steps``), seconds per sampler step per image, images/s at ``--steps``, GFLOP
per prior+CRT call from XLA's cost analysis, achieved TFLOP/s, the same for a scan of the prior+CRT forwards alone
(``overhead`` = sampler time / forwards time), and how many recompilations changing tau, s, omega and the seed caused.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from dpi_jax import diffusion, sampler
from dpi_jax.models import ADM, CRT, CRT_256, FFHQ_10M

_CONFIG = config_flags.DEFINE_config_file("config", "configs/x8.py", "Sampling config (tau, s, omega, k).")
_BATCH = flags.DEFINE_integer("batch", 1, "Images per batch.")
_STEPS = flags.DEFINE_integer("steps", 20, "Sampler steps (respacing of the 1000-step schedule).")
_DTYPE = flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16"], "Compute dtype of the networks.")
_TINY = flags.DEFINE_bool("tiny", False, "Small 64x64 models instead of the paper's 256x256 ones.")
_COMPILE_ONLY = flags.DEFINE_bool("compile_only", False, "Only compile the sampler: compile seconds and memory.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of each; the best is reported.")

TINY_PRIOR = dict(FFHQ_10M, image_size=64, num_channels=32, channel_mult=(1, 2, 2), attention_resolutions="16",
                  num_head_channels=16)
TINY_CRT = dict(CRT_256, image_size=64, num_channels=32, channel_mult=(1, 2, 2), attention_resolutions="16")


def _best_times(fns, repeats):
    """The best of ``repeats`` timings of each function, measured in turns so that load changes hit all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for n, fn in enumerate(fns):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[n] = min(best[n], time.perf_counter() - start)
    return best


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def run(config, batch: int, steps: int, dtype, tiny: bool, repeats: int, compile_only: bool = False) -> dict:
    prior_cfg, crt_cfg = (TINY_PRIOR, TINY_CRT) if tiny else (FFHQ_10M, CRT_256)
    prior, crt = ADM(**prior_cfg, dtype=dtype), CRT(**crt_cfg, dtype=dtype)
    size = prior_cfg["image_size"]
    k = config.k
    x = jnp.zeros((batch, size, size, 3))
    t = jnp.zeros((batch,))
    prior_params = jax.jit(prior.init)(jax.random.key(0), x, t)["params"]
    crt_params = jax.jit(crt.init)(jax.random.key(1), x, t, x)["params"]
    schedule = diffusion.make_schedule(config.num_timesteps, config.beta_schedule, str(steps))
    lr = jax.random.uniform(jax.random.key(2), (batch, size // k, size // k, 3), minval=-1, maxval=1)
    models = dict(prior=prior, prior_params=prior_params, crt=crt, crt_params=crt_params, schedule=schedule, k=k)
    settings = dict(tau=config.tau * steps / config.num_timesteps, s=config.s,
                    omega=config.omega * steps / config.num_timesteps)

    # The whole sampler: compile ahead of time (compile seconds, XLA's memory plan), then time it.
    sampler_args = sampler._settings(dict(models, **settings, method=config.method, eta=config.eta,
                                          var_type=config.var_type, clip_denoised=config.clip_denoised,
                                          snapshot_steps=()))
    start = time.perf_counter()
    compiled = sampler._run_from_key.lower(jax.random.key(3), None, lr, **sampler_args).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    figures = {
        "device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
        "model": "tiny-64" if tiny else "ffhq_10m+crt_256", "dtype": jnp.dtype(dtype).name, "batch": batch,
        "steps": steps, "compile_s": round(compile_s, 2),
        "temp_mib": getattr(memory, "temp_size_in_bytes", float("nan")) / 2**20,
    }
    if compile_only:
        return figures
    run_sampler = lambda: sampler.sample(jax.random.key(4), lr, **models, **settings)  # noqa: E731
    jax.block_until_ready(run_sampler())
    cache = sampler._run_from_key._cache_size()
    for seed, tau, s, omega in [(5, 0, 1.0, 10.0), (6, steps, 2.0, 3.0 * steps)]:
        jax.block_until_ready(sampler.sample(jax.random.key(seed), lr, **models, tau=tau, s=s, omega=omega))
    recompilations = sampler._run_from_key._cache_size() - cache

    # The networks alone: one prior and one CRT call per step, chained so that nothing is hoisted out of the loop.
    def forwards(prior_params, crt_params, x):
        def body(x, t):
            tt = jnp.full((batch,), t)
            eps = prior.apply({"params": prior_params}, x, tt)[..., :3]
            return crt.apply({"params": crt_params}, eps, tt, x), None
        return jax.lax.scan(body, x, schedule.timestep_map)[0]

    def one_call(prior_params, crt_params, x):
        tt = jnp.zeros((batch,))
        return crt.apply({"params": crt_params}, prior.apply({"params": prior_params}, x, tt)[..., :3], tt, x)

    x_T = jax.random.normal(jax.random.key(7), x.shape)
    call_flops = _flops(jax.jit(one_call).lower(prior_params, crt_params, x_T).compile())
    forwards_jit = jax.jit(forwards)
    jax.block_until_ready(forwards_jit(prior_params, crt_params, x_T))
    sampler_s, forwards_s = _best_times([run_sampler, lambda: forwards_jit(prior_params, crt_params, x_T)], repeats)

    total_flops = call_flops * steps
    return figures | {
        "s_per_step_per_image": sampler_s / (steps * batch), "images_per_s": batch / sampler_s,
        "gflop_per_prior_crt_call_per_image": call_flops / batch / 1e9,
        "sampler_tflops": total_flops / sampler_s / 1e12,
        "forwards_s_per_step_per_image": forwards_s / (steps * batch),
        "forwards_tflops": total_flops / forwards_s / 1e12,
        "overhead": sampler_s / forwards_s,
        "recompilations_on_tau_s_omega_seed": recompilations,
    }


_VERBOSE = flags.DEFINE_bool("verbose", False, "Print the traceback of an error, not only its one-line message.")


def main(argv):
    """The command line: a bad config or flag exits with status 2 and one line ``error: ...`` on stderr."""
    from dpi_jax import validation

    if len(argv) > 1:
        print(f"error: unexpected arguments: {argv[1:]}", file=sys.stderr)
        sys.exit(2)

    def measure():
        validation.check_sampling(_CONFIG.value)
        dtype = {"fp32": jnp.float32, "bf16": jnp.bfloat16}[_DTYPE.value]
        print(json.dumps(run(_CONFIG.value, _BATCH.value, _STEPS.value, dtype, _TINY.value, _REPEATS.value,
                             _COMPILE_ONLY.value)))

    sys.exit(validation.run_cli(measure, verbose=_VERBOSE.value))


if __name__ == "__main__":
    from dpi_jax.validation import parse_flags

    app.run(main, flags_parser=parse_flags)
