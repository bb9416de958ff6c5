"""The reference implementations of the metrics (lpips, pytorch-fid), built with random weights for side-by-side
checks and timings, and the import of torchvision on a CPU build of PyTorch. Needs the dev extras (torch,
torchvision, lpips, pytorch-fid); nothing here is used to compute a metric.

The torchvision wheel that pairs with torch 2.13.0 (0.28.0) is built against CUDA: its compiled operators (nms,
roi_align, ...) cannot load beside a CPU torch, and ``import torchvision`` then fails while registering their fake
(meta) kernels. The model classes the metrics use (AlexNet, VGG16, Inception-v3) are pure Python and never call those
operators, so the registrations are skipped by putting an empty module in their place before the first import.
"""

from __future__ import annotations

import sys
import types
from unittest import mock


def import_torchvision():
    """``torchvision``, importable on a CPU torch whatever the build of its compiled operators."""
    if "torchvision" not in sys.modules:
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision


def random_alexnet_state_dict(seed: int = 0) -> dict:
    """torchvision's AlexNet with its own random initialisation: the layout of ``alexnet-owt-7be5be79.pth``."""
    import torch

    torchvision = import_torchvision()
    torch.manual_seed(seed)
    return torchvision.models.alexnet().state_dict()


def lpips_reference(alexnet_state_dict: dict):
    """``lpips.LPIPS(net="alex")`` (v0.1, its bundled heads) with the trunk of ``alexnet_state_dict``."""
    import_torchvision()
    import lpips

    model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    # lpips keeps torchvision's layer indices: its "slice2.3.weight" is torchvision's "features.3.weight"
    model.net.load_state_dict({k: alexnet_state_dict["features." + k.split(".", 1)[1]] for k in model.net.state_dict()})
    return model


def random_fid_inception_state_dict(seed: int = 0) -> dict:
    """A random state_dict in the layout of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torchvision's
    Inception3 with 1008 classes has the same keys and shapes). He-normal convolutions keep activations O(1) through
    the depth; BatchNorm gets random running statistics and affine parameters, so that eval-mode BN is exercised."""
    import torch

    torchvision = import_torchvision()
    net = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, (2 / m.weight[0].numel()) ** 0.5, generator=g)
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
                m.running_mean.normal_(0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
            elif isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 2048 ** -0.5, generator=g)
                m.bias.normal_(0, 1.0, generator=g)
    return net.state_dict()


def pytorch_fid_reference(state_dict: dict):
    """``pytorch_fid.inception.InceptionV3([3])`` (pool3, resize to 299, inputs in [0, 1]) reading ``state_dict``
    instead of its download."""
    import_torchvision()
    from pytorch_fid import inception as pytorch_fid_inception

    with mock.patch.object(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state_dict):
        return pytorch_fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()
