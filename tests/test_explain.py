"""Perturbation masks: the loss terms against independent computations, the optimiser,
the frozen CNN, localisation of a planted signal, resuming, batching, bad input."""

import numpy as np
import pytest
import torch
from torch import nn

from conftest import planted_healthy_sessions
from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.adam import SlotAdam
from neuromask.explain.objective import class_score, perturb, size_term, smoothness_term
from neuromask.explain.perturbation import MaskLossNaNError
from neuromask.models import CNNConfig, build_model

SHAPE = (7, 8, 9)
#: The CN sessions of the default mask's healthy reference, for the planted model.
HEALTHY = planted_healthy_sessions()


def test_size_term_matches_numpy_and_is_finite_at_one():
    gen = np.random.default_rng(0)
    m = gen.random((2, 1, *SHAPE))
    for beta1, eps in ((0.1, 1e-2), (0.5, 1e-3), (1.0, 1e-2), (2.0, 1e-2)):
        expected = (
            (np.abs(1 - m) + eps) ** beta1 - eps**beta1 if beta1 < 1 else np.abs(1 - m) ** beta1
        )
        got = size_term(torch.from_numpy(m), beta1, eps).numpy()
        np.testing.assert_allclose(got, expected.reshape(2, -1).sum(1), rtol=1e-10)
    ones = torch.ones((1, 1, *SHAPE), dtype=torch.float64, requires_grad=True)
    value = size_term(ones, 0.1, 1e-2)
    (grad,) = torch.autograd.grad(value.sum(), ones)
    assert float(value.detach()) == 0.0
    assert torch.isfinite(grad).all()
    np.testing.assert_allclose(grad.numpy(), -0.1 * 1e-2 ** (0.1 - 1))


@pytest.mark.parametrize("beta2", [1.0, 2.0, 3.0])
def test_smoothness_term_matches_forward_differences(beta2):
    gen = np.random.default_rng(1)
    m = gen.random((3, 1, *SHAPE))
    expected = sum(
        (np.abs(np.diff(m, axis=axis)) ** beta2).reshape(3, -1).sum(1) for axis in (2, 3, 4)
    )
    np.testing.assert_allclose(
        smoothness_term(torch.from_numpy(m), beta2).numpy(), expected, rtol=1e-10
    )
    flat = torch.full((1, 1, *SHAPE), 0.3, dtype=torch.float64)
    assert float(smoothness_term(flat, beta2)) == 0.0


def test_scores_and_perturbation():
    logits = torch.tensor([[0.5, 2.0], [1.0, -1.0]])
    p = torch.softmax(logits, 1)[:, 1]
    torch.testing.assert_close(class_score(logits, 1, "probability"), p)
    torch.testing.assert_close(class_score(logits, 1, "log_probability"), p.log())
    torch.testing.assert_close(class_score(logits, 1, "logit"), logits[:, 1])
    x = torch.rand(1, 1, *SHAPE)
    m = torch.rand(1, 1, *SHAPE)
    torch.testing.assert_close(perturb(x, m, 1.0), m * x + (1 - m))


def test_slot_adam_matches_torch_adam_and_resets():
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(2, 5, generator=gen) for _ in range(6)]
    ours = torch.zeros(2, 5)
    reference = torch.zeros(2, 5, requires_grad=True)
    slot, torch_adam = SlotAdam(ours, lr=0.1), torch.optim.Adam([reference], lr=0.1)
    for g in grads:
        slot.step(g)
        reference.grad = g.clone()
        torch_adam.step()
    torch.testing.assert_close(ours, reference.detach())
    # A reset slot behaves as a fresh optimiser, while the other slot keeps going.
    slot.reset(1)
    ours[1] = 0.0
    fresh = torch.zeros(5, requires_grad=True)
    fresh_adam = torch.optim.Adam([fresh], lr=0.1)
    for g in grads[:3]:
        slot.step(g, [1])
        fresh.grad = g[1].clone()
        fresh_adam.step()
    torch.testing.assert_close(ours[1], fresh.detach())


def test_bad_hyperparameters_are_refused():
    for kwargs in (
        {"beta1": 0.0},
        {"beta2": -1.0},
        {"lambda1": -1e-4},
        {"lambda2": float("nan")},
        {"score": "hinge"},
        {"margin": -1.0},
        {"upsample": 0},
        {"jitter": -1},
        {"reference": "median"},
        {"area": 1.0},
        {"area_weight": 0.0},
        {"step_scaling": "pixel"},
        {"patience": 0},
        {"validate_every": 0},
        {"larger_areas": (0.04, 0.03)},
        {"fooled_below": 1.0},
    ):
        with pytest.raises(ParameterError, match=next(iter(kwargs))):
            MaskConfig(**kwargs)
    with pytest.raises(
        ParameterError,
        match="valid names: group, group-r23, group-coarse, group-mu, group-sufficient, group-wide, voxel, paper, "
        "small-cohort, session, session-area, paper-session, group-fast",
    ):
        mask_preset("huge")


