"""The oneDNN context for 3D convolutions on the CPU (mask setting ``convolution``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig
from neuromask.explain.objective import score_and_gradient
from neuromask.models import cpu_convolution
from neuromask.models.cpu_convolution import onednn_convolutions
from neuromask.models.registry import build_model

needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN"
)


def kernel_of(x: torch.Tensor, weight: torch.Tensor, **kwargs) -> str:
    """The autograd node of one convolution: which kernel ran it."""
    out = torch.conv3d(x.requires_grad_(), weight, **kwargs)
    assert out.grad_fn is not None
    return out.grad_fn.name()


@needs_onednn
def test_a_batch_of_one_runs_through_onednn_only_inside_the_context():
    x, w = torch.randn(1, 4, 12, 14, 12), torch.randn(8, 4, 3, 3, 3)
    # PyTorch's own choice at this size is its native kernel
    assert kernel_of(x, w, padding=1) == "ConvolutionBackward0"
    with onednn_convolutions():
        assert kernel_of(x, w, padding=1) == "MkldnnConvolutionBackward0"
        assert kernel_of(x, w, padding=(1, 0, 1), stride=2) == "MkldnnConvolutionBackward0"
    with onednn_convolutions(enabled=False):
        assert kernel_of(x, w, padding=1) == "ConvolutionBackward0"


@needs_onednn
def test_what_onednn_cannot_take_goes_through_pytorch_unchanged():
    x, w = torch.randn(1, 4, 8, 8, 8), torch.randn(8, 4, 3, 3, 3)
    with onednn_convolutions():
        assert kernel_of(x, w, padding="same") == "ConvolutionBackward0"
        inside = torch.conv3d(x[0], w, padding=1)  # unbatched
    assert torch.equal(inside, torch.conv3d(x[0], w, padding=1))
    with onednn_convolutions():
        assert kernel_of(x.double(), w.double(), padding=1) == "ConvolutionBackward0"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.conv3d(x, w, padding=1)
        assert out.dtype == torch.bfloat16  # autocast still casts the convolution


@needs_onednn
def test_the_same_values_and_input_gradient_up_to_rounding(monkeypatch):
    """A mask step through oneDNN: its convolutions ran there, and its score, P(AD) and
    gradient are those of PyTorch's own kernels up to rounding."""
    ran = []
    real = torch.ops.aten.mkldnn_convolution

    def counting(*args):
        ran.append(args[0].shape[0])
        return real(*args)

    monkeypatch.setattr(cpu_convolution.torch.ops.aten, "mkldnn_convolution", counting)
    torch.manual_seed(0)
    model = build_model("conv5_fc3", (24, 28, 24)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(1, 1, 24, 28, 24)
    masks = torch.full_like(x, 0.8)
    outs = {}
    # onednn-backward: the five input gradients too (the first layer's is the mask's)
    for convolution, calls in (("auto", 0), ("onednn", 5), ("onednn-backward", 10)):
        ran.clear()
        config = MaskConfig(convolution=convolution, reference="constant")
        outs[convolution] = score_and_gradient(model, x, masks, config, 1)
        assert len(ran) == calls
    for convolution in ("onednn", "onednn-backward"):
        for auto, other in zip(outs["auto"], outs[convolution], strict=True):
            torch.testing.assert_close(other, auto, rtol=1e-4, atol=1e-4 * float(auto.abs().max()))


def conv_node_and_input_gradient(
    x: torch.Tensor, weight: torch.Tensor, backward: bool, **kwargs
) -> tuple[str, torch.Tensor]:
    leaf = x.clone().requires_grad_(True)
    with onednn_convolutions(backward=backward):
        out = torch.conv3d(leaf, weight, **kwargs)
    assert out.grad_fn is not None
    torch.manual_seed(1)
    (grad,) = torch.autograd.grad(out, leaf, torch.randn_like(out))
    return out.grad_fn.name(), grad


@needs_onednn
@settings(max_examples=25, deadline=None)
@given(
    kernel=st.tuples(*[st.sampled_from([1, 3, 5])] * 3),
    pad_share=st.tuples(*[st.floats(0, 1)] * 3),
    channels=st.tuples(st.integers(1, 4), st.integers(1, 5)),
    bias=st.booleans(),
)
def test_the_flipped_kernel_input_gradient_is_the_convolutions_own(
    kernel, pad_share, channels, bias
):
    """Any kernel size and padding (0 to k - 1 per axis): the output is oneDNN's forward
    pass bit for bit, and the input gradient is PyTorch's own up to rounding."""
    padding = tuple(round(s * (k - 1)) for s, k in zip(pad_share, kernel, strict=True))
    torch.manual_seed(0)
    x = torch.randn(1, channels[0], 9, 7, 8)
    w = torch.randn(channels[1], channels[0], *kernel)
    b = torch.randn(channels[1]) if bias else None
    name, flipped = conv_node_and_input_gradient(x, w, True, bias=b, padding=padding)
    assert name == "_FlippedKernelConvolutionBackward"
    _, reference = conv_node_and_input_gradient(x, w, False, bias=b, padding=padding)
    scale = float(reference.abs().max())
    torch.testing.assert_close(flipped, reference, rtol=1e-5, atol=1e-6 * scale)
    with onednn_convolutions(backward=True):
        out = torch.conv3d(x.requires_grad_(), w, b, padding=padding)
    with onednn_convolutions():
        assert torch.equal(out, torch.conv3d(x, w, b, padding=padding))


@needs_onednn
def test_what_the_flipped_kernel_cannot_take_keeps_pytorchs_backward():
    x, w = torch.randn(1, 4, 9, 9, 9), torch.randn(8, 4, 3, 3, 3)
    for kwargs in ({"stride": 2, "padding": 1}, {"dilation": 2, "padding": 1}):
        assert conv_node_and_input_gradient(x, w, True, **kwargs)[0] == (
            "MkldnnConvolutionBackward0"
        )
    # grouped convolutions, and weights that need their own gradient (training)
    grouped = conv_node_and_input_gradient(x, torch.randn(8, 2, 3, 3, 3), True, groups=2)
    assert grouped[0] == "MkldnnConvolutionBackward0"
    with onednn_convolutions(backward=True):
        trained = torch.conv3d(x, w.clone().requires_grad_(True), padding=1)
        frozen_input = torch.conv3d(x, w, padding=1)  # nothing needs a gradient
    assert trained.grad_fn is not None and trained.grad_fn.name() == "MkldnnConvolutionBackward0"
    assert frozen_input.grad_fn is None


@needs_onednn
@pytest.mark.parametrize("kernel, ceil_mode", [(2, True), (2, False), (3, True)])
def test_max_pooling_through_channels_last_is_bit_for_bit_the_same(kernel, ceil_mode, monkeypatch):
    """Values and gradient, with ties (a constant slab, as outside the brain)."""
    taken = []
    real = cpu_convolution._channels_last_max_pool

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(cpu_convolution, "_channels_last_max_pool", spy)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 11, 9, 10)
    x[:, :, :4] = 0.25
    grads = []
    for inside in (True, False):
        leaf = x.clone().requires_grad_(True)
        with onednn_convolutions(enabled=inside):
            out = F.max_pool3d(leaf, kernel, stride=2, ceil_mode=ceil_mode)
            pooled, indices = F.max_pool3d(x, kernel, stride=2, return_indices=True)
        assert out.is_contiguous()
        grads.append((out.detach(), torch.autograd.grad(out, leaf, torch.ones_like(out))[0]))
        assert indices.shape == pooled.shape  # return_indices goes through PyTorch
    assert taken == [True]  # the channels-last path ran (return_indices: PyTorch's own)
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_an_unknown_convolution_is_refused_by_name():
    with pytest.raises(
        ParameterError, match="convolution must be one of auto, onednn, onednn-backward"
    ):
        MaskConfig(convolution="mkl")
