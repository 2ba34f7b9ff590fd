"""oneDNN for every 3D convolution on the CPU (mask setting ``convolution``).

PyTorch's CPU convolution chooses between oneDNN and its own native kernel by a
heuristic that looks at the batch, the channels and two of the three spatial sizes,
not the depth. At mini-batch 1, the batch of a mask step, it picks the native kernel
for four of conv5_fc3's five 3D convolutions. That kernel is slower: measured on the
2-core development machine in round 19, a mask step ran 1.19x faster at 1.5 mm and
1.33x faster at 3 mm through oneDNN, a single-image forward pass 1.9x and 2.6x faster.

The backward pass to the input makes the same choice again, in
``convolution_backward``, and again picks the native kernel. Under
``convolution = "onednn-backward"`` the input gradient of a stride-1 convolution whose
weights are frozen is computed as what it is, a convolution of the output's gradient
with the kernels flipped in space and their two channel axes swapped, through oneDNN's
forward kernel (round 26, 2-core development machine, conv5_fc3 at 3 mm: 27.5 ms of
input gradients per mask step became 7.4 ms). Strided, dilated or grouped convolutions,
and any whose weights need a gradient, keep PyTorch's backward.

The kernels add in different orders, so their results differ at the level of float
rounding (round 19, a trained CNN at 1.5 mm: logits by up to 1e-6, the input gradient by
up to 2.5e-3, absolute). A mask optimised through one differs from a mask optimised
through the other by what that rounding steers. ``"auto"`` leaves the choice to PyTorch.

Both oneDNN settings also run the forward pass of 3D max pooling on a channels-last copy
of its input: PyTorch's channels-last kernel is several times faster there and returns
the same values and the same indices, bit for bit, ties included; the backward pass is
PyTorch's own from those indices, so the gradient is the same bit for bit too (round 26,
one thread, conv5_fc3's first pooling at 1.5 mm, forward and backward: 76.5 → 48.6 ms;
channels-last's own backward kernel would have made it slower than PyTorch's).

:func:`onednn_convolutions` is the context in which this happens, for float32, batched
CPU tensors outside autocast. Every other call (CUDA, bfloat16 or autocast, ``padding =
"same"``, unbatched input) goes through PyTorch unchanged, and so does everything where
oneDNN is not built in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

#: The values of the mask setting ``convolution``.
CONVOLUTIONS = ("auto", "onednn", "onednn-backward")

_Triple = int | Sequence[int]


def _triple(value: _Triple) -> list[int]:
    return [int(value)] * 3 if isinstance(value, int) else [int(v) for v in value]


def _cpu_float32(*tensors: torch.Tensor) -> bool:
    return not torch.is_autocast_enabled("cpu") and all(
        t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors
    )


def _onednn(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: _Triple = 1,
    padding: _Triple | str = 0,
    dilation: _Triple = 1,
    groups: int = 1,
    *,
    backward: bool = False,
) -> torch.Tensor | None:
    """``torch.conv3d`` through oneDNN (with ``backward``, through
    :class:`_FlippedKernelConvolution` where it applies), or None where this module
    leaves it to PyTorch."""
    if isinstance(padding, str) or input.dim() != 5 or not _cpu_float32(input, weight):
        return None
    pad, strides, dilations = _triple(padding), _triple(stride), _triple(dilation)
    if backward and _flippable(input, weight, bias, pad, [*strides, *dilations, groups]):
        out: torch.Tensor = _FlippedKernelConvolution.apply(input, weight, bias, pad)
        return out
    return torch.ops.aten.mkldnn_convolution(input, weight, bias, pad, strides, dilations, groups)


def _flippable(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: list[int],
    strides_dilations_groups: list[int],
) -> bool:
    """Whether the input gradient is wanted and :class:`_FlippedKernelConvolution` can
    give it: frozen weights and bias, stride and dilation 1, one group, a padding of 0 to
    k - 1 on every axis."""
    return (
        torch.is_grad_enabled()
        and input.requires_grad
        and not weight.requires_grad
        and not (bias is not None and bias.requires_grad)
        and all(v == 1 for v in strides_dilations_groups)
        and all(0 <= p <= k - 1 for k, p in zip(weight.shape[2:], padding, strict=True))
    )


class _FlippedKernelConvolution(torch.autograd.Function):
    """A stride-1 3D convolution through oneDNN whose input gradient is also a oneDNN
    forward convolution: of the output's gradient, with the kernels flipped in space,
    their channel axes swapped, and the padding that restores the input's size."""

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        padding: list[int],
    ) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.padding = padding
        return torch.ops.aten.mkldnn_convolution(input, weight, bias, padding, [1] * 3, [1] * 3, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        flipped = weight.flip(2, 3, 4).transpose(0, 1).contiguous()
        back = [k - 1 - p for k, p in zip(weight.shape[2:], ctx.padding, strict=True)]
        grad_in = torch.ops.aten.mkldnn_convolution(
            grad_out.contiguous(), flipped, None, back, [1] * 3, [1] * 3, 1
        )
        return grad_in, None, None, None


class _ChannelsLastMaxPool(torch.autograd.Function):
    """3D max pooling whose forward pass runs on a channels-last copy of the input (the
    same values and indices) and whose backward pass is PyTorch's own, from those
    indices: channels-last's backward kernel is the slower one (round 26)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, *pool: list[int] | bool) -> torch.Tensor:
        out, indices = torch.ops.aten.max_pool3d_with_indices(
            input.contiguous(memory_format=torch.channels_last_3d), *pool
        )
        ctx.save_for_backward(input, indices.contiguous())
        ctx.pool = pool
        return out.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, indices = ctx.saved_tensors
        grad_in = torch.ops.aten.max_pool3d_with_indices_backward(
            grad_out.contiguous(), input, *ctx.pool, indices
        )
        return (grad_in, *([None] * len(ctx.pool)))


def _channels_last_max_pool(
    input: torch.Tensor,
    kernel_size: _Triple,
    stride: _Triple | None = None,
    padding: _Triple = 0,
    dilation: _Triple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> torch.Tensor | None:
    """``F.max_pool3d`` through :class:`_ChannelsLastMaxPool` (the same values and
    gradient), or None where this module leaves it to PyTorch."""
    if return_indices or input.dim() != 5 or not _cpu_float32(input):
        return None
    if input.is_contiguous(memory_format=torch.channels_last_3d):
        return None  # already channels-last (or a single voxel per channel)
    kernel = _triple(kernel_size)
    strides = kernel if stride is None else _triple(stride)
    pool = (kernel, strides, _triple(padding), _triple(dilation), bool(ceil_mode))
    out: torch.Tensor = _ChannelsLastMaxPool.apply(input, *pool)
    return out


class _OneDNNConvolutions(TorchFunctionMode):
    def __init__(self, backward: bool) -> None:
        super().__init__()
        self.backward = backward

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = None
        if func is torch.conv3d:
            out = _onednn(*args, **kwargs, backward=self.backward)
        elif func is F.max_pool3d:
            out = _channels_last_max_pool(*args, **kwargs)
        return func(*args, **kwargs) if out is None else out


def kernels_of(convolution: str) -> contextlib.AbstractContextManager[object]:
    """The context that the mask setting ``convolution`` (one of :data:`CONVOLUTIONS`)
    runs the frozen CNN's passes in."""
    return onednn_convolutions(convolution != "auto", backward=convolution == "onednn-backward")


def onednn_convolutions(
    enabled: bool = True, *, backward: bool = False
) -> contextlib.AbstractContextManager[object]:
    """A context in which 3D convolutions (and, with ``backward``, their input gradients)
    and 3D max pooling on the CPU run through the faster kernels of the module; a context
    that changes nothing when ``enabled`` is false or oneDNN is not built in."""
    if not (enabled and torch.backends.mkldnn.is_available()):
        return contextlib.nullcontext()
    return _OneDNNConvolutions(backward)