def test_model_is_frozen_and_untouched(planted_model):
    model, train, _ = planted_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explainer = MeaningfulPerturbation(model, MaskConfig(max_epochs=2), reference=HEALTHY)
    explainer.attribute(train, 1)
    assert not model.training
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_group_mask_finds_the_planted_block_and_fools_the_cnn(planted_model):
    model, train, validation = planted_model
    config = mask_preset(
        "voxel", lambda1=1e-3, lambda2=1e-3, max_epochs=40, patience=10, score="probability"
    )
    explainer = MeaningfulPerturbation(model, config)
    before = explainer.probabilities(validation, 1).mean()
    masks, result = explainer.attribute(train, 1, validation=validation)
    assert masks.shape == (1, 1, *SHAPE) and result.raw_masks.shape == (1, 1, *SHAPE)
    deletion = 1 - result.raw_masks[0, 0].numpy()
    block = np.zeros(SHAPE, bool)
    block[:3, :3, :3] = True
    assert deletion[block].mean() > 3 * deletion[~block].mean()
    after = explainer.probabilities(validation, 1, masks).mean()
    assert before > 0.5 and after < 0.3
    history = result.history
    assert {
        "train_size",
        "train_smoothness",
        "train_score",
        "validation_total",
        "validation_probability",
        "fraction_below_keep",
    } <= set(history.columns)
    assert result.best_epoch == int(history["validation_total"].idxmin())
    assert set(np.unique(masks.numpy()[masks.numpy() > 0.95])) == {1.0}


