"""Score normalisation (``score_normalisation = "gradient"``): the measured gradient mass
against a hand computation, the invariance it exists for, and its settings' errors."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from conftest import planted_healthy_sessions
from neuromask.errors import NeuromaskError, ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation
from neuromask.explain.score_scale import score_gradient_mass

SHAPE = (7, 8, 9)
HEALTHY = planted_healthy_sessions()


class _Linear(nn.Module):
    """logits (0, sum(w * x)): the AD logit's input gradient is w."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ad = (x * self.w).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(ad), ad], dim=1)


class _Scaled(nn.Module):
    """Another CNN's logits times ``factor``: the same decisions, a steeper score."""

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


def test_gradient_mass_is_the_summed_input_gradient_over_the_brain():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 1, *SHAPE, generator=gen)
    x = torch.rand(5, 1, *SHAPE, generator=gen)
    brain = torch.zeros(SHAPE, dtype=torch.bool)
    brain[1:6, 2:7, 1:8] = True
    config = MaskConfig(reference="constant", mu=0.8, batch_size=2, score="logit")
    explainer = MeaningfulPerturbation(_Linear(w), config, brain_mask=brain)
    # d mean_i f_i / d m(u) = w(u) * mean_i (x_i(u) - mu), summed in absolute value
    expected = (w[0, 0] * (x[:, 0] - 0.8).mean(0)).abs()[brain].sum()
    assert score_gradient_mass(explainer, x, 1) == pytest.approx(float(expected), rel=1e-5)
    unrestricted = MeaningfulPerturbation(_Linear(w), config)
    whole = (w[0, 0] * (x[:, 0] - 0.8).mean(0)).abs().sum()
    assert score_gradient_mass(unrestricted, x, 1) == pytest.approx(float(whole), rel=1e-5)


def _mask(model, normalisation, train, validation):
    config = MaskConfig(
        max_epochs=4,
        refine_epochs=2,
        batch_size=4,
        score_normalisation=normalisation,
        score_gradient=3.0,
    )
    explainer = MeaningfulPerturbation(model, config, reference=HEALTHY)
    return explainer.attribute(train, 1, validation=validation)


def test_a_steeper_cnn_gets_the_same_mask_only_when_normalised(planted_model):
    """Logits times 8 leave the normalised mask as it was; without normalisation the
    same regularisers then weigh 8 times less and the mask changes."""
    model, train, validation = planted_model
    steep = _Scaled(model, 8.0)
    plain, plain_result = _mask(model, "gradient", train, validation)
    scaled, scaled_result = _mask(steep, "gradient", train, validation)
    torch.testing.assert_close(plain, scaled, atol=1e-4, rtol=0)
    assert scaled_result.score_scale == pytest.approx(plain_result.score_scale / 8, rel=1e-4)
    assert plain_result.settings()["score_scale"] == plain_result.score_scale
    np.testing.assert_allclose(
        plain_result.history["train_score"], scaled_result.history["train_score"], rtol=1e-3
    )
    raw, raw_result = _mask(model, "none", train, validation)
    raw_steep, _ = _mask(steep, "none", train, validation)
    assert (raw - raw_steep).abs().max() > 1e-2
    assert raw_result.score_scale == 1.0 and "score_scale" not in raw_result.settings()


def test_normalising_is_multiplying_the_score_by_the_scale(planted_model):
    """The normalised mask equals the plain mask of a CNN whose logits are multiplied by
    the measured scale: the factor reaches the loss, its gradient and early stopping."""
    model, train, validation = planted_model
    normalised, result = _mask(model, "gradient", train, validation)
    assert result.score_scale != pytest.approx(1.0, rel=0.1)
    by_hand, _ = _mask(_Scaled(model, result.score_scale), "none", train, validation)
    plain, _ = _mask(model, "none", train, validation)
    # The area term's sort makes rounding differences grow a little over the epochs
    # (measured: mean |difference| 1e-4 here, against 3e-2 for the unscaled CNN's mask).
    assert float((normalised - by_hand).abs().mean()) < 2e-3
    assert float((normalised - plain).abs().mean()) > 1e-2


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"score_normalisation": "logit"}, "score_normalisation"),
        ({"score_gradient": 0.0}, "score_gradient"),
        ({"score_gradient": float("nan")}, "score_gradient"),
    ],
)
def test_bad_settings_name_themselves(fields, name):
    with pytest.raises(ParameterError, match=name):
        MaskConfig(**fields)


