"""oneDNN for every 3D convolution on the CPU (mask setting ``convolution = "onednn"``).

PyTorch's CPU convolution chooses between oneDNN and its own native kernel by a
heuristic that looks at the batch, the channels and two of the three spatial sizes,
not the depth. At mini-batch 1, the batch of a mask step, it picks the native kernel
for four of conv5_fc3's five 3D convolutions. That kernel is slower: measured on the
2-core development machine in round 19, a mask step ran 1.19x faster at 1.5 mm and
1.33x faster at 3 mm through oneDNN, a single-image forward pass 1.9x and 2.6x faster.

The two kernels add in different orders, so their results differ at the level of
float rounding (round 19, a trained CNN at 1.5 mm: logits by up to 1e-6, the input
gradient by up to 2.5e-3, absolute). A mask optimised through one differs from a mask optimised
through the other by what that rounding steers. The default (``"auto"``) leaves the
choice to PyTorch.

:func:`onednn_convolutions` is a context in which every ``torch.conv3d`` of a float32,
batched CPU tensor outside autocast calls ``aten.mkldnn_convolution`` directly. Every
other call (CUDA, bfloat16 or autocast, ``padding = "same"``, unbatched input) goes
through PyTorch unchanged, and so does everything where oneDNN is not built in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

#: The values of the mask setting ``convolution``.
CONVOLUTIONS = ("auto", "onednn")

_Triple = int | Sequence[int]


def _triple(value: _Triple) -> list[int]:
    return [int(value)] * 3 if isinstance(value, int) else [int(v) for v in value]


def _onednn(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: _Triple = 1,
    padding: _Triple | str = 0,
    dilation: _Triple = 1,
    groups: int = 1,
) -> torch.Tensor | None:
    """``torch.conv3d`` through oneDNN, or None where this module leaves it to PyTorch."""
    if (
        isinstance(padding, str)
        or input.dim() != 5
        or input.device.type != "cpu"
        or input.dtype != torch.float32
        or weight.dtype != torch.float32
        or torch.is_autocast_enabled("cpu")
    ):
        return None
    return torch.ops.aten.mkldnn_convolution(
        input, weight, bias, _triple(padding), _triple(stride), _triple(dilation), groups
    )


class _OneDNNConvolutions(TorchFunctionMode):
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is torch.conv3d:
            out = _onednn(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


def onednn_convolutions(enabled: bool = True) -> contextlib.AbstractContextManager[object]:
    """A context in which 3D convolutions on the CPU run through oneDNN (see the module);
    a context that changes nothing when ``enabled`` is false or oneDNN is not built in."""
    if not (enabled and torch.backends.mkldnn.is_available()):
        return contextlib.nullcontext()
    return _OneDNNConvolutions()