@pytest.mark.parametrize("validate_every", [1, 2])
def test_group_mask_resumes_to_the_same_mask(planted_model, tmp_path, validate_every):
    model, train, validation = planted_model
    config = MaskConfig(
        max_epochs=5,
        patience=5,
        batch_size=4,
        seed=3,
        reference="constant",
        refine_epochs=0,
        validate_every=validate_every,
    )
    straight, _ = MeaningfulPerturbation(model, config).attribute(train, 1, validation=validation)

    def interrupt(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    explainer = MeaningfulPerturbation(model, config)
    with pytest.raises(KeyboardInterrupt):
        explainer.attribute(
            train, 1, validation=validation, checkpoint=tmp_path / "c.pt", after_epoch=interrupt
        )
    resumed, result = explainer.attribute(
        train, 1, validation=validation, checkpoint=tmp_path / "c.pt"
    )
    assert torch.equal(straight, resumed)
    assert len(result.history) == 5


def test_validate_every_judges_every_nth_epoch_and_the_last(planted_model, monkeypatch):
    """With ``validate_every = 3`` over 7 epochs the validation pass runs after epochs 3,
    6 and 7 only; the mask's path is that of judging every epoch, and the mask kept is
    the best of the judged epochs."""
    import neuromask.explain.group as group

    model, train, validation = planted_model
    common = dict(
        max_epochs=7,
        patience=10,
        batch_size=4,
        seed=3,
        reference="constant",
        refine_epochs=0,
        larger_areas=(),
        lambda1=1e-3,
    )
    every = MeaningfulPerturbation(model, MaskConfig(**common)).attribute(
        train, 1, validation=validation
    )[1]
    passes = []
    evaluate = group.evaluate_group_mask
    monkeypatch.setattr(
        group, "evaluate_group_mask", lambda *a, **k: passes.append(1) or evaluate(*a, **k)
    )
    config = MaskConfig(**common, validate_every=3)
    masks, third = MeaningfulPerturbation(model, config).attribute(train, 1, validation=validation)
    assert len(passes) == 3
    judged = third.history["validation_total"].notna()
    assert third.history.loc[judged, "epoch"].tolist() == [2, 5, 6]
    assert np.array_equal(third.history["train_total"], every.history["train_total"])
    assert np.allclose(
        third.history.loc[judged, "validation_total"],
        every.history.loc[judged, "validation_total"],
    )
    assert third.best_epoch == int(third.history["validation_total"].idxmin())
    if third.best_epoch != every.best_epoch:  # the best epoch of all was not judged
        assert every.best_epoch not in (2, 5, 6)


def test_session_masks_batched_equal_one_by_one(planted_model):
    model, train, _ = planted_model
    images = train[:5]
    config = mask_preset(  # the session preset's voxel-level mask
        "session", max_epochs=30, patience=10, score="probability"
    )
    batched, result = MeaningfulPerturbation(
        model, config.__class__(**{**config.__dict__, "batch_size": 3})
    ).attribute(images, 1, mode="session")
    single, _ = MeaningfulPerturbation(model, config).attribute(images, 1, mode="session")
    assert batched.shape == images.shape
    # Batched convolutions round differently from single ones, and Adam turns gradients
    # that differ only by rounding near zero into steps of either sign: the masks agree
    # closely, not bit for bit.
    diff = (batched - single).abs()
    assert float(diff.mean()) < 2e-3
    assert float((diff < 1e-3).float().mean()) > 0.97
    assert len(result.history) == 5 and (result.history["epochs"] <= 30).all()


def test_restriction_to_the_brain_keeps_the_outside(planted_model):
    model, train, _ = planted_model
    brain = np.zeros(SHAPE, bool)
    brain[2:, 2:, 2:] = True
    config = MaskConfig(
        lambda1=1e-3, lambda2=1e-3, max_epochs=10, restrict_to_brain=True, score="probability"
    )
    masks, _ = MeaningfulPerturbation(model, config, brain_mask=brain, reference=HEALTHY).attribute(
        train, 1
    )
    assert (masks[0, 0].numpy()[~brain] == 1).all()
    assert (masks[0, 0].numpy()[brain] < 1).any()


class _NaNAfter(nn.Module):
    """Returns finite logits for the first calls, then NaN."""

    def __init__(self, finite_calls):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.calls, self.finite_calls = 0, finite_calls

    def forward(self, x):
        self.calls += 1
        logits = torch.stack([x.mean((1, 2, 3, 4)), -x.mean((1, 2, 3, 4))], 1) * self.weight
        return logits if self.calls <= self.finite_calls else logits * float("nan")


def test_nan_loss_stops_and_keeps_the_last_good_mask():
    images = torch.rand(4, 1, *SHAPE)
    model = _NaNAfter(finite_calls=9)
    config = MaskConfig(max_epochs=10, patience=10, batch_size=2, reference="constant")
    explainer = MeaningfulPerturbation(model, config)
    with pytest.raises(MaskLossNaNError, match="epoch") as info:
        explainer.attribute(images, 0)
    result = info.value.result
    assert result.stopped_because.startswith("nan_at_epoch_")
    assert torch.isfinite(result.raw_masks).all()
    assert len(result.history) >= 1


def test_inputs_are_checked(planted_model):
    model, train, _ = planted_model
    with pytest.raises(ParameterError, match="needs the CN sessions"):
        MeaningfulPerturbation(model)  # the default mask restores healthy tissue
    explainer = MeaningfulPerturbation(model, reference=HEALTHY)
    with pytest.raises(ParameterError, match=r"\(N, 1, X, Y, Z\)"):
        explainer.attribute(train[:, 0], 1)
    with pytest.raises(ParameterError, match="mode"):
        explainer.attribute(train, 1, mode="voxel")
    wrong = MeaningfulPerturbation(model, brain_mask=np.ones((3, 3, 3), bool), reference=HEALTHY)
    with pytest.raises(ParameterError, match="brain_mask"):
        wrong.attribute(train, 1)


def test_build_model_is_unaffected_by_freezing():
    model = build_model(
        CNNConfig(n_blocks=1, first_filters=2, max_filters=2, sub_blocks=(1,)), SHAPE
    )
    MeaningfulPerturbation(model, reference=planted_healthy_sessions())
    assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(("beta1", "beta2"), [(0.1, 1.0), (1.0, 2.0), (2.0, 3.0), (0.5, 2.0)])
def test_closed_form_gradients_match_autograd(beta1, beta2):
    from neuromask.explain.objective import regularisers, score_and_gradient

    config = MaskConfig(beta1=beta1, beta2=beta2, lambda1=0.3, lambda2=0.7, mu=0.8, area=0.0)
    gen = torch.Generator().manual_seed(5)
    masks = (
        0.05 + 0.9 * torch.rand(2, 1, *SHAPE, generator=gen, dtype=torch.float64)
    ).requires_grad_(True)
    value = config.lambda1 * size_term(
        masks, beta1, config.size_epsilon
    ) + config.lambda2 * smoothness_term(masks, beta2)
    (expected,) = torch.autograd.grad(value.sum(), masks)
    size, smooth, grad = regularisers(masks.detach(), config)
    torch.testing.assert_close(size + smooth, value.detach())
    torch.testing.assert_close(grad, expected)
    # The score's gradient through the CNN, for one shared mask and for one mask per image.
    model = (
        build_model(CNNConfig(n_blocks=1, first_filters=2, max_filters=2, sub_blocks=(1,)), SHAPE)
        .double()
        .eval()
    )
    images = torch.rand(2, 1, *SHAPE, generator=gen, dtype=torch.float64)
    for m in (
        masks.detach()[:1].clone().requires_grad_(True),
        masks.detach().clone().requires_grad_(True),
    ):
        score = class_score(model(perturb(images, m, config.mu)), 1, config.score)
        (expected,) = torch.autograd.grad(score.sum(), m)
        got_score, _, got = score_and_gradient(model, images, m.detach(), config, 1)
        torch.testing.assert_close(got_score, score.detach())
        torch.testing.assert_close(got, expected)
