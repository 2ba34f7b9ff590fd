"""Mask jobs from folders: a trained model's folder, a CAPS folder, a TSV, an output folder.

``group_mask_job`` (``neuromask mask group``) and ``session_mask_job``
(``neuromask mask session``) select the AD sessions that the CNN classifies correctly,
optimise the masks with :class:`neuromask.explain.MeaningfulPerturbation`, and write
NIfTI masks with the data's affine, tables and every setting. Both resume after an
interruption: the group job from its per-epoch checkpoint, the session job by skipping
the sessions whose mask is already written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

import neuromask
from neuromask.config import to_mapping
from neuromask.data.dataset import GMDataset, load_gm_maps
from neuromask.errors import NeuromaskError, ParameterError
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.perturbation import MaskLossNaNError
from neuromask.io.atlas import load_aal2
from neuromask.io.atomic import atomic_path, claim_job_dir
from neuromask.io.nifti import save_volume
from neuromask.io.participants import read_participants, write_tsv
from neuromask.metrics import top_rois
from neuromask.report.mask_figure import plot_mask
from neuromask.train.evaluate import load_trained_model, model_grid
from neuromask.train.tensors import image_tensor, normalize_images, resolve_device

AD = 1


class NoSessionToMaskError(NeuromaskError, ValueError):
    """No AD session of the table is classified correctly by the CNN."""


@dataclass
class MaskInputs:
    """The images of the correctly classified AD sessions, ready for the explainer."""

    images: torch.Tensor
    sessions: pd.DataFrame
    selection: pd.DataFrame
    data: GMDataset
    #: P(AD) of each kept session before masking.
    p_ad: np.ndarray


def brain_mask_of(images: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Voxels where the mean image exceeds ``threshold``, dilated by one voxel."""
    mean = np.asarray(images, dtype=np.float32).mean(axis=0)
    return ndimage.binary_dilation(mean > threshold, iterations=1)


def load_ad_sessions(
    model: torch.nn.Module,
    record: dict[str, Any],
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    explainer: MeaningfulPerturbation,
    *,
    cache_dir=None,
    progress: bool = True,
) -> MaskInputs:
    """The AD sessions of ``tsv`` that the model classifies correctly (P(AD) >= 0.5)."""
    sessions = read_participants(tsv)
    ad = sessions[sessions["diagnosis"] == "AD"].reset_index(drop=True)
    if ad.empty:
        raise NoSessionToMaskError(f"{tsv} holds no AD session to mask.")
    data = load_gm_maps(
        caps, ad, dartel_group=record.get("dartel_group"), cache_dir=cache_dir, progress=progress
    )
    grid = model_grid(record)
    if grid is not None:
        grid.require_match(data.grid, what=f"The data of {tsv}", reference="the model's grid")
    images = image_tensor(
        normalize_images(np.asarray(data.images), record["train"]["normalization"])
    )
    p_ad = explainer.probabilities(images, AD)
    selection = ad[["participant_id", "session_id"]].assign(p_ad=p_ad, correct=p_ad >= 0.5)
    keep = np.flatnonzero(p_ad >= 0.5)
    if keep.size == 0:
        raise NoSessionToMaskError(
            f"None of the {len(ad)} AD sessions of {tsv} is classified as AD by the model "
            "(P(AD) >= 0.5); there is nothing to mask."
        )
    return MaskInputs(
        images[keep], ad.iloc[keep].reset_index(drop=True), selection, data, p_ad[keep]
    )


def training_data(record: dict[str, Any], model_dir) -> tuple[Path, Path, int]:
    """The CAPS folder, split folder and split a model was trained on (its record)."""
    if "split_dir" not in record or "caps" not in record:
        raise ParameterError(
            f"{model_dir}/config.json does not name the split and CAPS folder it was trained on"
        )
    return Path(record["caps"]), Path(record["split_dir"]), int(record.get("split", 0))


def validation_ad_sessions(
    model_dir, device: str = "auto", *, cache_dir=None, progress: bool = True
) -> tuple[torch.nn.Module, dict[str, Any], MaskInputs, Path]:
    """A trained model (on ``device``), its record, the correctly classified AD sessions
    of its split's validation set, and that validation TSV."""
    model, record = load_trained_model(model_dir)
    caps, split_dir, split = training_data(record, model_dir)
    tsv = split_dir / f"split-{split}" / "validation.tsv"
    explainer = MeaningfulPerturbation(model, device=resolve_device(device))
    inputs = load_ad_sessions(
        explainer.model, record, caps, tsv, explainer, cache_dir=cache_dir, progress=progress
    )
    return explainer.model, record, inputs, tsv


