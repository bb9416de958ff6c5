"""Research extension: learn DPI's omega per image by differentiating through the whole sampler.

omega sets how strongly the condition pulls the sample in stage II (w = t / omega, Eq. 9). Here each image gets its
own omega, tuned by gradient descent (optax Adam on log omega) to minimise the LR consistency error
||down(x0) - LR||² of the SR result, with the sampler's random draws held fixed (a common-random-numbers estimate).
Memory stays bounded: the sampler's scan body is rematerialised under ``jax.grad``.

    python examples/learn_omega.py --prior=checkpoints/ffhq_10m --crt=checkpoints/crt_x8 --input_dir=faces/ \
        --scale=8 --steps=100 --iterations=20

Prints the loss and the omegas at every iteration.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from dpi_jax import checkpoint, diffusion, images, sampler

flags.DEFINE_string("prior", None, "Converted prior checkpoint directory.", required=True)
flags.DEFINE_string("crt", "", "CRT checkpoint directory ('' for none).")
flags.DEFINE_string("input_dir", None, "Folder of HR faces.", required=True)
flags.DEFINE_integer("scale", 8, "SR scale.")
flags.DEFINE_integer("steps", 100, "Sampler steps (respacing of 1000).")
flags.DEFINE_integer("iterations", 20, "Gradient steps on omega.")
flags.DEFINE_float("learning_rate", 0.1, "Adam learning rate on log omega.")
flags.DEFINE_integer("max_images", 4, "Images used from input_dir.")
FLAGS = flags.FLAGS


def downsample(x, scale):
    """Area-average down by ``scale``: a differentiable stand-in for the bicubic degradation."""
    b, h, w, c = x.shape
    return x.reshape(b, h // scale, scale, w // scale, scale, c).mean(axis=(2, 4))


def learn_omega(nets, cond, lr_target, schedule, *, scale: int, iterations: int, learning_rate: float,
                key=None, omega0: float = 750.0):
    """Adam on log omega (one per image, starting at ``omega0``) to minimise the LR consistency error; returns the
    history ``[(omega (B,), per-image LR MSE (B,)), ...]``, one entry per iteration (the MSE at that omega)."""
    key = jax.random.key(0) if key is None else key

    def loss_fn(log_omega):  # the paper's x8 setting; tau and omega count the timestep t under any respacing
        settings = sampler.Settings(tau=300.0, s=1.2, omega=jnp.exp(log_omega))
        x0 = sampler.sample(key, cond, nets, schedule, settings)
        per_image = jnp.mean((downsample(x0, scale) - lr_target) ** 2, axis=(1, 2, 3))
        return per_image.sum(), per_image

    log_omega = jnp.full((cond.shape[0],), jnp.log(omega0))
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(log_omega)
    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    history = []
    for _ in range(iterations):
        (_, per_image), grad = step(log_omega)
        history.append((np.exp(np.asarray(log_omega)), np.asarray(per_image)))
        updates, opt_state = optimizer.update(grad, opt_state)
        log_omega = optax.apply_updates(log_omega, updates)
    return history


def main(argv):
    del argv
    prior, prior_params = checkpoint.load_module(FLAGS.prior)
    crt, crt_params = checkpoint.load_module(FLAGS.crt) if FLAGS.crt else (None, None)
    size = prior.image_size
    paths = images.list_images(FLAGS.input_dir)[: FLAGS.max_images]
    hr = [images.fit_square(images.read_rgb(p), size) for p in paths]
    lr = [images.lr_from_hr(h, FLAGS.scale) for h in hr]
    cond = jnp.asarray(np.stack([images.to_model(images.condition_from_lr(x, size)) for x in lr]))
    lr_target = jnp.asarray(np.stack([images.to_model(x) for x in lr]))
    schedule = diffusion.make_schedule(1000, respacing=str(FLAGS.steps))
    nets = sampler.Networks(prior, prior_params, crt, crt_params)
    history = learn_omega(nets, cond, lr_target, schedule, scale=FLAGS.scale, iterations=FLAGS.iterations,
                          learning_rate=FLAGS.learning_rate)
    for it, (omega, per_image) in enumerate(history):
        print(f"iter {it:3d}  LR MSE {np.round(per_image, 5)}  omega {np.round(omega, 2)}")


if __name__ == "__main__":
    app.run(main)
