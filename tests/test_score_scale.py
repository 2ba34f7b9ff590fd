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


def _mask(model, normalisation, train, validation, refine_epochs=0, score_gradient=3.0, **fields):
    config = MaskConfig(
        **{"larger_areas": (), **fields},  # one area unless a test says
        max_epochs=4,
        refine_epochs=refine_epochs,
        batch_size=4,
        score_normalisation=normalisation,
        score_gradient=score_gradient,
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


def test_a_step_weighs_the_score_by_the_scale(planted_model):
    """One group step: the score it reports is the CNN's times the factor, and the
    gradient it hands to Adam is the regularisers' plus the factor times the score's."""
    model, train, _ = planted_model
    explainer = MeaningfulPerturbation(model, MaskConfig(), reference=HEALTHY)
    explainer.attribute(train[:2], 1)  # sets the mask's grid
    start = explainer.grid_map.ones(1, explainer.device) * 0.9

    class Spy:
        def step(self, grad):
            self.grad = grad.clone()

    def step(scale):
        explainer.score_scale = scale
        adam = Spy()
        _, _, score, _ = explainer.group_step(start.clone(), adam, train[:4], 1)
        return score, adam.grad

    score_0, grad_0 = step(0.0)
    score_1, grad_1 = step(1.0)
    score_s, grad_s = step(2.5)
    torch.testing.assert_close(score_s, 2.5 * score_1)
    assert float(score_0.abs().max()) == 0
    torch.testing.assert_close(grad_s, grad_0 + 2.5 * (grad_1 - grad_0), rtol=1e-5, atol=1e-7)
    assert float((grad_1 - grad_0).abs().max()) > 0


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"floor_above": 1.0}, "floor_above"),
        ({"floor_above": -0.1}, "floor_above"),
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


def test_the_fine_stage_keeps_the_score_as_it_is(planted_model, monkeypatch):
    """The factor places the coarse region; the fine stage refines it unscaled."""
    from neuromask.explain import refine

    seen = []
    real = refine.optimise_group_mask

    def spy(explainer, *args, **kwargs):
        seen.append(explainer.score_scale)
        return real(explainer, *args, **kwargs)

    monkeypatch.setattr(refine, "optimise_group_mask", spy)
    model, train, validation = planted_model
    _, result = _mask(model, "gradient", train, validation, refine_epochs=2)
    assert result.score_scale != pytest.approx(1.0, rel=0.1)
    assert seen == [1.0]
    assert set(result.history["stage"]) == {"coarse", "fine"}


def test_the_floor_waits_for_a_mask_that_does_not_fool_the_cnn(planted_model, tmp_path):
    """``floor_above``: the mask found with the score as it is stands when it fools the
    CNN below that bar; otherwise the floor's mask replaces it, the same as with the
    floor from the start, and an interrupted retry resumes to it."""
    from test_mask_levers import interrupted_and_resumed

    model, train, validation = planted_model
    plain, _ = _mask(model, "none", train, validation, refine_epochs=2)
    always, _ = _mask(model, "floor", train, validation, 2, 30.0, floor_above=0.0)
    assert float((always - plain).abs().max()) > 1e-2  # the planted CNN's G is below 30
    kept, kept_result = _mask(model, "floor", train, validation, 2, 30.0, floor_above=0.999)
    assert torch.equal(kept, plain)
    assert kept_result.floor["applied"] is False and kept_result.score_scale == 1.0
    assert kept_result.floor["p_target_without"] < 0.999
    retried, result = _mask(model, "floor", train, validation, 2, 30.0, floor_above=1e-9)
    assert torch.equal(retried, always) and result.floor["applied"] is True
    assert result.score_scale > 1 and result.settings()["floor"] == result.floor
    config = dataclasses.replace(result.config)
    explainer = MeaningfulPerturbation(model, config, reference=HEALTHY)
    epochs = len(kept_result.history)
    resumed = interrupted_and_resumed(explainer, train, validation, tmp_path, epochs + 2)
    assert torch.equal(resumed, always)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c.floor.pt",
        "c.floor.refine.pt",
        "c.pt",
        "c.refine.pt",
    ]


def test_larger_areas_follow_the_floor_with_its_factor(planted_model, tmp_path):
    """The floor is decided at the first area; a mask that still does not fool the CNN
    then grows, with the floor's factor, in checkpoints of its own. The epochs reported
    to ``after_epoch`` rise from one stage to the next (a progress bar never goes back),
    and an interrupted run resumes to the same mask."""
    from test_mask_levers import interrupted_and_resumed

    model, train, validation = planted_model
    fields = {"floor_above": 1e-9, "larger_areas": (0.08,), "fooled_below": 1e-9}
    floored, _ = _mask(model, "floor", train, validation, 2, 30.0, floor_above=1e-9)
    grown, result = _mask(model, "floor", train, validation, 2, 30.0, **fields)
    assert result.floor["applied"] is True and result.score_scale > 1
    assert [row["area"] for row in result.areas_tried] == [0.02, 0.08]
    first = result.history[result.history["area"] == 0.02]
    assert len(first) == result.areas_tried[0]["epochs"]
    assert not torch.equal(grown, floored)
    # best_epoch is a row of the history (which holds the floored run, not the one before)
    assert 0 <= result.best_epoch < len(result.history)
    assert result.history.iloc[result.best_epoch]["area"] == 0.08
    seen: list[int] = []
    explainer = MeaningfulPerturbation(model, result.config, reference=HEALTHY)
    explainer.attribute(train, 1, validation=validation, after_epoch=seen.append)
    assert seen == sorted(set(seen)) and len(seen) == result.floor["epochs_without"] + len(
        result.history
    )
    resumed = interrupted_and_resumed(explainer, train, validation, tmp_path, seen[-3])
    assert torch.equal(resumed, grown)
    names = ["c.area-1.pt", "c.area-1.refine.pt", "c.floor.pt", "c.floor.refine.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, "c.pt", "c.refine.pt"])
