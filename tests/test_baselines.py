"""The baseline attribution methods through Captum, on the tiny trained CNN."""

import numpy as np
import pytest
import torch

from neuromask.errors import ParameterError
from neuromask.explain.baselines import METHODS, attribute, last_conv_layer, measure
from neuromask.io.atlas import load_aal2
from neuromask.io.grid import clinica_grid
from neuromask.train.evaluate import load_trained_model

pytest.importorskip("captum")


@pytest.fixture(scope="module")
def setup(tiny_model):
    model, _ = load_trained_model(tiny_model)
    grid = clinica_grid(6.0)
    images = torch.rand(3, 1, *grid.shape, generator=torch.Generator().manual_seed(0))
    return model, images, load_aal2(grid)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_one_finite_map_per_image(setup, method):
    model, images, atlas = setup
    maps = attribute(method, model, images, atlas_labels=atlas.labels, window=8, n_steps=4)
    assert maps.shape == images.shape and torch.isfinite(maps).all()
    assert maps.abs().sum() > 0
    if method in ("saliency", "grad_cam"):
        assert (maps >= 0).all()


def test_roi_ablation_spreads_each_rois_drop_over_its_voxels(setup):
    model, images, atlas = setup
    maps = attribute("roi_ablation", model, images[:1], atlas_labels=atlas.labels)[0, 0].numpy()
    labels = atlas.labels
    assert (maps[labels == 0] == 0).all()
    value = int(atlas.values[0])
    inside = maps[labels == value]
    np.testing.assert_allclose(inside, inside[0])
    # The ROI's total equals the drop in score when the ROI alone is set to mu = 1.
    x = images[:1].clone()
    with torch.no_grad():
        base = model(x)[0, 1]
        x[0, 0, torch.as_tensor(labels == value)] = 1.0
        drop = base - model(x)[0, 1]
    assert inside.sum() == pytest.approx(float(drop), rel=1e-4, abs=1e-5)


def test_grad_cam_reads_the_activation_after_the_last_convolution(setup):
    model, _, _ = setup
    layer = last_conv_layer(model)
    convs = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv3d)]
    assert layer is model.features[convs[-1] + 2]


def test_measure_reports_time_and_memory():
    result, cost = measure(lambda: torch.ones(2_000_000).sum())
    assert float(result) == 2_000_000 and cost.seconds >= 0
    assert cost.peak_memory_mb >= 0 or np.isnan(cost.peak_memory_mb)


@pytest.mark.parametrize("method", METHODS)
def test_no_forward_pass_holds_more_than_batch_size_images(setup, method):
    """Captum puts ``perturbations_per_eval`` copies of every image it is given in one
    pass; the perturbing methods therefore get one image at a time, and their maps are
    those of each image on its own."""
    model, images, atlas = setup
    sizes = []
    hook = model.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    try:
        kwargs = {"atlas_labels": atlas.labels, "window": 8, "n_steps": 4, "batch_size": 2}
        maps = attribute(method, model, images, **kwargs)
    finally:
        hook.remove()
    assert sizes and max(sizes) <= 2
    alone = torch.cat([attribute(method, model, images[i : i + 1], **kwargs) for i in range(3)])
    torch.testing.assert_close(maps, alone, rtol=1e-4, atol=1e-6)


def test_a_batch_size_below_one_is_refused(setup):
    model, images, _ = setup
    with pytest.raises(ParameterError, match="batch_size"):
        attribute("saliency", model, images, batch_size=0)


def test_a_reference_replaces_mu_where_the_methods_remove(setup):
    """ROI ablation with a reference: each ROI's total is the drop when that ROI alone
    takes the reference's values (not mu's); occlusion and integrated gradients with the
    image itself as its reference remove nothing, so their maps are zero (up to rounding)."""
    model, images, atlas = setup
    x = images[:1]
    reference = torch.maximum(x, torch.rand(x.shape, generator=torch.Generator().manual_seed(1)))
    maps = attribute("roi_ablation", model, x, reference=reference, atlas_labels=atlas.labels)
    value = int(atlas.values[0])
    where = torch.as_tensor(atlas.labels == value)
    with torch.no_grad():
        base = model(x)[0, 1]
        swapped = torch.where(where, reference, x)
        drop = base - model(swapped)[0, 1]
    total = maps[0, 0].numpy()[atlas.labels == value].sum()
    assert total == pytest.approx(float(drop), rel=1e-4, abs=1e-5)
    with_mu = attribute("roi_ablation", model, x, atlas_labels=atlas.labels)
    assert not torch.allclose(maps, with_mu)
    for method in ("occlusion", "integrated_gradients"):
        same = attribute(method, model, images, reference=images.clone(), window=8, n_steps=4)
        # zero up to the rounding of batched passes (a score differs by ~1e-7)
        assert same.abs().max() < 1e-5, method
        assert attribute(method, model, images, window=8, n_steps=4).abs().max() > 1e-3


def test_a_reference_is_refused_where_it_cannot_apply(setup):
    model, images, atlas = setup
    with pytest.raises(ParameterError, match="saliency takes no reference"):
        attribute("saliency", model, images, reference=images)
    with pytest.raises(ParameterError, match=r"reference shape \(1, 1"):
        attribute("occlusion", model, images, reference=images[:1])
