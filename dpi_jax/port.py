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

from flax.traverse_util import flatten_dict

from dpi_jax import checkpoint
from dpi_jax.models import PRESETS, abstract_params, count_params, make_model
from dpi_jax.torch_port import (  # noqa: F401  (PortError and the loaders are part of this module's API too)
    PortError,
    fill_params,
    load_torch_state_dict,
    misfit_error,
    strip_module_prefix,
    torch_key,
)

# The metric networks (dpi_jax.metrics) the command also ports: --model NAME, from the file each is published as.
METRIC_MODELS = {"lpips_alex": "alexnet-owt-7be5be79.pth", "lpips_vgg": "vgg16-397923af.pth",
                 "fid_inception": "pt_inception-2015-12-05-6726825d.pth", "vggface": "vgg_face_weights.h5",
                 "musiq": "musiq_koniq_ckpt-e95806b9.pth", "clipiqa": "RN50.pt"}


def convert_state_dict(state_dict: dict, model_config: dict, kind: str = "adm") -> dict:
    """The Flax params (nested dict of float32 arrays) of ``make_model(kind, model_config)`` from a PyTorch
    state_dict (tensors or arrays). Raises :class:`PortError` listing all missing keys, unexpected keys and shape
    mismatches."""
    expected = flatten_dict(abstract_params(make_model(kind, model_config)))
    return fill_params({torch_key(path): (path, spec.shape) for path, spec in expected.items()},
                       strip_module_prefix(dict(state_dict)), f"{kind} model")


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

    flags.DEFINE_string("model", None, f"a preset ({', '.join(PRESETS)}), a metric network "
                                       f"({', '.join(METRIC_MODELS)}) or a .json/.py file with a guided-diffusion "
                                       "config", flag_values=fv, required=True)
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


def _port_metric_network(args) -> Path:
    """The metric networks' weight files (torchvision/lpips, pytorch-fid, DeepFace, pyiqa's MUSIQ, OpenAI's CLIP) to
    dpi-jax checkpoints."""
    if args.model.startswith("lpips_"):
        from dpi_jax.metrics import lpips
        net = args.model[len("lpips_"):]
        return lpips.save_lpips(args.dst, lpips.port_lpips(args.src, args.heads, net), net, overwrite=args.overwrite)
    if args.model == "fid_inception":
        from dpi_jax.metrics import inception
        return inception.port_inception(args.src, args.dst, overwrite=args.overwrite)
    if args.model == "musiq":
        from dpi_jax.metrics import musiq
        return musiq.port_musiq(args.src, args.dst, overwrite=args.overwrite)
    if args.model == "clipiqa":
        from dpi_jax.metrics import clipiqa
        return clipiqa.port_clipiqa(args.src, args.dst, overwrite=args.overwrite)
    from dpi_jax.metrics import identity
    return identity.save_vggface(args.dst, identity.convert_vggface_h5(args.src), overwrite=args.overwrite)


def _convert(args) -> int:
    """What main does once the arguments are parsed; errors propagate to ``cli.run_cli`` (exit status 2)."""
    if args.model in METRIC_MODELS:
        if args.scale is not None:
            raise PortError(f"--scale applies to a crt, not to the metric network {args.model}")
        if Path(args.dst).exists() and not args.overwrite:
            raise FileExistsError(f"{args.dst} already exists (pass --overwrite to replace it)")
        try:
            out = _port_metric_network(args)
        except PortError as err:
            raise PortError(f"{args.src}: {err}") from err
        print(f"converted {args.model} from {args.src} to {out}")
        return 0
    if args.model in PRESETS:
        config, kind = PRESETS[args.model]
        kind = args.kind or kind
    else:
        try:
            config, kind = read_config_file(args.model), args.kind or "adm"
        except (ValueError, OSError, KeyError) as err:
            raise PortError(f"--model {args.model}: {err}") from err
    if args.scale is not None and kind != "crt":
        raise PortError(f"--scale applies to a crt, not to {checkpoint.KIND_NAMES.get(kind, kind)} model")
    if Path(args.dst).exists() and not args.overwrite:
        raise FileExistsError(f"{args.dst} already exists (pass --overwrite to replace it)")
    state_dict = load_torch_state_dict(args.src)  # its errors name the file
    try:
        params = convert_state_dict(state_dict, config, kind)
    except PortError as err:
        raise PortError(f"{args.src}: {err}") from err
    extra = {} if args.scale is None else {"scale": args.scale}
    out = checkpoint.save_model(args.dst, params, config, kind=kind, overwrite=args.overwrite, extra=extra)
    print(f"converted {count_params(params):,} parameters of a {kind} model from {args.src} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