def _prepare_out(out: Path, job: dict[str, Any], overwrite: bool) -> None:
    """An output folder holds one job: the same job resumes, another is refused."""
    claim_job_dir(out, job, overwrite, "mask_job.json")


def _start_job(
    kind: str,
    model: torch.nn.Module,
    record: dict[str, Any],
    model_dir,
    caps,
    tsv,
    out: Path,
    config: MaskConfig,
    *,
    overwrite: bool,
    device: str,
    cache_dir,
    progress: bool,
    extra: dict[str, Any] | None = None,
) -> tuple[MeaningfulPerturbation, MaskInputs]:
    """Claim the output folder for this job, then load the AD sessions to mask and the
    brain mask of their images."""
    job = {
        "kind": kind,
        "model_dir": str(model_dir),
        "caps": str(caps),
        "tsv": str(tsv),
        **(extra or {}),
        "mask": to_mapping(config),
        "neuromask_version": neuromask.__version__,
    }
    _prepare_out(out, job, overwrite)
    dev = resolve_device(device)
    explainer = MeaningfulPerturbation(model, config, device=dev, progress=progress)
    inputs = load_ad_sessions(
        model, record, caps, tsv, explainer, cache_dir=cache_dir, progress=progress
    )
    explainer.brain = torch.as_tensor(brain_mask_of(inputs.data.images), device=dev)
    return explainer, inputs


@dataclass
class GroupMaskOutputs:
    out: Path
    mask: np.ndarray
    history: pd.DataFrame
    n_images: int
    n_validation: int
    validation_p_ad: float


