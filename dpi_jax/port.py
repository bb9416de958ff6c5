"""Port PyTorch guided-diffusion / DPI checkpoints (``ffhq_10m.pt``, the CRT) to dpi-jax checkpoints.

    python -m dpi_jax.port ffhq_10m.pt checkpoints/ffhq_10m --model ffhq_10m
    python -m dpi_jax.port crt.pt checkpoints/crt_x8 --model crt --scale 8
    python -m dpi_jax.port other.pt out_dir --model other_config.json --kind adm
    python -m dpi_jax.port alexnet-owt-7be5be79.pth checkpoints/metrics/lpips_alex --model lpips_alex
    python -m dpi_jax.port pt_inception-2015-12-05-6726825d.pth checkpoints/metrics/fid_inception --model fid_inception
    python -m dpi_jax.port vgg_face_weights.h5 checkpoints/metrics/vggface --model vggface
    python -m dpi_jax.port musiq_koniq_ckpt-e95806b9.pth checkpoints/metrics/musiq --model musiq
    python -m dpi_jax.port RN50.pt checkpoints/metrics/clipiqa --model clipiqa

The Flax tree mirrors the state_dict: module ``a_1_b_2`` holds the PyTorch keys ``a.1.b.2.*``; ``weight`` is a
``kernel`` (convolutions OIHW -> HWIO, linear and 1-D convolutions (O, I[, 1]) -> (I, O)) or a GroupNorm ``scale``.
Every key must be used and every parameter filled, with the right shape: otherwise nothing is written and the error
lists all missing keys, unexpected keys and shape mismatches. A CRT's ``--scale`` (the SR factor it was trained for)
goes into its model.json, where sampling checks it (:func:`dpi_jax.checkpoint.stored_scale`).
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

from dpi_jax import checkpoint
from dpi_jax.models import PRESETS, count_params
from dpi_jax.networks import (  # noqa: F401  (convert_state_dict too)
    NETWORKS,
    PortableNetwork,
    convert_state_dict,
    model_network,
)
from dpi_jax.torch_port import (  # noqa: F401  (PortError and the loaders are part of this module's API too)
    PortError,
    fill_params,
    load_torch_state_dict,
    misfit_error,
    strip_module_prefix,
    torch_key,
)

# What each option flag applies to, for refusing it elsewhere.
OPTION_OWNERS = {"heads": "lpips_alex and lpips_vgg", "scale": "a crt"}


def load_params(directory):
    """The parameters of a converted (or trained) checkpoint directory."""
    return checkpoint.load_model(directory)[2]


def read_config_file(path) -> dict:
    """A model config from a .json file (a dict) or a .py file (``get_config()`` or ``CONFIG``)."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".py":
        namespace = runpy.run_path(str(path))
        config = namespace["get_config"]() if "get_config" in namespace else namespace.get("CONFIG")
        if config is None:
            raise PortError(f"{path} defines neither get_config() nor CONFIG")
        return dict(config)
    raise PortError(f"{path}: a model config must be a .json or .py file")


def _define_flags(fv):
    from absl import flags

    flags.DEFINE_string("model", None, f"a network ({', '.join(NETWORKS)}) or a .json/.py file with a "
                                       "guided-diffusion config", flag_values=fv, required=True)
    flags.DEFINE_string("heads", None, "lpips_alex/lpips_vgg: the v0.1 linear heads (.pth; default: the ones the "
                                       "lpips package ships)", flag_values=fv)
    flags.DEFINE_enum("kind", None, ["adm", "crt"], "network kind for a config file (default adm)", flag_values=fv)
    flags.DEFINE_integer("scale", None, "a crt: the SR factor it was trained for (e.g. 8), stored in its model.json "
                                        "so that sampling at another scale is refused (default: not stored, unknown)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace an existing output directory", flag_values=fv)


def main(argv=None) -> int:
    """``python -m dpi_jax.port SRC DST --model ...`` (``argv``: the arguments after the program name); the exit
    status."""
    from dpi_jax import cli

    return cli.main_with_args(
        argv, _define_flags, lambda fv, src, dst: _convert(SimpleNamespace(src=src, dst=dst, **fv.flag_values_dict())),
        prog="python -m dpi_jax.port", description="\n\n".join(__doc__.split("\n\n")[:2]), positional=("SRC", "DST"))


def _network(args) -> PortableNetwork:
    """The table's entry of ``--model``; a preset with another ``--kind``, or a config file, as an entry of its own."""
    if args.model in PRESETS and args.kind is not None:
        config, _ = PRESETS[args.model]
        return model_network(args.model, config, args.kind)
    if args.model in NETWORKS:
        return NETWORKS[args.model]
    try:
        config = read_config_file(args.model)
    except (ValueError, OSError, KeyError) as err:
        raise PortError(f"--model {args.model}: {err}") from err
    return model_network(args.model, config, args.kind or "adm")


def _convert(args) -> int:
    """What main does once the arguments are parsed; errors propagate to ``cli.run_cli`` (exit status 2)."""
    network = _network(args)
    options = {name: getattr(args, name) for name in OPTION_OWNERS if getattr(args, name) is not None}
    refused = sorted(options.keys() - set(network.convert_options + network.save_options))
    if refused:
        raise PortError(f"--{refused[0]} applies to {OPTION_OWNERS[refused[0]]}, not to {network.description}")
    if Path(args.dst).exists() and not args.overwrite:
        raise FileExistsError(f"{args.dst} already exists (pass --overwrite to replace it)")
    try:
        params = network.convert(args.src, **{k: v for k, v in options.items() if k in network.convert_options})
    except PortError as err:  # every message names the file (the reader's own already do)
        if str(err).startswith(f"{args.src}:"):
            raise
        raise PortError(f"{args.src}: {err}") from err
    out = network.save(args.dst, params, overwrite=args.overwrite,
                       **{k: v for k, v in options.items() if k in network.save_options})
    print(f"converted {count_params(params):,} parameters of {network.description} from {args.src} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
