"""The metrics on folders, as the reference tools' command lines do it (pytorch-fid, lpips, torch-fidelity, pyiqa):

    python -m dpi_jax.metrics fid DIR_A DIR_B          # either may be a pytorch-fid .npz statistics file
    python -m dpi_jax.metrics stats DIR OUT.npz        # a folder's FID statistics, readable by pytorch-fid
    python -m dpi_jax.metrics lpips DIR_A DIR_B        # pairs of images with the same name
    python -m dpi_jax.metrics is DIR                   # Inception Score, 10 splits
    python -m dpi_jax.metrics id SR_DIR GT_DIR         # DeepFace VGG-Face ACC / CS of pairs with the same name
    python -m dpi_jax.metrics musiq DIR                # MUSIQ (pyiqa's musiq, KonIQ) of every image
    python -m dpi_jax.metrics clipiqa DIR              # CLIP-IQA (pyiqa's clipiqa) of every image

The networks come from checkpoints ported once with ``python -m dpi_jax.port`` (``--weights`` chooses another);
nothing is downloaded. One result line is printed (and ``--json`` adds the full result as JSON).
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

from dpi_jax import cli
from dpi_jax.networks import NETWORKS

# The network each command reads (dpi_jax.networks): its default folder is the command's --weights default.
NETWORK = {"fid": "fid_inception", "stats": "fid_inception", "is": "fid_inception", "lpips": "lpips_alex",
           "id": "vggface", "musiq": "musiq", "clipiqa": "clipiqa"}


# Each command: its positional arguments (the names _run reads) and what it computes.
COMMANDS = {"fid": (("path_a", "path_b"), "FID between two folders or .npz files"),
            "stats": (("folder", "output"), "FID statistics of a folder, as .npz"),
            "lpips": (("dir_a", "dir_b"), "LPIPS between same-named images"),
            "is": (("folder",), "Inception Score of a folder"),
            "id": (("sr_dir", "gt_dir"), "face-identity ACC/CS of same-named images"),
            "musiq": (("folder",), "MUSIQ (KonIQ) of every image of a folder"),
            "clipiqa": (("folder",), "CLIP-IQA of every image of a folder")}


def _define_flags(fv, command: str):
    """The flags of ``command`` on ``fv``."""
    from absl import flags

    default = NETWORKS[NETWORK[command]].default_dir
    flags.DEFINE_string("weights", default, f"ported checkpoint (default {default})", flag_values=fv)
    flags.DEFINE_integer("batch_size", 8 if command == "musiq" else 50, "images per batch", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_bool("json", False, "also print the whole result as JSON", flag_values=fv)
    if command == "is":
        flags.DEFINE_integer("splits", 10, "the number of splits", lower_bound=1, flag_values=fv)
    if command == "id":
        flags.DEFINE_enum("descriptor", "fc8", ["fc8", "fc7"],
                          "fc8: 2622-d, threshold 0.40 (the DeepFace of the paper); fc7: 4096-d, 0.68", flag_values=fv)


def _run(args) -> int:
    if args.command in ("fid", "stats", "is"):
        from dpi_jax.metrics import fid, inception
        params = inception.load(args.weights)
        if args.command == "fid":
            value = fid.fid_folders(params, args.path_a, args.path_b, batch_size=args.batch_size)
            result, line = {"fid": value}, f"FID: {value}"
        elif args.command == "stats":
            mu, sigma = fid.folder_statistics(params, args.folder, batch_size=args.batch_size)
            fid.save_stats(args.output, mu, sigma)
            result, line = {"stats": str(args.output), "dims": int(mu.shape[0])}, f"wrote {args.output}"
        else:
            mean, std = fid.is_folder(params, args.folder, args.splits, batch_size=args.batch_size)
            result, line = {"is": mean, "is_std": std}, f"IS: {mean} ± {std}"
    elif args.command == "lpips":
        from dpi_jax.metrics import lpips
        params = lpips.load(args.weights)
        net = lpips.net_of(params)
        result = lpips.lpips_folders(params, args.dir_a, args.dir_b, net, batch_size=args.batch_size)
        line = f"LPIPS-{net}: {result['mean']} over {len(result['per_image'])} pairs"
    elif args.command in ("musiq", "clipiqa"):
        from dpi_jax.metrics import clipiqa, musiq
        if args.command == "musiq":
            result = musiq.musiq_folder(musiq.load(args.weights), args.folder, batch_size=args.batch_size)
        else:
            result = clipiqa.clipiqa_folder(clipiqa.load(args.weights), args.folder,
                                            batch_size=args.batch_size)
        name = {"musiq": "MUSIQ", "clipiqa": "CLIP-IQA"}[args.command]
        line = f"{name}: {result['mean']} over {len(result['per_image'])} images"
    else:
        from dpi_jax.metrics import identity
        params = identity.load(args.weights)
        threshold = identity.THRESHOLD_FC8 if args.descriptor == "fc8" else identity.THRESHOLD
        result = identity.identity_folders(params, args.sr_dir, args.gt_dir, threshold, batch_size=args.batch_size,
                                           descriptor=args.descriptor)
        result.pop("distances", None)
        line = f"ID ACC: {result['acc']} CS: {result['cs']} (VGG-Face {args.descriptor}, threshold {threshold:g})"
    print(line)
    if args.json:
        print(json.dumps(result, default=float))
    return 0


def main(argv=None) -> int:
    """``python -m dpi_jax.metrics COMMAND PATHS... [flags]`` (``argv``: the arguments after the program name); the
    exit status. The command is the first argument that is not a flag; the rest is parsed with its flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command is None and cli.HELP_FLAGS & set(argv):
        print(f"usage: python -m dpi_jax.metrics COMMAND PATHS... [flags]\n\n{__doc__.strip()}\n\n"
              "python -m dpi_jax.metrics COMMAND --help: the flags of COMMAND")
        return 0
    if command not in COMMANDS:
        problem = "no command" if command is None else f"unknown command {command!r}"
        print(f"error: python -m dpi_jax.metrics: {problem}; the commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    paths, description = COMMANDS[command]
    rest = list(argv)
    rest.remove(command)

    def program(fv, *values):
        return _run(SimpleNamespace(command=command, **dict(zip(paths, values, strict=True)), **fv.flag_values_dict()))

    return cli.main_with_args(rest, lambda fv: _define_flags(fv, command), program,
                              prog=f"python -m dpi_jax.metrics {command}", description=description,
                              positional=[path.upper() for path in paths])


if __name__ == "__main__":
    sys.exit(main())
