"""The levers of mask localisation (issue 13): margin score, coarse masks, area constraint,
mask-level step scaling, jitter, the CN reference, and the coherence measure."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import PLANTED_SHAPE as SHAPE
from conftest import planted_healthy_sessions as healthy_sessions
from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.adam import SlotAdam
from neuromask.explain.group import jitter_shifts
from neuromask.explain.objective import area_term, class_score, size_term
from neuromask.explain.parametrisation import MaskGrid
from neuromask.metrics.coherence import coherence


def test_margin_score_stops_rewarding_once_the_cnn_is_fooled():
    logits = torch.tensor([[0.0, 5.0], [0.0, -1.0], [0.0, -7.0]], requires_grad=True)
    score = class_score(logits, 1, "margin", margin=3.0)
    assert score.tolist() == [5.0, -1.0, -3.0]
    score.sum().backward()
    assert logits.grad is not None
    assert logits.grad[2].abs().sum() == 0  # fooled by more than the margin: no pull
    assert logits.grad[0].tolist() == [-1.0, 1.0]


def test_area_term_matches_autograd_and_is_zero_at_the_exact_area():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand((2, 1, 4, 5, 6), generator=gen, dtype=torch.float64, requires_grad=True)
    brain = torch.rand((4, 5, 6), generator=gen) > 0.3
    term, grad = area_term(masks.detach(), 0.2, 3.0, brain)
    values = masks.reshape(2, -1)[:, brain.reshape(-1)]
    ordered, _ = values.sort(1)
    target = torch.ones_like(ordered)
    target[:, : round(0.2 * ordered.shape[1])] = 0
    expected = 3.0 * (ordered - target).pow(2).mean(1)
    expected.sum().backward()
    assert torch.allclose(term, expected) and torch.allclose(grad, masks.grad)
    assert (grad.reshape(2, -1)[:, ~brain.reshape(-1)] == 0).all()
    exact = torch.ones((1, 1, 10, 1, 1))
    exact[0, 0, 7:] = 0  # 3 of 10 deleted: any shape of that area costs nothing
    assert float(area_term(exact, 0.3, 1.0)[0][0]) == 0.0


def test_area_term_does_not_pick_among_ties():
    """At the all-ones start every brain voxel is tied: the sort's order must not choose
    which ones the constraint deletes, so all get the same pull (the mean target)."""
    brain = torch.zeros((1, 1, 6, 7, 8), dtype=torch.bool)
    brain[..., 1:5, 1:6, 1:7] = True
    term, grad = area_term(torch.ones((2, 1, 6, 7, 8)), 0.1, 4.0, brain[0, 0])
    n = int(brain.sum())
    k = round(0.1 * n)
    assert torch.allclose(term, torch.full((2,), 4.0 * k / n))  # the value is unchanged
    inside = grad[:, :, brain[0, 0]]
    assert torch.allclose(inside, torch.full_like(inside, 2 * 4.0 / n * k / n))
    assert (grad[:, :, ~brain[0, 0]] == 0).all()
    partly = torch.ones((1, 1, 6, 7, 8))
    partly[0, 0, 1, 1, 1:4] = 0.0  # three deleted voxels, below the area's k
    _, grad = area_term(partly, 0.1, 4.0, brain[0, 0])
    rest = grad[0, 0][brain[0, 0] & (partly[0, 0] == 1)]
    assert torch.allclose(rest, rest[0].expand_as(rest)) and rest[0] > 0
    assert (grad[0, 0, 1, 1, 1:4] == 0).all()  # already at their target


def sorted_area_term(masks: torch.Tensor, area: float, weight: float, brain: torch.Tensor):
    """The area term as rounds 15 to 25 computed it, through a sort of the brain."""
    values = masks.reshape(masks.shape[0], -1)[:, brain.reshape(-1)]
    n = values.shape[1]
    k = round(area * n)
    ordered, order = values.sort(dim=1)
    target = torch.ones_like(ordered)
    target[:, :k] = 0.0
    term = weight * (ordered - target).pow(2).mean(1)
    for row in range(masks.shape[0]):
        if 0 < k < n:
            tied = ordered[row] == ordered[row, k]
            if tied[k - 1]:
                target[row, tied] = target[row, tied].mean()
    grad = torch.zeros_like(masks.reshape(masks.shape[0], -1))
    residual = (ordered - target) * (2 * weight / n)
    grad[:, brain.reshape(-1)] = torch.zeros_like(values).scatter_(1, order, residual)
    return term, grad.reshape(masks.shape)


@pytest.mark.parametrize("area", [0.0, 0.02, 0.1, 0.7, 1.0])
@pytest.mark.parametrize("kind", ["ones", "clamped", "levels", "random"])
def test_area_term_without_the_sort_has_the_sorted_forms_gradient_bit_for_bit(area, kind):
    """Ties at the boundary (all ones, values clamped at both ends, a few levels) and
    none: the gradient is identical, the term equal up to rounding."""
    gen = torch.Generator().manual_seed(3)
    brain = torch.rand((14, 15, 13), generator=gen) > 0.4
    raw = torch.rand((2, 1, 14, 15, 13), generator=gen)
    masks = {
        "ones": torch.ones_like(raw),
        "clamped": raw.clamp(0.2, 0.9),
        "levels": (raw * 4).round() / 4,
        "random": raw,
    }[kind]
    term, grad = area_term(masks, area, 100.0, brain)
    expected_term, expected_grad = sorted_area_term(masks, area, 100.0, brain)
    assert torch.equal(grad, expected_grad)
    torch.testing.assert_close(term, expected_term, rtol=1e-5, atol=1e-6)
    by_index = area_term(masks, area, 100.0, brain.reshape(-1).nonzero()[:, 0])
    assert torch.equal(by_index[0], term) and torch.equal(by_index[1], grad)


def test_coarse_mask_is_smooth_keeps_the_outside_and_pulls_back_its_adjoint():
    brain = torch.zeros((1, 1, 9, 10, 11), dtype=torch.bool)
    brain[..., 1:8, 1:9, 1:10] = True
    grid = MaskGrid((9, 10, 11), 4, brain)
    assert grid.coarse_shape == (3, 3, 3)
    variables = torch.rand((2, 1, 3, 3, 3), dtype=torch.float64)
    full = grid.full(variables)
    assert full.shape == (2, 1, 9, 10, 11)
    assert (full[:, :, ~brain[0, 0]] == 1).all()
    assert float(full.min()) >= 0 and float(full.max()) <= 1
    # inside, neighbouring voxels differ by far less than the coarse variables do
    smooth = MaskGrid((9, 10, 11), 4).full(variables)
    spread = float(variables.max() - variables.min())
    assert all(float(smooth.diff(dim=d).abs().max()) <= spread / 4 + 1e-9 for d in (2, 3, 4))
    g = torch.randn_like(full)
    leaf = variables.clone().requires_grad_(True)
    (grid.full(leaf) * g).sum().backward()
    assert torch.equal(grid.pull_back(variables, g), leaf.grad)  # autograd's, bit for bit
    for factor, shape, brained in (
        (2, (61, 73, 61), True),
        (3, (8, 7, 10), True),
        (2, (5, 6, 7), False),
    ):
        whole = MaskGrid(shape, factor, torch.rand(shape) > 0.3 if brained else None)
        coarse = torch.rand((1, 1, *whole.coarse_shape)).requires_grad_(True)
        g = torch.randn((1, 1, *shape))
        (whole.full(coarse) * g).sum().backward()
        assert torch.equal(whole.pull_back(coarse.detach(), g), coarse.grad)
    same = MaskGrid((9, 10, 11))
    assert same.is_identity and same.full(full) is full and same.pull_back(full, g) is g


def test_mask_step_scaling_keeps_relative_sizes_and_ignores_the_loss_scale():
    steps = []
    for scale in (1.0, 1000.0):
        param = torch.full((1, 4), 0.5)
        adam = SlotAdam(param, lr=0.1, scaling="mask")
        adam.step(torch.tensor([[1.0, 0.1, 0.0, -1.0]]) * scale)
        steps.append(0.5 - param)
    assert torch.allclose(steps[0], steps[1])
    assert torch.allclose(steps[0][0, 1], steps[0][0, 0] / 10)
    assert float(steps[0][0, 2]) == 0.0
    voxel = torch.full((1, 4), 0.5)
    SlotAdam(voxel, lr=0.1).step(torch.tensor([[1.0, 0.1, 0.0, -1.0]]))
    assert torch.allclose(0.5 - voxel[0, 1], 0.5 - voxel[0, 0])  # per voxel: same step


def test_jitter_shifts_are_bounded_seeded_and_off_at_zero():
    a = jitter_shifts(2, 50, seed=1, epoch=3)
    assert a == jitter_shifts(2, 50, seed=1, epoch=3) != jitter_shifts(2, 50, seed=1, epoch=4)
    assert all(s is not None and max(abs(v) for v in s) <= 2 for s in a)
    assert jitter_shifts(0, 3, 1, 0) == [None, None, None]


def test_coherence_tells_regions_from_speckle():
    brain = np.ones((20, 20, 20), bool)
    regions = np.zeros((20, 20, 20))
    regions[2:6, 2:6, 2:6] = 1.0
    regions[12:16, 12:16, 12:16] = 0.5
    c = coherence(regions, brain, fraction=0.016, n=2)
    assert c.components == 2 and c.voxels == 128 and c.coherence == 1.0
    speckle = np.zeros(8000)
    speckle[np.random.default_rng(0).choice(8000, 128, replace=False)] = 1.0
    assert coherence(speckle.reshape(20, 20, 20), brain, fraction=0.016, n=2).coherence < 0.2
    assert np.isnan(coherence(np.zeros((20, 20, 20)), brain).coherence)
    with pytest.raises(ParameterError, match="fraction"):
        coherence(regions, brain, fraction=0.0)
    with pytest.raises(ParameterError, match="one 3D grid"):
        coherence(regions, brain[:5])


def test_reference_image_is_required_checked_and_refused_when_unused(planted_model):
    model, train, _ = planted_model
    with pytest.raises(ParameterError, match="needs the reference image"):
        MeaningfulPerturbation(model, MaskConfig(reference="cn_mean"))
    with pytest.raises(ParameterError, match="reference is 'constant'"):
        MeaningfulPerturbation(model, MaskConfig(reference="constant"), reference=np.ones(SHAPE))
    wrong = MeaningfulPerturbation(
        model, MaskConfig(reference="cn_mean"), reference=np.ones((3, 3, 3))
    )
    with pytest.raises(ParameterError, match="reference image"):
        wrong.attribute(train, 1)
    with pytest.raises(ParameterError, match="jitter applies to group masks"):
        MeaningfulPerturbation(
            model, MaskConfig(jitter=1, reference="constant", refine_epochs=0)
        ).attribute(train, 1, mode="session")


def test_cn_reference_of_ones_equals_the_constant_one(planted_model):
    model, train, validation = planted_model
    config = MaskConfig(max_epochs=3, seed=2, reference="constant")
    constant, _ = MeaningfulPerturbation(model, config).attribute(train, 1, validation=validation)
    ref = MeaningfulPerturbation(
        model, dataclasses.replace(config, reference="cn_mean"), reference=np.ones(SHAPE)
    )
    same, _ = ref.attribute(train, 1, validation=validation)
    assert torch.allclose(constant, same, atol=1e-6)


def test_coarse_area_mask_with_jitter_resumes_to_the_same_mask(planted_model, tmp_path):
    model, train, validation = planted_model
    config = MaskConfig(area=0.1, upsample=2, jitter=1, max_epochs=4, patience=4, batch_size=4)
    sessions = healthy_sessions()  # the default healthy reference, rolled with the images
    straight, _ = MeaningfulPerturbation(model, config, reference=sessions).attribute(
        train, 1, validation=validation
    )
    resumed = interrupted_and_resumed(
        MeaningfulPerturbation(model, config, reference=sessions), train, validation, tmp_path, 1
    )
    assert torch.equal(straight, resumed)
    assert straight.shape == (1, 1, *SHAPE)


def interrupted_and_resumed(explainer, train, validation, tmp_path, at_epoch):
    """The group mask of ``explainer``, interrupted after epoch ``at_epoch`` and resumed
    from its checkpoint."""

    def interrupt(epoch):
        if epoch == at_epoch:
            raise KeyboardInterrupt

    checkpoint = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        explainer.attribute(
            train, 1, validation=validation, checkpoint=checkpoint, after_epoch=interrupt
        )
    resumed, _ = explainer.attribute(train, 1, validation=validation, checkpoint=checkpoint)
    return resumed


def test_presets_are_pinned():
    """The paper's method must not move when the defaults do; the defaults are the
    coarse area-constrained mask with the healthy reference, refined at the images'
    resolution; ``group-coarse`` is that mask without the fine stage (rounds 4-5's
    defaults); ``group-mu`` is the coarse mask with mu = 1 at 5 % (round 3's defaults);
    ``voxel`` and ``session`` are voxel-level with mu = 1."""
    group, voxel = mask_preset("group"), mask_preset("voxel")
    assert group == MaskConfig()
    assert (group.area, group.upsample, group.max_epochs) == (0.02, 2, 12)  # round 24
    assert (group.refine_epochs, group.refine_dilation, group.refine_lambda2) == (6, 2, 2e-3)
    assert group.larger_area_epochs == 6  # round 24
    assert group.convolution == "onednn-backward"  # round 27 (rounds 24-26: "onednn")
    # round 23's defaults: the group defaults but for round 24's four fields; the
    # presets made before round 24 are compared with them below
    round_23 = mask_preset("group-r23")
    f12 = {"max_epochs": 12, "refine_epochs": 6, "larger_area_epochs": 6}
    assert dataclasses.replace(round_23, **f12, convolution="onednn-backward") == group
    assert (round_23.max_epochs, round_23.refine_epochs) == (20, 10)
    assert (round_23.larger_area_epochs, round_23.convolution) == (10, "auto")
    small = mask_preset("small-cohort")  # follows the defaults but for its early stopping
    assert dataclasses.replace(small, patience=5, max_epochs=12) == group
    assert group.refine_below == 0.5
    assert (group.halo_sigma, group.halo_depth) == (2.0, 0.01)  # round 10
    assert group.trace_depth == 0.01  # round 13
    # the presets of earlier rounds and the voxel-level masks have no halo
    for name in ("group-coarse", "group-mu", "group-sufficient", "group-wide", "voxel"):
        assert mask_preset(name).halo_sigma == mask_preset(name).trace_depth == 0.0, name
    assert mask_preset("session").halo_sigma == mask_preset("paper").halo_sigma == 0.0
    for name in ("session", "paper", "paper-session"):
        assert mask_preset(name).trace_depth == 0.0, name
    assert (group.lambda2, group.refine_min_voxels, group.refine_area) == (1e-4, 27, 0.0)
    assert group.refines and group.reference == "healthy"
    assert (group.score_normalisation, group.score_gradient, group.floor_above) == (
        "floor",
        50.0,
        0.5,
    )
    assert mask_preset("small-cohort").reference == "healthy"
    # the presets measured before round 8 keep the score as it was
    for name in ("group-coarse", "group-mu", "group-sufficient", "voxel", "session", "paper"):
        assert mask_preset(name).score_normalisation == "none", name
    assert mask_preset("paper-session").score_normalisation == "none"
    coarse = mask_preset("group-coarse")
    # the coarse mask alone keeps the smoothness weight it was measured with (round 7)
    assert coarse.lambda2 == 1e-3
    assert (
        dataclasses.replace(
            coarse,
            refine_epochs=10,
            max_epochs=20,
            lambda2=1e-4,
            score_normalisation="floor",
            halo_sigma=2.0,
            trace_depth=0.01,
            larger_areas=(0.03, 0.04, 0.06),
        )
        == round_23
    )
    assert not coarse.refines and coarse.max_epochs == 40
    mu = mask_preset("group-mu")
    assert (mu.area, mu.upsample, mu.reference) == (0.05, 2, "constant")
    assert dataclasses.replace(mu, area=0.02, reference="healthy") == coarse
    sufficient = mask_preset("group-sufficient")
    assert group.larger_areas == (0.03, 0.04, 0.06)  # round 15
    assert round_23.larger_area_epochs == 10  # round 17
    assert sufficient.larger_areas == (0.04, 0.08)
    # round 5's preset: every area for up to its 40 epochs
    assert sufficient.larger_area_epochs == 0 and sufficient.larger_area_max_epochs == 40
    assert group.larger_area_skip_above == 0.1  # round 18
    assert sufficient.larger_area_skip_above == 0.0  # every area, as round 5 measured
    unladdered = {"larger_areas": (), "larger_area_epochs": 10, "larger_area_skip_above": 0.1}
    assert dataclasses.replace(sufficient, **unladdered) == coarse
    assert sufficient.fooled_below == 0.05
    wide = mask_preset("group-wide")  # round 8's defaults
    assert (wide.refine_below, wide.refine_dilation) == (0.95, 1)
    assert (
        dataclasses.replace(
            wide,
            refine_below=0.5,
            refine_dilation=2,
            halo_sigma=2.0,
            trace_depth=0.01,
            larger_areas=(0.03, 0.04, 0.06),
        )
        == round_23
    )
    one_area = ("voxel", "session", "paper", "group-coarse", "group-mu", "group-wide")
    assert all(not mask_preset(n).larger_areas for n in one_area)
    assert not any(mask_preset(n).refines for n in ("voxel", "session", "paper"))
    assert (voxel.area, voxel.upsample, voxel.max_epochs) == (0.0, 1, 150)
    assert voxel.reference == mask_preset("session").reference == "constant"
    assert (voxel.lambda1, voxel.lambda2, voxel.score) == (1e-3, 1e-3, "logit")
    session = mask_preset("session")
    assert (session.area, session.upsample, session.max_epochs) == (0.0, 1, 5000)
    assert session.lambda2 == 1e-3
    paper = mask_preset("paper")
    assert (paper.lambda1, paper.lambda2, paper.beta1, paper.beta2) == (1e-4, 1e-2, 0.1, 1.0)
    assert (paper.upsample, paper.area, paper.jitter, paper.reference) == (1, 0.0, 0, "constant")
    assert paper.step_scaling == "voxel" and paper.max_epochs == 150


#: The paper's group mask, field by field (f is P(AD), as its "< 1e-6" outputs are).
PAPER = {
    "beta1": 0.1,
    "beta2": 1.0,
    "lambda1": 1e-4,
    "lambda2": 1e-2,
    "learning_rate": 0.1,
    "mu": 1.0,
    "score": "probability",
    "size_epsilon": 2.0**-24,
    "max_epochs": 150,
    "patience": 5,
    "tolerance": 0.05,
    "validate_every": 1,
    "batch_size": 1,
    "keep_above": 0.95,
    "restrict_to_brain": False,
    "seed": 0,
    "upsample": 1,
    "jitter": 0,
    "reference": "constant",
    "area": 0.0,
    "step_scaling": "voxel",
    "larger_areas": (),
    "precision": "float32",
    "convolution": "auto",
    "refine_epochs": 0,
    "score_normalisation": "none",
    "halo_sigma": 0.0,
    "trace_depth": 0.0,
}
#: Fields that do nothing in the paper's setting (the margin hinge, the area weight,
#: the bar, epochs, least gain and skip of a growing area, the fine stage's dilation, smoothness weight, area and
#: smallest component, the normalised score's gradient mass).
INERT = {
    "margin",
    "area_weight",
    "fooled_below",
    "larger_area_epochs",
    "larger_area_gain",
    "larger_area_skip_above",
    "refine_dilation",
    "refine_lambda2",
    "refine_area",
    "refine_min_voxels",
    "refine_below",
    "score_gradient",
    "floor_above",
    "halo_depth",
}


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("paper", {}),
        (
            "paper-session",
            {
                "lambda1": 1e-2,
                "lambda2": 1.0,
                "patience": 200,
                "max_epochs": 5000,
                "tolerance": 0.01,
            },
        ),
    ],
)
def test_paper_presets_hold_every_value_of_the_paper(name, changes):
    preset = dataclasses.asdict(mask_preset(name))
    assert set(preset) == set(PAPER) | INERT, "a new mask setting needs its paper value here"
    assert {k: v for k, v in preset.items() if k not in INERT} == {**PAPER, **changes}


def test_paper_size_guard_is_the_float32_spacing_below_one():
    """The smallest non-zero 1 - m that float32 holds; the size term's gradient there is
    still finite, and equals the paper's within 1 % from 1 - m = 1e-5 on."""
    eps = mask_preset("paper").size_epsilon
    one = np.float32(1.0)
    assert eps == float(one - np.nextafter(one, np.float32(0)))
    m = torch.tensor([[1.0, 1.0 - 1e-5, 0.5]], requires_grad=True)
    size_term(m, 0.1, eps).sum().backward()
    assert torch.isfinite(m.grad).all() and m.grad[0, 0] < -1e5
    paper = 0.1 * (1 - m.detach()[0, 1:].double()) ** -0.9
    np.testing.assert_allclose(-m.grad[0, 1:].double(), paper, rtol=0.01)


def test_coarse_area_mask_finds_the_planted_block_and_fools_the_cnn(planted_model):
    model, train, validation = planted_model
    config = MaskConfig(upsample=2, area=0.06, patience=10, reference="constant")
    explainer = MeaningfulPerturbation(model, config)
    masks, result = explainer.attribute(train, 1, validation=validation)
    deletion = 1 - result.raw_masks[0, 0].numpy()
    block = np.zeros(SHAPE, bool)
    block[:3, :3, :3] = True
    assert deletion[block].mean() > 3 * deletion[~block].mean()
    assert explainer.probabilities(validation, 1, masks).mean() < 0.3


def test_a_study_refuses_the_cn_reference_and_its_grid_varies_the_size_term():
    from neuromask.config import ConfigError
    from neuromask.studies.config import GridConfig, study_config_from_mapping

    with pytest.raises(ConfigError, match=r"\[mask\] reference must be 'constant'"):
        study_config_from_mapping(
            {"data": {"synthetic": True}, "mask": {"reference": "cn_mean"}}, "study.toml"
        )
    points = GridConfig().settings(mask_preset("group"))
    assert all(c.area == 0.0 and c.upsample == 1 for _, _, c in points)
    assert all(c.score_normalisation == "none" for _, _, c in points)  # the paper's score
    assert all(c.trace_depth == 0.0 for _, _, c in points)  # nor the defaults' ranking
    grown = GridConfig().settings(mask_preset("group-sufficient"))  # a [mask] that grows
    assert all(c.area == 0.0 and c.larger_areas == () for _, _, c in grown)
    assert len({c.lambda1 for name, _, c in points if name == "lambda1"}) == 4


def test_healthy_reference_restores_only_what_lies_below_a_healthy_session():
    from neuromask.explain.reference import HealthyReference

    sessions = healthy_sessions(3)
    ref = HealthyReference(sessions, torch.device("cpu"))
    images = torch.from_numpy(healthy_sessions(4, seed=9)).unsqueeze(1)
    images[:, :, :3, :3, :3] -= 0.4
    paired = ref.paired(images, [0, 1, 2, 3])
    expected = np.maximum(images.numpy(), sessions[[0, 1, 2, 0]][:, None])
    np.testing.assert_array_equal(paired.numpy(), expected)
    assert (paired >= images).all()
    # the dark block is restored to healthy values, the rest moves by noise at most
    assert paired[:, :, :3, :3, :3].mean() > images[:, :, :3, :3, :3].mean() + 0.3
    drawn = ref.drawn(images, seed=0, epoch=1, batch=2)
    assert torch.equal(drawn, ref.drawn(images, seed=0, epoch=1, batch=2))
    assert not torch.equal(drawn, ref.drawn(images, seed=0, epoch=2, batch=2))


def test_healthy_reference_gives_no_pull_where_the_image_is_healthier(planted_model):
    """d(score)/dm = (X - fill) * df/dx is 0 wherever X >= H: a mask gains nothing by
    deleting tissue that is already as healthy as the reference."""
    from neuromask.explain.objective import score_and_gradient

    model, train, _ = planted_model
    config = MaskConfig(reference="healthy")
    explainer = MeaningfulPerturbation(model, config, reference=healthy_sessions())
    images = train[:2]
    fill = explainer.fill_of(images, step=(0, 0))
    masks = torch.full_like(images, 0.5)
    _, _, grad = score_and_gradient(explainer.model, images, masks, config, 1, fill)
    unchanged = fill == images
    assert unchanged.float().mean() > 0.2
    assert (grad[unchanged] == 0).all() and (grad[~unchanged] != 0).any()


def test_healthy_reference_mask_finds_the_block_and_resumes_to_the_same_mask(
    planted_model, tmp_path
):
    model, train, validation = planted_model
    config = MaskConfig(reference="healthy", area=0.06, max_epochs=6, patience=6, batch_size=4)
    sessions = healthy_sessions()
    straight, result = MeaningfulPerturbation(model, config, reference=sessions).attribute(
        train, 1, validation=validation
    )
    deletion = 1 - result.raw_masks[0, 0].numpy()
    block = np.zeros(SHAPE, bool)
    block[:3, :3, :3] = True
    assert deletion[block].mean() > 3 * deletion[~block].mean()
    resumed = interrupted_and_resumed(
        MeaningfulPerturbation(model, config, reference=sessions), train, validation, tmp_path, 2
    )
    assert torch.equal(straight, resumed)
    # session masks pair image i with session i mod K
    session_masks, _ = MeaningfulPerturbation(
        model,
        dataclasses.replace(mask_preset("session"), reference="healthy", max_epochs=3),
        reference=sessions,
    ).attribute(train[:2], 1, mode="session")
    assert session_masks.shape == (2, 1, *SHAPE)


def test_healthy_reference_is_required_and_checked(planted_model):
    from neuromask.explain.reference import MAX_HEALTHY_SESSIONS, healthy_subset

    model, train, _ = planted_model
    with pytest.raises(ParameterError, match="needs the CN sessions"):
        MeaningfulPerturbation(model, MaskConfig(reference="healthy"))
    with pytest.raises(ParameterError, match="K >= 1"):
        MeaningfulPerturbation(model, MaskConfig(reference="healthy"), reference=np.ones(SHAPE))
    wrong = MeaningfulPerturbation(
        model, MaskConfig(reference="healthy"), reference=np.ones((2, 3, 3, 3))
    )
    with pytest.raises(ParameterError, match="healthy sessions"):
        wrong.attribute(train, 1)
    subjects = [f"sub-{i // 2}" for i in range(2 * (MAX_HEALTHY_SESSIONS + 10))]
    keep = healthy_subset(len(subjects), subjects, seed=0)
    assert len(keep) == MAX_HEALTHY_SESSIONS
    assert len({subjects[i] for i in keep}) == MAX_HEALTHY_SESSIONS
    assert list(healthy_subset(4, ["a", "a", "b", "c"], seed=0)) == [0, 2, 3]


def test_larger_areas_are_checked_and_start_above_area(planted_model):
    """``larger_areas`` must rise strictly inside (0, 1); a group mask tries those above
    ``area`` (none without an area constraint), and session masks ignore them."""
    for ladder in ((0.04, 0.03), (0.04, 0.04), (0.03, 1.0), (0.0, 0.03), (float("nan"),)):
        with pytest.raises(ParameterError, match="larger_areas must be areas in"):
            MaskConfig(larger_areas=ladder)
    with pytest.raises(ParameterError, match="fooled_below must be in"):
        MaskConfig(fooled_below=0.0)
    assert MaskConfig().areas == (0.02, 0.03, 0.04, 0.06)
    assert MaskConfig(area=0.035).areas == (0.035, 0.04, 0.06)
    assert MaskConfig(area=0.06).areas == MaskConfig(area=0.06, larger_areas=()).areas == (0.06,)
    assert mask_preset("voxel", larger_areas=(0.03,)).areas == (0.0,)
    model, train, _ = planted_model
    session = mask_preset("session", max_epochs=2, patience=2, upsample=2, area=0.02)
    alone, _ = MeaningfulPerturbation(model, session).attribute(train[:2], 1, mode="session")
    ladder = dataclasses.replace(session, larger_areas=(0.04, 0.08), fooled_below=1e-9)
    grown, _ = MeaningfulPerturbation(model, ladder).attribute(train[:2], 1, mode="session")
    assert torch.equal(alone, grown)


def test_the_area_grows_until_the_mask_fools_the_cnn_and_resumes(planted_model, tmp_path):
    """Areas are tried in turn, each from the mask found so far, until the masked
    validation P(AD) falls below fooled_below; an interrupted run resumes to the same."""
    model, train, validation = planted_model
    base = MaskConfig(
        area=0.01,
        max_epochs=4,
        patience=4,
        batch_size=4,
        refine_epochs=0,
        score_normalisation="none",
        larger_area_skip_above=0.0,
    )
    sessions = healthy_sessions()
    never = dataclasses.replace(base, larger_areas=(0.03, 0.06), fooled_below=1e-9)
    _, result = MeaningfulPerturbation(model, never, reference=sessions).attribute(
        train, 1, validation=validation
    )
    assert [row["area"] for row in result.areas_tried] == [0.01, 0.03, 0.06]
    assert list(result.history["area"].unique()) == [0.01, 0.03, 0.06]
    assert result.config == never and result.settings()["areas_tried"] == result.areas_tried
    probabilities = [row["p_masked"] for row in result.areas_tried]
    assert probabilities[-1] < probabilities[0]  # the larger area restores more
    # with the P(AD) it reached at 0.03 as the bar, it stops at 0.03, with the same mask
    # as the 0.03 stage of the full ladder (that stage started from the 0.01 mask)
    bar = (probabilities[1] + probabilities[0]) / 2 if probabilities[1] < probabilities[0] else 1
    enough = dataclasses.replace(never, fooled_below=min(bar, 0.999))
    explainer = MeaningfulPerturbation(model, enough, reference=sessions)
    masks, stopped = explainer.attribute(train, 1, validation=validation)
    assert len(stopped.areas_tried) == 2
    assert stopped.areas_tried == result.areas_tried[:2]
    # interrupted in the second area's optimisation (epoch 5 overall), resumed: the same
    resumed = interrupted_and_resumed(explainer, train, validation, tmp_path, 5)
    assert torch.equal(masks, resumed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.area-1.pt", "c.pt"]


def test_group_fast_is_the_defaults_in_bfloat16_with_fewer_epochs():
    """Round 20's preset: round 23's defaults but for four fields (round 24's defaults in
    bfloat16, PyTorch's kernels), and the paper's preset pins the kernels and the
    precision it was measured with."""
    fast = mask_preset("group-fast")
    assert fast == dataclasses.replace(
        mask_preset("group-r23"),
        precision="bfloat16",
        max_epochs=12,
        refine_epochs=6,
        larger_area_epochs=6,
    )
    assert fast == dataclasses.replace(MaskConfig(), precision="bfloat16", convolution="auto")
    assert fast.larger_area_max_epochs == 6 and fast.areas == (0.02, 0.03, 0.04, 0.06)
    paper = mask_preset("paper")
    assert (paper.precision, paper.convolution) == ("float32", "auto")


def test_bfloat16_masks_keep_float32_state_and_follow_the_float32_gradient(planted_model):
    """Mixed precision runs only the CNN in bfloat16: the score, the gradient and the
    masks stay float32, and the gradient points where the float32 one does."""
    from neuromask.explain.objective import score_and_gradient

    model, train, validation = planted_model
    masks = torch.full((1, 1, *SHAPE), 0.9)
    grads = {}
    for precision in ("float32", "bfloat16"):
        config = MaskConfig(precision=precision, reference="constant")
        score, probability, grads[precision] = score_and_gradient(model, train, masks, config, 1)
        assert score.dtype == probability.dtype == grads[precision].dtype == torch.float32
    a, b = grads["float32"].flatten(), grads["bfloat16"].flatten()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99
    config = MaskConfig(
        upsample=2, area=0.06, patience=10, reference="constant", precision="bfloat16"
    )
    explainer = MeaningfulPerturbation(model, config)
    masks, result = explainer.attribute(train, 1, validation=validation)
    assert result.raw_masks.dtype == torch.float32
    deletion = 1 - result.raw_masks[0, 0].numpy()
    block = np.zeros(SHAPE, bool)
    block[:3, :3, :3] = True
    assert deletion[block].mean() > 3 * deletion[~block].mean()
    with pytest.raises(ParameterError, match="precision must be one of float32, bfloat16"):
        MaskConfig(precision="half")


def test_session_area_preset_is_the_group_defaults_coarse_stage():
    """``session-area`` (round 17) is the group defaults' coarse stage, for at most their
    30 epochs: area 2 %, the coarse lattice, the healthy reference; no stage that session
    masks lack. A change of the defaults it was measured with fails here."""
    preset = mask_preset("session-area")
    assert (preset.area, preset.upsample, preset.reference) == (0.02, 2, "healthy")
    assert preset.areas == (0.02,) and not preset.refines
    expected = dataclasses.replace(
        mask_preset("group-r23"), max_epochs=30, larger_areas=(), refine_epochs=0,
        halo_sigma=0.0, trace_depth=0.0,
    )  # fmt: skip
    assert preset == expected
    assert (preset.lambda2, preset.score_normalisation, preset.patience) == (1e-4, "floor", 5)
