"""Mask comparison: ROI similarity and prob_CNN against independent computations, and
``neuromask compare``."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from nilearn.maskers import NiftiLabelsMasker
from scipy.spatial.distance import cosine as cosine_distance

from neuromask.cli.main import cli
from neuromask.io.atlas import load_aal2
from neuromask.io.grid import clinica_grid
from neuromask.jobs.compare import compare_masks
from neuromask.metrics.prob_cnn import mean_off_diagonal, prob_cnn_matrix, symmetric_prob_cnn


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def smooth_masks(rng, shape, n):
    """Masks in [0, 1] with blobs of deletion, as optimised masks look."""
    from scipy import ndimage

    masks = []
    for _ in range(n):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
        masks.append(np.clip(1.0 - 4 * np.clip(field, 0, None), 0, 1).astype(np.float32))
    return masks


def test_roi_similarity_matches_nilearn_and_scipy(rng):
    grid = clinica_grid(6.0)
    atlas = load_aal2(grid)
    masks = smooth_masks(rng, grid.shape, 4)
    labels_img = nib.Nifti1Image(atlas.labels.astype(np.int32), grid.affine)
    masker = NiftiLabelsMasker(labels_img, strategy="mean", standardize=None)
    deletion = nib.Nifti1Image(np.stack([1 - m for m in masks], axis=-1), grid.affine)
    signals = masker.fit_transform(deletion)  # (masks, labels present on the grid)
    present = [int(v) for v in masker.labels_ if int(v) != 0]
    assert signals.shape[1] == len(present)
    vectors = np.zeros((len(masks), len(atlas.values)))
    column = {v: i for i, v in enumerate(present)}
    for j, value in enumerate(atlas.values):
        if int(value) in column:
            vectors[:, j] = signals[:, column[int(value)]]
    expected = np.array([[1 - cosine_distance(a, b) for b in vectors] for a in vectors])

    result = compare_masks(masks, ["a", "b", "c", "d"], atlas, k=3)
    np.testing.assert_allclose(result.roi_similarity, expected, atol=1e-6)
    pairs = [expected[i, j] for i in range(4) for j in range(i + 1, 4)]
    assert result.mean_roi_similarity() == pytest.approx(np.mean(pairs), abs=1e-6)
    # Top ROIs: the three largest densities of each mask, in order.
    for i, label in enumerate("abcd"):
        top = result.top_rois[result.top_rois["mask"] == label]
        order = np.argsort(-vectors[i], kind="stable")[:3]
        np.testing.assert_allclose(top["density"], vectors[i][order], atol=1e-6)


def _tiny_cnn(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 3, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool3d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 2),
    ).eval()


def test_prob_cnn_matches_a_hand_computation(rng):
    shape = (9, 10, 8)
    models = [_tiny_cnn(s) for s in range(3)]
    images = [torch.from_numpy(rng.random((n, 1, *shape), dtype=np.float32)) for n in (3, 5, 4)]
    masks = [rng.random(shape).astype(np.float32) for _ in range(3)]
    mu = 0.7
    directed = prob_cnn_matrix(models, images, masks, mu=mu, batch_size=2)
    for a in range(3):
        for b in range(3):
            probabilities = []
            for image in images[a].numpy():
                perturbed = masks[b] * image[0] + (1 - masks[b]) * mu
                with torch.no_grad():
                    logits = models[a](torch.from_numpy(perturbed[None, None])).double().numpy()[0]
                e = np.exp(logits - logits.max())
                probabilities.append(e[1] / e.sum())
            assert directed[a, b] == pytest.approx(np.mean(probabilities), abs=1e-6)
    pair = symmetric_prob_cnn(directed)
    assert pair[0, 2] == pytest.approx((directed[0, 2] + directed[2, 0]) / 2)
    assert mean_off_diagonal(pair) == pytest.approx((pair[0, 1] + pair[0, 2] + pair[1, 2]) / 3)


def _write(path, mask, affine):
    nib.save(nib.Nifti1Image(mask.astype(np.float32), affine), path)
    return path


def test_compare_command(tiny_model, tmp_path, rng):
    grid = clinica_grid(6.0)
    masks = smooth_masks(rng, grid.shape, 2)
    paths = [_write(tmp_path / f"m{i}.nii.gz", m, grid.affine) for i, m in enumerate(masks)]
    out = tmp_path / "cmp"
    code, output = run(
        "compare", *paths, "--models", tiny_model, "--models", tiny_model, "--out", out, "-q"
    )
    assert code == 0, output
    similarity = pd.read_csv(out / "roi_similarity.tsv", sep="\t")
    assert similarity.columns.tolist() == ["mask", str(paths[0]), str(paths[1])]
    assert similarity["mask"].tolist() == [str(p) for p in paths]
    np.testing.assert_allclose(np.diag(similarity.iloc[:, 1:].to_numpy()), 1.0, atol=1e-6)
    prob = pd.read_csv(out / "prob_cnn.tsv", sep="\t").iloc[:, 1:].to_numpy()
    assert prob.shape == (2, 2) and ((prob >= 0) & (prob <= 1)).all()
    np.testing.assert_allclose(prob, prob.T)
    pairs = pd.read_csv(out / "prob_cnn_pairs.tsv", sep="\t")
    assert pairs.loc[0, "prob_cnn"] == pytest.approx(
        (pairs.loc[0, "model_a_on_mask_b"] + pairs.loc[0, "model_b_on_mask_a"]) / 2, abs=1e-6
    )
    tops = pd.read_csv(out / "top_rois.tsv", sep="\t")
    assert len(tops) == 10 and set(tops["mask"]) == {str(p) for p in paths}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_roi_similarity"] == pytest.approx(similarity.iloc[0, 2], abs=1e-6)


def test_compare_errors_name_the_problem(tiny_model, tmp_path, rng):
    grid = clinica_grid(6.0)
    good = _write(tmp_path / "good.nii.gz", smooth_masks(rng, grid.shape, 1)[0], grid.affine)
    las = grid.affine.copy()
    las[0, 0] *= -1
    flipped = _write(tmp_path / "las.nii.gz", smooth_masks(rng, grid.shape, 1)[0], las)
    code, output = run("compare", good, flipped, "--out", tmp_path / "o1")
    assert code == 1 and "las.nii.gz" in output and "affine" in output
    code, output = run("compare", good, good, "--models", tiny_model, "--out", tmp_path / "o2")
    assert code == 2 and "one model folder per mask" in output  # a usage error
    bad = _write(tmp_path / "bad.nii.gz", np.full(grid.shape, 3.0), grid.affine)
    code, output = run("compare", good, bad, "--out", tmp_path / "o3")
    assert code == 1 and "bad.nii.gz is not a mask" in output


def test_prob_cnn_fills_each_models_masks_with_its_own_healthy_reference(rng):
    """With the healthy reference, model a's images are filled with max(X, H_a), H_a from
    model a's CN sessions (image i with session i mod K), as its masks were trained."""
    from neuromask.explain.reference import HealthyReference

    shape = (9, 10, 8)
    models = [_tiny_cnn(s) for s in range(2)]
    images = [torch.from_numpy(rng.random((n, 1, *shape), dtype=np.float32)) for n in (3, 4)]
    masks = [rng.random(shape).astype(np.float32) for _ in range(2)]
    healthy = [rng.random((k, *shape)).astype(np.float32) for k in (2, 3)]
    fills = [HealthyReference(h, torch.device("cpu")) for h in healthy]
    directed = prob_cnn_matrix(models, images, masks, mu=fills, batch_size=3)
    for a in range(2):
        for b in range(2):
            probabilities = []
            for i, image in enumerate(images[a].numpy()):
                fill = np.maximum(image[0], healthy[a][i % len(healthy[a])])
                perturbed = masks[b] * image[0] + (1 - masks[b]) * fill
                with torch.no_grad():
                    logits = models[a](torch.from_numpy(perturbed[None, None])).double().numpy()[0]
                e = np.exp(logits - logits.max())
                probabilities.append(e[1] / e.sum())
            assert directed[a, b] == pytest.approx(np.mean(probabilities), abs=1e-6)
    with pytest.raises(ValueError, match="one fill per model"):
        prob_cnn_matrix(models, images, masks, mu=fills[:1])
