"""The oneDNN context for 3D convolutions on the CPU (mask setting ``convolution``)."""

from __future__ import annotations

import pytest
import torch

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
    for convolution in ("auto", "onednn"):
        config = MaskConfig(convolution=convolution, reference="constant")
        outs[convolution] = score_and_gradient(model, x, masks, config, 1)
        assert ran == ([1] * 5 if convolution == "onednn" else [])
    for auto, onednn in zip(outs["auto"], outs["onednn"], strict=True):
        torch.testing.assert_close(onednn, auto, rtol=1e-4, atol=1e-4 * float(auto.abs().max()))


def test_an_unknown_convolution_is_refused_by_name():
    with pytest.raises(ParameterError, match="convolution must be one of auto, onednn"):
        MaskConfig(convolution="mkl")
