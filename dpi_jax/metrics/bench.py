"""Speed of the network metrics against their reference implementations, side by side in one run, as one JSON line.

    python -m dpi_jax.metrics.bench --images 1000 --size 256      # LPIPS-Alex of 1000 pairs, FID of 1000 vs 1000

Both sides get the same random weights (torchvision's AlexNet initialisation with the lpips package's heads; a
random FID Inception state_dict) and the same random uint8 images; the reference side is the ``lpips`` package and
pytorch-fid (``InceptionV3([3])`` in batches, then ``calculate_frechet_distance``), with torch's default threads.
Reported: seconds of each side (compilation excluded, reported apart), the ratio reference / ours (> 1: ours is
faster), and the relative difference of the values. Needs the dev extras (torch, torchvision, lpips, pytorch-fid).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np


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
        params = lpips.convert_lpips({k: v.numpy() for k, v in state_dict.items()}, None, "alex")
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
        params = inception.convert_inception({k: v.numpy() for k, v in state_dict.items()})
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
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpi_jax.metrics.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--metrics", default="lpips,fid", help="lpips, fid or both")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.images, args.size, args.batch_size, tuple(args.metrics.split(",")))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
