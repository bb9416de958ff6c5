"""Speed of the network metrics against their reference implementations, side by side in one run, as one JSON line.

    python -m dpi_jax.metrics.bench --images 1000 --size 256      # LPIPS-Alex of 1000 pairs, FID of 1000 vs 1000
    python -m dpi_jax.metrics.bench --images 64 --batch_size 8 --metrics musiq,clipiqa   # from a checkout

Both sides get the same random weights (torchvision's AlexNet initialisation with the lpips package's heads; a
random FID Inception state_dict) and the same random uint8 images; the reference side is the ``lpips`` package and
pytorch-fid (``InceptionV3([3])`` in batches, then ``calculate_frechet_distance``), with torch's default threads.
Reported: seconds of each side (compilation excluded, reported apart), the ratio reference / ours (> 1: ours is
faster), and the relative difference of the values. Needs the dev extras (torch, torchvision, lpips, pytorch-fid).
MUSIQ and CLIP-IQA are timed against ``tests/iqa_reference.py`` (a torch transcription of pyiqa 0.1.16's
``musiq`` and ``clipiqa``, random weights), so run those from a checkout of the repository.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np

METRICS = ("lpips", "fid", "musiq", "clipiqa")  # what --metrics may name


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(num_images: int, size: int, batch_size: int, metrics=("lpips", "fid")) -> dict:
    import torch

    from dpi_jax.metrics import fid, inception, lpips, torch_reference

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (num_images, size, size, 3), dtype=np.uint8) for _ in range(2))
    nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
    batches = lambda x: (x[i:i + batch_size] for i in range(0, len(x), batch_size))
    result = {"device": jax.devices()[0].device_kind, "torch_threads": torch.get_num_threads(),
              "images": num_images, "size": size, "batch_size": batch_size}
    if "lpips" in metrics:
        state_dict = torch_reference.random_alexnet_state_dict()
        params = lpips.params_from_state_dicts({k: v.numpy() for k, v in state_dict.items()}, None, "alex")
        reference = torch_reference.lpips_reference(state_dict)
        _, compile_s = _timed(lambda: lpips.lpips_images(params, a[:batch_size], b[:batch_size], batch_size=batch_size,
                                                         progress=False))
        ours, ours_s = _timed(lambda: lpips.lpips_images(params, a, b, batch_size=batch_size, progress=False))

        def reference_lpips():
            with torch.no_grad():
                return np.concatenate([reference(nchw(x) / 127.5 - 1, nchw(y) / 127.5 - 1).flatten().numpy()
                                       for x, y in zip(batches(a), batches(b), strict=True)])

        ref, ref_s = _timed(reference_lpips)
        result.update(lpips_first_batch_s=round(compile_s, 2), lpips_ours_s=round(ours_s, 2),
                      lpips_reference_s=round(ref_s, 2), lpips_speedup=round(ref_s / ours_s, 3),
                      lpips_max_rel_diff=float(np.abs(ours - ref).max() / np.abs(ref).max()))
    if "fid" in metrics:
        from pytorch_fid.fid_score import calculate_frechet_distance

        state_dict = torch_reference.random_fid_inception_state_dict()
        params = inception.params_from_state_dict({k: v.numpy() for k, v in state_dict.items()})
        reference = torch_reference.pytorch_fid_reference(state_dict)
        _, compile_s = _timed(lambda: fid.image_activations(params, a[:batch_size], batch_size=batch_size))

        def ours_fid():
            stats = [fid.statistics(fid.image_activations(params, x, batch_size=batch_size)) for x in (a, b)]
            return fid.frechet_distance(*stats[0], *stats[1])

        def reference_fid():
            stats = []
            for x in (a, b):
                with torch.no_grad():
                    pool = np.concatenate([reference(nchw(y) / 255)[0].squeeze(-1).squeeze(-1).numpy()
                                           for y in batches(x)])
                stats.append((np.mean(pool, axis=0), np.cov(pool, rowvar=False)))
            return calculate_frechet_distance(*stats[0], *stats[1])

        ours, ours_s = _timed(ours_fid)
        ref, ref_s = _timed(reference_fid)
        result.update(fid_first_batch_s=round(compile_s, 2), fid_ours_s=round(ours_s, 2),
                      fid_reference_s=round(ref_s, 2), fid_speedup=round(ref_s / ours_s, 3),
                      fid_ours=float(ours), fid_reference=float(ref))
    for name in ("musiq", "clipiqa"):
        if name in metrics:
            result.update(_no_reference_metric(name, a, batch_size))
    return result


def _no_reference_metric(name: str, images: np.ndarray, batch_size: int) -> dict:
    """MUSIQ or CLIP-IQA of ``images``: ours against the torch transcription of pyiqa's (tests/iqa_reference.py)."""
    import torch

    from dpi_jax.metrics import clipiqa, musiq
    from tests import iqa_reference as ref

    nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float() / 255  # noqa: E731
    if name == "musiq":
        model = ref.random_musiq(0).eval()
        params = musiq.params_from_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
        ours_fn = lambda x: musiq.musiq_images(params, x, batch_size=batch_size, progress=False)  # noqa: E731
        reference_fn = lambda x: model(nchw(x)).numpy()[:, 0]  # noqa: E731
    else:
        model = ref.random_clip(0).eval()
        params = clipiqa.params_from_state_dict({k: v.numpy() for k, v in model.state_dict().items()})
        tokens = torch.from_numpy(clipiqa.token_array())
        ours_fn = lambda x: clipiqa.clipiqa_images(params, x, batch_size=batch_size, progress=False)  # noqa: E731
        reference_fn = lambda x: ref.clipiqa_reference(model, nchw(x), tokens).numpy()[:, 0]  # noqa: E731
    _, compile_s = _timed(lambda: ours_fn(images[:batch_size]))
    ours, ours_s = _timed(lambda: ours_fn(images))
    with torch.no_grad():
        ref_values, ref_s = _timed(lambda: np.concatenate([reference_fn(images[i:i + batch_size])
                                                           for i in range(0, len(images), batch_size)]))
    return {f"{name}_first_batch_s": round(compile_s, 2), f"{name}_ours_s": round(ours_s, 2),
            f"{name}_reference_s": round(ref_s, 2), f"{name}_speedup": round(ref_s / ours_s, 3),
            f"{name}_max_rel_diff": float(np.abs(ours - ref_values).max() / np.abs(ref_values).max())}


def _define_flags(fv):
    from absl import flags

    flags.DEFINE_integer("images", 1000, "random images on each side", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("size", 256, "their side, in pixels", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", 50, "images per batch", lower_bound=1, flag_values=fv)
    flags.DEFINE_list("metrics", "lpips,fid", f"{', '.join(METRICS)} (comma-separated)", flag_values=fv)
    flags.register_validator("metrics", lambda names: set(names) <= set(METRICS), flag_values=fv,
                             message=f"the metrics are {', '.join(METRICS)}")


def main(argv=None) -> int:
    """``python -m dpi_jax.metrics.bench [flags]`` (``argv``: the arguments after the program name); the exit
    status."""
    from dpi_jax import cli

    def program(fv):
        print(json.dumps(run(fv.images, fv.size, fv.batch_size, tuple(fv.metrics))))

    return cli.main_with_args(argv, _define_flags, program, prog="python -m dpi_jax.metrics.bench",
                              description=__doc__.split("\n\n")[0], positional=())


if __name__ == "__main__":
    raise SystemExit(main())
