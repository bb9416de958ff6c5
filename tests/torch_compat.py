"""Import torchvision on this project's CPU build of PyTorch.

The torchvision wheel that pairs with torch 2.13.0 (0.28.0) is built against CUDA: its compiled operators (nms,
roi_align, ...) cannot load beside a CPU torch, and ``import torchvision`` then fails while registering their fake
(meta) kernels. The model classes that the metric tests need (AlexNet, VGG16, Inception-v3 as used by ``lpips``,
``pytorch-fid`` and ``torch-fidelity``) are pure Python and do not use those operators, so the registrations are
skipped by putting an empty module in their place before the first import.
"""

import sys
import types


def import_torchvision():
    """``torchvision``, importable on a CPU torch whatever the build of its compiled operators."""
    if "torchvision" not in sys.modules:
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision
