"""jax.grad through the whole sampler matches central finite differences (float64, tiny models, few steps)."""

import textwrap

import pytest

from tests.reference import run_python

SCRIPT = textwrap.dedent("""
    import flax.linen as nn
    import jax, jax.numpy as jnp, numpy as np
    from dpi_jax import diffusion, sampler
    assert jax.config.jax_enable_x64

    class Prior(nn.Module):
        @nn.compact
        def __call__(self, x, t):
            h = nn.Conv(8, (3, 3), dtype=jnp.float64, param_dtype=jnp.float64)(x)
            return nn.Conv(6, (3, 3), dtype=jnp.float64, param_dtype=jnp.float64)(jnp.tanh(h))

    class Corrector(nn.Module):
        @nn.compact
        def __call__(self, x, t, y):
            return nn.Conv(3, (3, 3), dtype=jnp.float64, param_dtype=jnp.float64)(x) + y

    x, t = jnp.zeros((1, 8, 8, 3)), jnp.zeros((1,))
    prior, crt = Prior(), Corrector()
    p0 = jax.tree.map(lambda a: 0.3 * a, prior.init(jax.random.key(0), x, t)["params"])
    c0 = jax.tree.map(lambda a: 0.3 * a, crt.init(jax.random.key(1), x, t, x)["params"])
    lr0 = jax.random.uniform(jax.random.key(2), (2, 4, 4, 3), jnp.float64, -0.8, 0.8)
    weights = jax.random.normal(jax.random.key(3), (2, 8, 8, 3), jnp.float64)
    sched = diffusion.make_schedule(1000, respacing="6")

    def loss(lr, prior_params, crt_params, omega):
        nets = sampler.Networks(prior, prior_params, crt, crt_params)
        x0 = sampler.sample(jax.random.key(4), lr, nets, sched, sampler.Settings(tau=500, s=1.2, omega=omega))
        return jnp.sum(weights * x0)

    args = (lr0, p0, c0, jnp.float64(1300.0))  # omega in timestep units
    grads = jax.grad(loss, argnums=(0, 1, 2, 3))(*args)
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, name in enumerate(["lr", "prior", "crt", "omega"]):
        direction = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(np.shape(a))), args[n])
        h = 1e-6 * (float(args[3]) if name == "omega" else 1.0)  # a step relative to omega's size (t units)
        shifted = lambda sign: [jax.tree.map(lambda a, d: a + sign * h * d, args[m], direction) if m == n else args[m]
                                for m in range(4)]
        fd = (loss(*shifted(1)) - loss(*shifted(-1))) / (2 * h)
        ad = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads[n]), jax.tree.leaves(direction)))
        rel = abs(float(fd - ad)) / max(abs(float(ad)), 1e-12)
        worst = max(worst, rel)
        print(f"{name}: autodiff {float(ad):.10g} finite-diff {float(fd):.10g} rel {rel:.2e}")
        assert abs(float(ad)) > 1e-8, name  # the gradient is not trivially zero
    # Central differences with h = 1e-6 in float64 are accurate to ~1e-8 relative here; 1e-6 leaves room.
    assert worst < 1e-6, worst
""")


@pytest.mark.slow
def test_grad_matches_finite_differences():
    proc = run_python(["-c", SCRIPT], env=dict(JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu"))
    print(proc.stdout)
