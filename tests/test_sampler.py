"""The DPI sampler: one step against a float64 NumPy transcription of docs/algorithm.md, the whole reference trajectory
draw for draw, and the compile/determinism properties."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpi_jax import diffusion, masks, sampler

# ------------------------------------------------------------------------------ one step vs NumPy (float64)
EPS_W, V_W, CRT_W = 0.3, 0.5, 0.8


def toy_prior(x, t):
    """A smooth stand-in for the denoiser: eps and v are fixed functions of x (and t, to check it is passed)."""
    eps = EPS_W * x + 0.001 * t[:, None, None, None]
    return jnp.concatenate([eps, jnp.tanh(V_W * x)], axis=-1)


def toy_crt(y, t, y_T):
    return CRT_W * y + (1 - CRT_W) * y_T + 1e-4 * t[:, None, None, None]


def numpy_step(x, y, y_T, i, z, u, betas, timestep_map, tau, s, omega, k, method, eta, crt=True, refine=True,
               weight=True):
    """Algorithm 1 with the choices of docs/algorithm.md, in float64, written independently of the library; the
    Table 4 switches: ``crt=False`` (y is never updated), ``refine=False`` (stage II corrects y', not the mixed x),
    ``weight=False`` (w = 1)."""
    t = float(timestep_map[i])
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.append(1.0, abar[:-1])
    a, ap, beta = abar[i], abar_prev[i], betas[i]
    eps = EPS_W * x + 0.001 * t
    v = np.tanh(V_W * x)
    x0 = np.clip(x / np.sqrt(a) - np.sqrt(1 / a - 1) * eps, -1, 1)
    post_var = betas * (1 - abar_prev) / (1 - abar)
    log_min = np.log(post_var[1] if i == 0 else post_var[i])
    log_var = (v + 1) / 2 * np.log(beta) + (1 - (v + 1) / 2) * log_min
    nonzero = float(i > 0)

    def post_mean(x_start, x_t):
        return np.sqrt(ap) * beta / (1 - a) * x_start + np.sqrt(1 - beta) * (1 - ap) / (1 - a) * x_t

    if method == "ddpm":
        x_p = post_mean(x0, x) + nonzero * np.exp(0.5 * log_var) * z
        y_noisy = np.sqrt(a) * y + np.sqrt(1 - a) * eps
        y_p = post_mean(y, y_noisy) + nonzero * np.exp(0.5 * log_var) * z
    else:
        eps_x0 = (x / np.sqrt(a) - x0) / np.sqrt(1 / a - 1)
        sigma = eta * np.sqrt((1 - ap) / (1 - a)) * np.sqrt(1 - a / ap)
        x_p = x0 * np.sqrt(ap) + np.sqrt(1 - ap - sigma**2) * eps_x0 + nonzero * sigma * z
        y_p = y * np.sqrt(ap) + np.sqrt(1 - ap - sigma**2) * eps_x0 + nonzero * sigma * z
    if i == 0:
        return x_p, y
    grid = np.zeros(x.shape[1:3], bool)
    grid[::k, ::k] = True
    grid = grid[None, :, :, None]
    if t > tau:  # tau and omega count the original timestep t (Eq. 9), whatever the respacing
        x_new = np.where(grid, y_p, x_p)
    else:
        gray = y[:, ::k, ::k] @ np.array([0.2989, 0.587, 0.114])
        g = np.pad(gray, ((0, 0), (1, 1), (1, 1)), mode="reflect")
        lap = np.abs(4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:])
        lo = lap.min(axis=(1, 2), keepdims=True)
        p = ((lap - lo) / (lap.max(axis=(1, 2), keepdims=True) - lo)) ** s
        m_a = np.zeros(x.shape[:3] + (1,), bool)
        m_a[:, ::k, ::k, 0] = u < p
        w = t / omega if weight else 1.0
        x_new = np.where(m_a, w * y_p + (1 - w) * x_p, x_p)
        if refine:
            y_p = x_new
    if not crt:
        return x_new, y
    y_new = np.where(grid, CRT_W * np.where(grid, y_p, 0) + (1 - CRT_W) * y_T + 1e-4 * t, 0)
    return x_new, y_new


@pytest.mark.parametrize("method,eta,respacing",
                         [("ddpm", 0.0, "50"), ("ddim", 0.0, "ddim20"), ("ddim", 0.7, "ddim20")])
@pytest.mark.parametrize("stage", ["I", "II", "last"])
def test_dpi_step_matches_numpy(method, eta, respacing, stage):
    sched = diffusion.make_schedule(1000, respacing=respacing)
    n = sched.num_steps
    i = {"I": n - 3, "II": n // 3, "last": 0}[stage]
    tau, s, omega, k = 500.0, 1.3, 1500.0, 2  # timestep units: stage I is t > 500
    rng = np.random.default_rng(i)
    x, y, z = rng.standard_normal((3, 2, 8, 8, 3))
    y = np.clip(y, -1, 1) * masks.fixed_mask(8, 8, k)
    y_T = np.clip(rng.standard_normal((2, 8, 8, 3)), -1, 1) * masks.fixed_mask(8, 8, k)
    u = rng.random((2, 4, 4))
    state = sampler.DPIState(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    settings = sampler.Settings(tau=tau, s=s, omega=omega, eta=eta, k=k, method=method)
    assert (sched.timestep_map[i] > tau) == (stage == "I")
    step = jax.jit(functools.partial(sampler.dpi_step, prior_fn=toy_prior, crt_fn=toy_crt))
    got = step(state, i, jnp.asarray(z, jnp.float32), jnp.asarray(u, jnp.float32), schedule=sched,
               y_T=jnp.asarray(y_T, jnp.float32), settings=settings)
    betas = diffusion.respaced_betas(diffusion.linear_betas(1000), diffusion.space_timesteps(1000, respacing))
    want = numpy_step(x, y, y_T, i, z, u, betas, np.asarray(sched.timestep_map), tau, s, omega, k, method, eta)
    # float32 against float64: the x̂0 formula multiplies by up to 1/sqrt(abar) (~20 here) before clipping.
    np.testing.assert_allclose(np.asarray(got.x), want[0], atol=2e-5, err_msg="x")
    np.testing.assert_allclose(np.asarray(got.y), want[1], atol=2e-5, err_msg="y")


# ------------------------------------------------------------------------------ the loop, with toy Flax modules
class ToyPrior(nn.Module):
    """A one-conv denoiser with learned-range output (eps, v)."""

    @nn.compact
    def __call__(self, x, t):
        h = nn.Conv(6, (3, 3))(x)
        return h + 1e-3 * t[:, None, None, None]


class ToyCRT(nn.Module):
    @nn.compact
    def __call__(self, x, t, y):
        return nn.Conv(3, (3, 3))(x) + y


class IdentityCRT(nn.Module):
    """A corrector that returns its input: DPI with it must equal DPI without a corrector (y = m_f y')."""

    @nn.compact
    def __call__(self, x, t, y):
        return x


@pytest.fixture(scope="module")
def toy_nets():
    x, t = jnp.zeros((1, 16, 16, 3)), jnp.zeros((1,))
    prior, crt = ToyPrior(), ToyCRT()
    return sampler.Networks(prior, prior.init(jax.random.key(0), x, t)["params"],
                            crt, crt.init(jax.random.key(1), x, t, x)["params"])


def test_sample_is_deterministic_and_snapshots_are_kept(toy_nets):
    sched = diffusion.make_schedule(1000, respacing="12")
    lr = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3), minval=-1, maxval=1)
    settings = sampler.Settings(tau=450, s=1.2, omega=800.0)
    run = functools.partial(sampler.sample, lr_bicubic=lr, nets=toy_nets, schedule=sched, settings=settings)
    x0, snaps = run(jax.random.key(0), snapshot_steps=(11, 4, 0))
    assert x0.shape == (2, 16, 16, 3) and x0.dtype == jnp.float32
    assert snaps["x"].shape == (3, 2, 16, 16, 3)
    np.testing.assert_array_equal(np.asarray(snaps["x"][2]), np.asarray(x0))  # the sample after step 0 is x0
    np.testing.assert_array_equal(np.asarray(run(jax.random.key(0))), np.asarray(x0))
    assert not np.allclose(np.asarray(run(jax.random.key(1))), np.asarray(x0))
    # The condition lives on the grid only.
    np.testing.assert_array_equal(np.asarray(snaps["y"] * (1 - masks.fixed_mask(16, 16, 2))), 0)


