import numpy as np
import pandas as pd
import pytest

from neuromask.errors import GridMismatchError
from neuromask.io.atlas import Atlas
from neuromask.io.grid import Grid
from neuromask.metrics import roi_densities, top_rois


@pytest.fixture
def atlas(odd_grid, rng):
    labels = rng.choice([0, 5, 9, 12, 40], size=odd_grid.shape)
    rois = pd.DataFrame(
        {"roi_value": [5, 9, 12, 40, 77], "roi_name": ["a", "b", "c", "d", "absent"]}
    )
    return Atlas("toy", labels, rois, odd_grid)


def test_densities_against_a_loop(atlas, rng):
    mask = rng.random(atlas.grid.shape)
    got = roi_densities(mask, atlas)
    for value, name in zip(atlas.rois["roi_value"], atlas.rois["roi_name"], strict=True):
        voxels = atlas.labels == value
        if voxels.any():
            assert got[name] == pytest.approx(np.mean(1 - mask[voxels]), abs=1e-12)
        else:
            assert np.isnan(got[name])


def test_top_rois_order_and_grid_check(atlas):
    mask = np.ones(atlas.grid.shape)
    mask[atlas.labels == 12] = 0.0
    mask[atlas.labels == 5] = 0.5
    top = top_rois(mask, atlas, k=3)
    assert top["roi_name"].tolist()[:2] == ["c", "a"]
    assert top["density"].tolist()[:2] == [1.0, 0.5]
    with pytest.raises(GridMismatchError):
        roi_densities(np.ones((2, 2, 2)), atlas)
    assert isinstance(atlas.grid, Grid)


def test_cosine_similarity_against_scipy(atlas, rng):
    from scipy.spatial.distance import cosine

    from neuromask.metrics.similarity import cosine_matrix, roi_vectors

    masks = [rng.random(atlas.grid.shape) for _ in range(3)] + [np.ones(atlas.grid.shape)]
    vectors = roi_vectors(masks, atlas)
    assert vectors.shape == (4, 5) and (vectors[:, 4] == 0).all()  # the absent ROI counts as 0
    sim = cosine_matrix(vectors)
    for i in range(3):
        for j in range(3):
            assert sim[i, j] == pytest.approx(1 - cosine(vectors[i], vectors[j]), abs=1e-12)
    assert (sim[3] == 0).all() and (sim[:, 3] == 0).all()  # an empty mask is similar to nothing
