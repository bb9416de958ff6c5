"""Sharded sampling on 4 forced CPU devices gives the images of one device, for the same keys."""

import textwrap

import pytest

from tests.reference import run_python

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from dpi_jax import diffusion, sampler, sharding
    from tests.test_sampler import ToyPrior, ToyCRT

    assert jax.device_count() == 4, jax.devices()
    x, t = jnp.zeros((1, 16, 16, 3)), jnp.zeros((1,))
    prior, crt = ToyPrior(), ToyCRT()
    nets = sampler.Networks(prior, prior.init(jax.random.key(0), x, t)["params"],
                            crt, crt.init(jax.random.key(1), x, t, x)["params"])
    lr = jax.random.uniform(jax.random.key(3), (8, 8, 8, 3), minval=-1, maxval=1)
    kw = dict(schedule=diffusion.make_schedule(1000, respacing="10"),
              settings=sampler.Settings(tau=500, s=1.2, omega=1200.0))

    one = sampler.sample(jax.random.key(7), jax.device_put(lr, jax.devices()[0]),
                         jax.device_put(nets, jax.devices()[0]), **kw)
    mesh = sharding.data_mesh()
    lr_sharded = sharding.shard_batch(lr, mesh)
    many = sampler.sample(jax.random.key(7), lr_sharded, sharding.replicate(nets, mesh), **kw)
    assert len(many.sharding.device_set) == 4, many.sharding
    np.testing.assert_allclose(np.asarray(many), np.asarray(one), atol=1e-5)

    keys = jax.random.split(jax.random.key(9), 4)
    seeds_one = sampler.sample_seeds(keys, lr[:2], nets, **kw)
    seeds_many = sampler.sample_seeds(sharding.shard_batch(keys, mesh), lr[:2], sharding.replicate(nets, mesh), **kw)
    np.testing.assert_allclose(np.asarray(seeds_many), np.asarray(seeds_one), atol=1e-5)
    print("max diff", np.abs(np.asarray(many) - np.asarray(one)).max(),
          np.abs(np.asarray(seeds_many) - np.asarray(seeds_one)).max())
""")


@pytest.mark.slow
def test_four_devices_match_one():
    proc = run_python(["-c", SCRIPT],
                      env=dict(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"))
    print(proc.stdout)