def test_changing_tau_s_omega_or_seed_does_not_recompile(toy_nets):
    sched = diffusion.make_schedule(1000, respacing="6")
    lr = jnp.zeros((1, 8, 8, 3))
    run = functools.partial(sampler.sample, lr_bicubic=lr, nets=toy_nets, schedule=sched)
    jax.block_until_ready(run(jax.random.key(0), settings=sampler.Settings(tau=300, s=1.2, omega=750.0)))
    before = sampler.compilation_count()
    outputs = [run(jax.random.key(seed), settings=sampler.Settings(tau=tau, s=s, omega=omega))
               for seed, tau, s, omega in [(1, 0, 1.0, 6), (2, 550.5, 2.0, 100.0), (3, 999, 0.5, 3)]]
    jax.block_until_ready(outputs)
    assert sampler.compilation_count() == before
    # ... while a static setting does recompile, and the count sees it.
    jax.block_until_ready(run(jax.random.key(0), settings=sampler.Settings(method="ddim")))
    assert sampler.compilation_count() > before


def test_without_crt_the_condition_stays_y_T(toy_nets):
    """Table 4 "w/o CRT": the condition is never updated, y = y_T after every step (both stages). It is not the old
    y = m_f y' (a corrector that returns its input), which fed a noisy y back in as if it were clean."""
    sched = diffusion.make_schedule(1000, respacing="10")
    lr = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3), minval=-1, maxval=1)
    settings = sampler.Settings(tau=400, s=1.0, omega=600.0)
    assert 0 < sampler.stage_one(sched, 400).sum() < sched.num_steps  # both stages are visited
    run = lambda nets: sampler.sample(jax.random.key(0), lr, nets, sched, settings, snapshot_steps=range(10))
    without, snaps = run(toy_nets.without_crt())
    y_T = np.asarray(masks.initial_condition(lr, 2))
    for j in range(10):
        np.testing.assert_array_equal(np.asarray(snaps["y"][j]), y_T, err_msg=f"y after step {j}")
    identity = sampler.Networks(toy_nets.prior, toy_nets.prior_params, IdentityCRT(), {})
    assert np.abs(np.asarray(without) - np.asarray(run(identity)[0])).max() > 1e-3
    assert np.abs(np.asarray(without) - np.asarray(run(toy_nets)[0])).max() > 1e-3


ABLATIONS = {"w/o CRT": dict(crt=False), "w/o Refine": dict(refine=False), "w/o Weight": dict(weight=False),
             "w/o k=2": dict(k=4)}


@pytest.mark.parametrize("stage", ["I", "II"])
@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_table4_switches_match_numpy_and_change_only_their_part(ablation, stage):
    """Each Table 4 switch, one step against the NumPy transcription, and against the full step: no CRT leaves y as it
    was (x unchanged); no refinement changes only stage II's y; no weight changes only stage II (x, and y through the
    refinement); k = 4 changes everything. (No stage II is tau = 0: test_tau_and_omega_count_the_original_timestep.)"""
    switches = ABLATIONS[ablation]
    sched = diffusion.make_schedule(1000, respacing="50")
    i = {"I": 45, "II": 10}[stage]
    tau, s, omega, k = 500.0, 1.3, 1500.0, switches.get("k", 2)
    rng = np.random.default_rng(7)
    x, y, z = rng.standard_normal((3, 2, 8, 8, 3))
    grid = masks.fixed_mask(8, 8, k)
    y, y_T = np.clip(y, -1, 1) * grid, np.clip(rng.standard_normal((2, 8, 8, 3)), -1, 1) * grid
    u = rng.random((2, 8 // k, 8 // k))
    betas = diffusion.respaced_betas(diffusion.linear_betas(1000), diffusion.space_timesteps(1000, "50"))
    f32 = lambda a: jnp.asarray(a, jnp.float32)

    def step(crt=True, **fields):
        settings = sampler.Settings(tau=tau, s=s, omega=omega, **fields)
        draws = u if settings.k == k else rng.random((2, 8 // settings.k, 8 // settings.k))
        got = jax.jit(functools.partial(sampler.dpi_step, prior_fn=toy_prior, crt_fn=toy_crt if crt else None))(
            sampler.DPIState(f32(x), f32(y)), i, f32(z), f32(draws), schedule=sched, y_T=f32(y_T), settings=settings)
        return np.asarray(got.x), np.asarray(got.y)

    got = step(**switches)
    want = numpy_step(x, y, y_T, i, z, u, betas, np.asarray(sched.timestep_map), tau, s, omega, k, "ddpm", 0.0,
                      **{n: v for n, v in switches.items() if n != "k"})
    np.testing.assert_allclose(got[0], want[0], atol=2e-5, err_msg="x")  # float32 against float64, as above
    np.testing.assert_allclose(got[1], want[1], atol=2e-5, err_msg="y")
    full = step()  # k = 2: for "w/o k=2" the same state (its grid is a subset of k = 2's) on the finer grid
    changed = {name: bool(np.abs(a - b).max() > 1e-4) for name, a, b in zip("xy", got, full, strict=True)}
    expected = {("w/o CRT", "I"): dict(x=False, y=True), ("w/o CRT", "II"): dict(x=False, y=True),
                ("w/o Refine", "I"): dict(x=False, y=False), ("w/o Refine", "II"): dict(x=False, y=True),
                ("w/o Weight", "I"): dict(x=False, y=False), ("w/o Weight", "II"): dict(x=True, y=True),
                ("w/o k=2", "I"): dict(x=True, y=True), ("w/o k=2", "II"): dict(x=True, y=True)}
    assert changed == expected[ablation, stage], changed
    if ablation == "w/o CRT":
        np.testing.assert_array_equal(got[1], np.asarray(f32(y)))


def test_switches_are_static_and_tau_s_omega_stay_traced(toy_nets):
    """A switch is part of the compiled program (one compilation each), and with a switch set, changing tau, s or
    omega still never recompiles."""
    sched = diffusion.make_schedule(1000, respacing="6")
    lr = jnp.zeros((1, 8, 8, 3))
    run = functools.partial(sampler.sample, jax.random.key(0), lr, toy_nets, sched)
    for switches in (dict(refine=False), dict(weight=False)):
        before = sampler.compilation_count()
        jax.block_until_ready(run(sampler.Settings(**switches)))
        assert sampler.compilation_count() == before + 1
        jax.block_until_ready([run(sampler.Settings(tau=tau, s=1.5, omega=90.0, **switches)) for tau in (0, 500)])
        assert sampler.compilation_count() == before + 1
    with pytest.raises(ValueError, match="refine = 1"):
        sampler.Settings(refine=1).validate(1000)


def test_ddim_eta0_is_deterministic_given_x_T(toy_nets):
    """DDIM with eta = 0 and tau = 0 (stage II only at t = 0, where the last step returns x') draws nothing after
    x_T: two keys with the same x_T give the same image, while DDPM's do not."""
    sched = diffusion.make_schedule(1000, respacing="ddim10")
    lr = jnp.full((1, 8, 8, 3), 0.3)
    x_T = jax.random.normal(jax.random.key(9), (1, 16, 16, 3))
    for method, same in (("ddim", True), ("ddpm", False)):
        settings = sampler.Settings(tau=0, s=1.0, omega=750.0, method=method)
        a, b = (np.asarray(sampler.sample(jax.random.key(n), lr, toy_nets, sched, settings, x_T=x_T)) for n in (0, 1))
        assert np.isfinite(a).all()
        assert np.array_equal(a, b) == same, method


def test_bad_lr_shape_is_refused(toy_nets):
    sched = diffusion.make_schedule(1000, respacing="4")
    with pytest.raises(ValueError, match="lr_bicubic"):
        sampler.sample(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), toy_nets, sched, x_T=jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize("field,value,message", [
    ("tau", -1.0, r"tau = -1.0: must be in \[0, 1000\)"), ("tau", 1000, "tau = 1000"), ("tau", float("nan"), "tau"),
    ("s", 0.0, "s = 0.0: must be > 0"), ("s", float("nan"), "s = nan"), ("omega", 0.0, "omega = 0.0"),
    ("omega", -5.0, "omega = -5.0"), ("eta", 1.5, "eta = 1.5"), ("k", 0, "k = 0"), ("method", "bogus", "method"),
    ("var_type", "bogus", "var_type"),
])
def test_settings_are_validated(toy_nets, field, value, message):
    sched = diffusion.make_schedule(1000, respacing="4")
    with pytest.raises(ValueError, match=message):
        sampler.sample(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), toy_nets, sched,
                       sampler.Settings(**{field: value}))


def test_tau_and_omega_count_the_original_timestep():
    """The x8 config (the paper's tau = 300 of T = 1000) puts the same share of the schedule in stage II (t <= tau)
    whatever the respacing: 301 of 1000 DDPM steps (t = 0..300), 75 of 250 (t = round(j * 999/249) <= 300 for
    j = 0..74), 7 of DDIM-20 (t = 0, 50, ..., 300)."""
    from configs import paper

    config = paper.get_config("x8")
    for respacing, stage_two in (("", 301), ("250", 75), ("ddim20", 7)):
        config.diffusion.respacing = respacing
        sched = diffusion.make_schedule(**config.diffusion)
        settings = sampler.Settings(**config.dpi)
        assert settings.tau == 300
        assert int((~sampler.stage_one(sched, settings.tau)).sum()) == stage_two, respacing
    # The DPI_20 preset: the authors' "i > 7 of 20 DDIM steps" is t > 350, stage I at t = 400, ..., 950 (12 steps).
    from configs import paper

    config = paper.get_config("x8_ddim20")
    sched = diffusion.make_schedule(**config.diffusion)
    assert np.array_equal(sampler.stage_one(sched, config.dpi.tau), np.arange(20) > 7)


def test_per_image_settings_equal_separate_runs(toy_nets):
    """tau, s, omega given per image give each image what a batch-of-one run with its own values gives."""
    sched = diffusion.make_schedule(1000, respacing="8")
    lr = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3), minval=-1, maxval=1)
    x_T = jax.random.normal(jax.random.key(4), (2, 16, 16, 3))
    noises = jax.random.normal(jax.random.key(5), (8, 2, 16, 16, 3))
    uniforms = jax.random.uniform(jax.random.key(6), (8, 2, 8, 8))
    per_image = [(700, 1.0, 1200.0), (250, 2.0, 500.0)]
    tau, s, omega = (jnp.asarray(v) for v in zip(*per_image, strict=True))
    both = sampler.sample_with_draws(x_T, lr, noises, uniforms, toy_nets, sched, sampler.Settings(tau, s, omega))
    for n, (tau_n, s_n, omega_n) in enumerate(per_image):
        alone = sampler.sample_with_draws(x_T[n:n + 1], lr[n:n + 1], noises[:, n:n + 1], uniforms[:, n:n + 1],
                                          toy_nets, sched, sampler.Settings(tau_n, s_n, omega_n))
        np.testing.assert_allclose(np.asarray(both[n]), np.asarray(alone[0]), atol=1e-5)
    assert not np.allclose(np.asarray(both[0]), np.asarray(both[1]))


def test_per_image_keys_give_each_image_its_batch_of_one_result(toy_nets):
    """sample_seeds with (S, B) keys: image b of seed j is what sample(keys[j, b], lr[b:b+1]) gives, whatever the
    batch it is in (within 1e-6: batch 1 and 3 may order XLA's sums differently), with per-image settings too."""
    sched = diffusion.make_schedule(1000, respacing="8")
    lr = jax.random.uniform(jax.random.key(3), (3, 8, 8, 3), minval=-1, maxval=1)
    keys = jax.random.split(jax.random.key(7), 6).reshape(2, 3)
    settings = sampler.Settings(tau=jnp.asarray([700.0, 250.0, 0.0]), s=1.2, omega=750.0)
    together = np.asarray(sampler.sample_seeds(keys, lr, toy_nets, sched, settings))
    assert together.shape == (2, 3, 16, 16, 3)
    for j in range(2):
        for b in range(3):
            alone = sampler.sample(keys[j, b], lr[b:b + 1], toy_nets, sched,
                                   sampler.Settings(tau=float(settings.tau[b]), s=1.2, omega=750.0))
            np.testing.assert_allclose(together[j, b], np.asarray(alone[0]), atol=1e-6)
    assert not np.allclose(together[0], together[1])


def test_step_reports_do_not_change_the_result(toy_nets):
    """report_every > 0 calls the watchers every N steps and at the last step, from inside the scan, once per
    seed chunk; the pixels are bitwise those of a run without reports, and a new watcher does not recompile."""
    sched = diffusion.make_schedule(1000, respacing="10")
    lr = jax.random.uniform(jax.random.key(3), (2, 8, 8, 3), minval=-1, maxval=1)
    keys = jax.random.split(jax.random.key(1), 4).reshape(2, 2)
    quiet = np.asarray(sampler.sample_seeds(keys, lr, toy_nets, sched, chunk_size=1))
    for attempt in range(2):
        seen = []
        with sampler.watch_steps(seen.append):
            loud = np.asarray(sampler.sample_seeds(keys, lr, toy_nets, sched, chunk_size=1, report_every=4))
            jax.effects_barrier()
        if attempt == 0:
            compiled = sampler.compilation_count()
        assert seen == [8, 4, 0] * 2, seen
        np.testing.assert_array_equal(loud, quiet)
    assert sampler.compilation_count() == compiled


class SizedToyPrior(ToyPrior):
    """The toy denoiser with an ``image_size``, as the ADM module has."""

    image_size: int = 16


def test_a_condition_of_the_wrong_size_is_refused(toy_nets):
    """The networks are convolutional and would run at any size: a prior with an image_size refuses another one."""
    nets = sampler.Networks(SizedToyPrior(), toy_nets.prior_params, toy_nets.crt, toy_nets.crt_params)
    sched = diffusion.make_schedule(1000, respacing="2")
    settings = sampler.Settings(tau=500.0, s=1.2, omega=1000.0)
    assert sampler.sample(jax.random.key(0), jnp.zeros((1, 8, 8, 3)), nets, sched, settings).shape == (1, 16, 16, 3)
    with pytest.raises(ValueError, match="the prior is 16x16: the condition lr_bicubic must be 8x8"):
        sampler.sample(jax.random.key(0), jnp.zeros((1, 16, 16, 3)), nets, sched, settings)
    with pytest.raises(ValueError, match="the prior is 16x16"):
        sampler.sample_seeds(jax.random.split(jax.random.key(0), 2), jnp.zeros((1, 4, 4, 3)), nets, sched, settings)
