"""A faster inference path for frozen 2D CNNs on the CPU (issue 13): batch norms folded into the convolutions and
the channels-last memory layout, which oneDNN runs 2-3x faster than NCHW for MobileNetV2's depthwise convolutions.

`FusedCache.get(module)` returns an eval-mode copy of `module` with every conv + batch norm pair of its
nn.Sequential blocks folded (torch.nn.utils.fusion.fuse_conv_bn_eval) and its weights in channels-last layout; feed
it channels-last input (`to_channels_last`). The copy is rebuilt whenever a parameter or buffer of `module` changes
(an optimizer step, a load_state_dict, `.to(device)`: their version counters or storage change), so it always
computes what `module` computes in eval mode, up to floating-point rounding (folding changes the order of the
multiply-adds: relative differences ~1e-6). The copy is kept outside the module tree, out of state_dict and of
`.parameters()`.
"""
from __future__ import annotations

import copy
import threading

import torch
import torch.nn as nn

FUSED = {"on": True}  # tests switch the fused path off to compare with the original modules (tests/reference_impl.py)
_BUILD_LOCK = threading.Lock()  # one copy built at a time (two detectors in one process share nothing else)


def enabled(x: torch.Tensor) -> bool:
    """Whether the fused path applies to input x: on the CPU, unless switched off (FUSED)."""
    return FUSED["on"] and x.device.type == "cpu"


def _state_key(module: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version, t.dtype, t.device)
                 for t in (*module.parameters(), *module.buffers()))


class ConvActivation(nn.Module):
    """A 2D convolution and the ReLU / ReLU6 after it in one oneDNN call (the activation applied to the output
    while it is in cache; the same values as the two modules one after the other)."""

    def __init__(self, conv: nn.Conv2d, attr: str, scalars: list[float]):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr, self.scalars = attr, scalars

    def forward(self, x):
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args, self.attr, self.scalars,
                                                       "")


def _pointwise_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _fuse_sequential(m: nn.Module, pointwise: bool) -> None:
    """In place, in every nn.Sequential of m (MobileNetV2 is made of them): Conv2d + BatchNorm2d -> one Conv2d
    (torch.nn.utils.fusion.fuse_conv_bn_eval), then Conv2d + ReLU / ReLU6 -> ConvActivation; the folded modules
    become nn.Identity. No torch.fx tracing: tracing patches nn.Module.__call__ for the whole process, which breaks
    every model that runs in another thread meanwhile (a detector's worker)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in m.children():
        _fuse_sequential(child, pointwise)
    if not isinstance(m, nn.Sequential) or type(m).forward is not nn.Sequential.forward:
        return  # only plain sequential data flow: a subclass's own forward may reuse a conv's output
    names = list(m._modules)
    for a, b in zip(names, names[1:]):
        conv, bn = m._modules[a], m._modules[b]
        if type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats:
            m._modules[a], m._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    if not pointwise:
        return
    for i, a in enumerate(names):
        conv = m._modules[a]
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        rest = [n for n in names[i + 1:] if type(m._modules[n]) is not nn.Identity]
        act = m._modules[rest[0]] if rest else None
        if type(act) is nn.ReLU6:
            attr, scalars = "hardtanh", [0.0, 6.0]
        elif type(act) is nn.ReLU:
            attr, scalars = "relu", []
        else:
            continue
        m._modules[a], m._modules[rest[0]] = ConvActivation(conv, attr, scalars), nn.Identity()


def fuse_for_inference(module: nn.Module) -> nn.Module:
    """An eval-mode copy of module with conv + batch norm folded, conv + ReLU / ReLU6 fused (where oneDNN is
    available), in channels-last layout (no gradients)."""
    m = copy.deepcopy(module).eval()
    with torch.no_grad():
        _fuse_sequential(m, _pointwise_available())
    m.requires_grad_(False)
    return m.to(memory_format=torch.channels_last)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def fast_path_ok(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether module may run through its fused copy on input x now: `enabled(x)`, eval mode, and no gradient would
    flow to its weights."""
    if not enabled(x) or module.training:
        return False
    return not (torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()))


class FusedCache:
    """Fused copies of sub-modules, keyed by name and rebuilt when the original's tensors change."""

    def __init__(self):
        self._copies: dict[str, tuple[tuple, nn.Module]] = {}

    def get(self, name: str, module: nn.Module) -> nn.Module:
        key = _state_key(module)
        hit = self._copies.get(name)
        if hit is None or hit[0] != key:
            with _BUILD_LOCK:
                hit = (key, fuse_for_inference(module))
            self._copies[name] = hit
        return hit[1]

    def __deepcopy__(self, memo):  # a copied network builds its own (its tensors are new)
        return FusedCache()

    def __getstate__(self):  # not pickled either
        return {}

    def __setstate__(self, state):
        self._copies = {}