def group_mask_job(
    model_dir: str | os.PathLike[str],
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: MaskConfig | None = None,
    *,
    validation_tsv: str | os.PathLike[str] | None = None,
    validation_caps: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> GroupMaskOutputs:
    """One mask for the correctly classified AD sessions of ``tsv``.

    Without ``validation_tsv``, the validation set of the split the model was trained on
    is used (``SPLIT_DIR/split-<k>/validation.tsv`` from the model's record).
    Writes ``mask.nii.gz`` (values above ``keep_above`` set to 1), ``mask_raw.nii.gz``,
    ``mask.png`` (1 - m over the GM template), ``top_rois.tsv`` (the five densest AAL2
    ROIs), ``history.tsv``, ``selection.tsv``, ``image_losses.tsv``, ``result.json`` and
    ``mask_job.json``.
    """
    config = config or mask_preset("group")
    out = Path(out)
    model, record = load_trained_model(model_dir)
    if validation_tsv is None and "split_dir" in record and "split" in record:
        validation_tsv = Path(record["split_dir"]) / f"split-{record['split']}" / "validation.tsv"
    explainer, train = _start_job(
        "group",
        model,
        record,
        model_dir,
        caps,
        tsv,
        out,
        config,
        overwrite=overwrite,
        device=device,
        cache_dir=cache_dir,
        progress=progress,
        extra={"validation_tsv": str(validation_tsv) if validation_tsv else None},
    )
    validation = None
    if validation_tsv is not None:
        validation = load_ad_sessions(
            model,
            record,
            validation_caps or caps,
            validation_tsv,
            explainer,
            cache_dir=cache_dir,
            progress=progress,
        )
    try:
        _, result = explainer.attribute(
            train.images,
            AD,
            mode="group",
            validation=validation.images if validation else None,
            checkpoint=out / "checkpoint.pt",
        )
        failure = None
    except MaskLossNaNError as exc:
        result, failure = exc.result, exc
    grid = train.data.grid
    mask = result.masks[0, 0].numpy()
    save_volume(out / "mask.nii.gz", mask, grid)
    save_volume(out / "mask_raw.nii.gz", result.raw_masks[0, 0].numpy(), grid)
    write_tsv(result.history, out / "history.tsv")
    selection = train.selection.assign(used_for="training")
    if validation is not None:
        selection = pd.concat([selection, validation.selection.assign(used_for="validation")])
    write_tsv(selection, out / "selection.tsv")
    write_tsv(image_losses(explainer, train, result.raw_masks, config), out / "image_losses.tsv")
    val_p = (
        float(np.mean(explainer.probabilities(validation.images, AD, result.masks)))
        if validation
        else float("nan")
    )
    summary = {
        **result.settings(),
        "n_images": len(train.sessions),
        "n_validation": len(validation.sessions) if validation else 0,
        "validation_mean_p_ad_masked": val_p,
        "grid": grid.to_dict(),
    }
    write_tsv(top_rois(mask, load_aal2(grid), k=5), out / "top_rois.tsv")
    plot_mask(
        mask, grid, out / "mask.png", title=f"Group mask: 1 - m ({len(train.sessions)} AD sessions)"
    )
    with atomic_path(out / "result.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    (out / "checkpoint.pt").unlink(missing_ok=True)
    if failure is not None:
        raise failure
    return GroupMaskOutputs(
        out,
        mask,
        result.history,
        len(train.sessions),
        len(validation.sessions) if validation else 0,
        val_p,
    )


def image_losses(
    explainer: MeaningfulPerturbation, inputs: MaskInputs, mask: torch.Tensor, config: MaskConfig
) -> pd.DataFrame:
    """Each training image's contribution to the masking loss (its score f under the mask),
    with the images that make the loss jump flagged: a robust z-score above 3.5 (median
    and MAD over the images), the paper's second quality-check step."""
    from neuromask.explain.objective import loss_terms

    scores, probabilities = [], []
    with torch.no_grad():
        for start in range(0, inputs.images.shape[0], 8):
            batch = inputs.images[start : start + 8].to(explainer.device, torch.float32)
            terms = loss_terms(explainer.model, batch, mask.to(explainer.device), config, AD)
            scores.append(terms["score"].cpu())
            probabilities.append(terms["probability"].cpu())
    score = torch.cat(scores).numpy()
    median = float(np.median(score))
    mad = float(np.median(np.abs(score - median))) * 1.4826
    z = (score - median) / mad if mad > 0 else np.zeros_like(score)
    return inputs.sessions[["participant_id", "session_id"]].assign(
        loss_contribution=score,
        p_ad_masked=torch.cat(probabilities).numpy(),
        robust_z=z,
        flagged=z > 3.5,
    )


@dataclass
class SessionMaskOutputs:
    out: Path
    index: pd.DataFrame
    skipped: int


def session_mask_job(
    model_dir: str | os.PathLike[str],
    caps: str | os.PathLike[str],
    tsv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: MaskConfig | None = None,
    *,
    overwrite: bool = False,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> SessionMaskOutputs:
    """One mask per correctly classified AD session of ``tsv``:
    ``OUT/sub-<P>_ses-<S>_mask.nii.gz`` and ``OUT/index.tsv``. Sessions whose mask is
    already written are skipped, so an interrupted job resumes."""
    config = config or mask_preset("session")
    out = Path(out)
    model, record = load_trained_model(model_dir)
    explainer, inputs = _start_job(
        "session",
        model,
        record,
        model_dir,
        caps,
        tsv,
        out,
        config,
        overwrite=overwrite,
        device=device,
        cache_dir=cache_dir,
        progress=progress,
    )
    grid = inputs.data.grid
    names = [
        f"{p}_{s}"
        for p, s in zip(
            inputs.sessions["participant_id"], inputs.sessions["session_id"], strict=True
        )
    ]
    records_dir = out / "records"
    records_dir.mkdir(exist_ok=True)
    todo = [i for i, name in enumerate(names) if not (records_dir / f"{name}.json").is_file()]

    def done(i_todo: int, raw: torch.Tensor, rec: dict[str, Any]) -> None:
        i = todo[i_todo]
        mask = torch.where(raw > config.keep_above, torch.ones_like(raw), raw)
        p_after = float(explainer.probabilities(inputs.images[i : i + 1], AD, mask[None])[0])
        save_volume(out / f"{names[i]}_mask.nii.gz", mask[0].numpy(), grid)
        row = {
            "participant_id": inputs.sessions["participant_id"][i],
            "session_id": inputs.sessions["session_id"][i],
            **rec,
            "p_ad_before": float(inputs.p_ad[i]),
            "p_ad_after": p_after,
            "mask_file": f"{names[i]}_mask.nii.gz",
        }
        with atomic_path(records_dir / f"{names[i]}.json") as tmp:
            tmp.write_text(json.dumps(row))

    if todo:
        explainer.attribute(inputs.images[todo], AD, mode="session", on_mask_done=done)
    rows = [json.loads((records_dir / f"{name}.json").read_text()) for name in names]
    index = pd.DataFrame(rows)
    write_tsv(index, out / "index.tsv")
    write_tsv(inputs.selection, out / "selection.tsv")
    return SessionMaskOutputs(out, index, len(names) - len(todo))