def _sessions(model, normalisation, images, batch_size=1, score_gradient=30.0):
    config = MaskConfig(
        score_normalisation=normalisation,
        score_gradient=score_gradient,
        upsample=1,
        area=0.0,
        lambda2=1e-3,
        max_epochs=6,
        batch_size=batch_size,
    )
    return MeaningfulPerturbation(model, config, reference=HEALTHY).attribute(
        images, 1, mode="session"
    )


def test_session_masks_get_one_scale_per_image(planted_model):
    """Each session mask's score is scaled by its own image's G, measured at its first
    step, whether the masks are optimised one by one or in a batch."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(1, 1, *SHAPE, generator=gen)
    _, train, _ = planted_model
    images = train[:3]
    masks, result = _sessions(_Linear(w), "gradient", images)
    healthy = torch.as_tensor(HEALTHY)
    for i in range(3):  # d f / d m = w (X - max(X, H)), H the CN session i mod K
        x = images[i, 0]
        mass = (w[0, 0] * (x - torch.maximum(x, healthy[i % len(healthy)]))).abs().sum()
        assert result.history["score_scale"][i] == pytest.approx(30.0 / float(mass), rel=1e-4)
    assert result.history["score_scale"].nunique() == 3
    batched, batched_result = _sessions(_Linear(w), "gradient", images, batch_size=3)
    np.testing.assert_allclose(batched_result.history["score_scale"], result.history["score_scale"])
    torch.testing.assert_close(batched, masks, atol=1e-4, rtol=0)
    plain, plain_result = _sessions(_Linear(w), "none", images)
    assert plain_result.history["score_scale"].tolist() == [1.0, 1.0, 1.0]
    assert float((plain - masks).abs().max()) > 1e-2


def test_a_cnn_blind_to_deletion():
    """Normalising a score that does not respond is a clear error; the floor has
    nothing to raise and keeps the factor 1."""
    flat = _Linear(torch.zeros(1, 1, *SHAPE))
    images = torch.rand(3, 1, *SHAPE)
    config = MaskConfig(score_normalisation="gradient", max_epochs=1, refine_epochs=0)
    explainer = MeaningfulPerturbation(flat, config, reference=HEALTHY)
    with pytest.raises(NeuromaskError, match="'gradient'.*does not respond to deletion"):
        explainer.attribute(images, 1)
    floor = dataclasses.replace(config, score_normalisation="floor")
    _, result = MeaningfulPerturbation(flat, floor, reference=HEALTHY).attribute(images, 1)
    assert result.score_scale == 1.0


def test_the_floor_raises_a_weak_score_and_leaves_a_steep_one(planted_model):
    """``floor``: a CNN whose score pulls less than score_gradient is scaled up as under
    ``gradient``; one that pulls more keeps its loss, and so its mask, exactly."""
    model, train, validation = planted_model
    weak = _Scaled(model, 0.25)  # the planted CNN pulls about 5.5; this one about 1.4
    _, normalised = _mask(weak, "gradient", train, validation)
    _, floored = _mask(weak, "floor", train, validation)
    assert floored.score_scale == pytest.approx(normalised.score_scale) and floored.score_scale > 1
    steep_floor, steep = _mask(model, "floor", train, validation)
    steep_plain, _ = _mask(model, "none", train, validation)
    assert steep.score_scale == 1.0
    assert torch.equal(steep_floor, steep_plain)
