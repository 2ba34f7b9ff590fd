"""Mask jobs from folders: a trained model's folder, a CAPS folder, a TSV, an output folder.

``group_mask_job`` (``neuromask mask group``) and ``session_mask_job``
(``neuromask mask session``) select the AD sessions that the CNN classifies correctly,
optimise the masks with :class:`neuromask.explain.MeaningfulPerturbation`, and write
NIfTI masks with the data's affine, tables and every setting. Both resume after an
interruption: the group job from its per-epoch checkpoint, the session job by skipping
the sessions whose mask is already written.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import neuromask
from neuromask.config import to_mapping
from neuromask.explain import MaskConfig, MeaningfulPerturbation, mask_preset
from neuromask.explain.objective import class_score
from neuromask.explain.perturbation import MaskLossNaNError, PerturbationResult, threshold
from neuromask.figures.masks import plot_mask
from neuromask.io.atlas import default_atlas
from neuromask.io.atomic import atomic_path
from neuromask.io.caps import gm_map_path
from neuromask.io.claim import claim_job_dir
from neuromask.io.layout import record_path
from neuromask.io.nifti import save_volume
from neuromask.io.participants import write_tsv
from neuromask.jobs.sidecars import model_description, write_sidecar
from neuromask.jobs.trained_model import AD, MaskInputs, TrainedModel, brain_mask_of
from neuromask.metrics import top_rois
from neuromask.models.inference import batched_logits

#: The record that marks a mask job's output folder.
JOB_RECORD = "mask_job.json"


PathArg = str | os.PathLike[str]


def claim_mask_job(
    kind: str,
    model_dir: PathArg,
    caps: PathArg,
    tsv: PathArg,
    out: Path,
    config: MaskConfig,
    overwrite: bool,
    extra: dict[str, Any] | None = None,
    inputs: tuple[PathArg | None, ...] = (),
    dry_run: bool = False,
) -> None:
    """Claim the output folder for this job: the same job resumes, another is refused.
    Checked (``dry_run``) before the inputs are read, claimed once they are, so that a
    refusal comes at once and a job that cannot start leaves nothing."""
    job = {
        "kind": kind,
        "model_dir": record_path(model_dir, out),
        "caps": record_path(caps, out),
        "tsv": record_path(tsv, out),
        **(extra or {}),
        "mask": to_mapping(config),
        "neuromask_version": neuromask.__version__,
    }
    paths = [model_dir, caps, tsv, *inputs]
    claim_job_dir(out, job, overwrite, JOB_RECORD, inputs=paths, dry_run=dry_run)


def _explainer(
    trained: TrainedModel,
    inputs: MaskInputs,
    config: MaskConfig,
    progress: bool,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MeaningfulPerturbation:
    """The explainer of ``inputs``, with the brain mask of their images and, for
    ``reference = "cn_mean"``, the mean CN map of the model's training sessions, or for
    ``"healthy"`` those sessions themselves."""
    reference = None
    if config.reference == "cn_mean":
        reference = trained.training_cn_reference(cache_dir=cache_dir, progress=progress)
    elif config.reference == "healthy":
        reference = trained.training_cn_sessions(
            config.seed, cache_dir=cache_dir, progress=progress
        )
    return MeaningfulPerturbation(
        trained.model,
        config,
        device=trained.device,
        brain_mask=brain_mask_of(inputs.data.images),
        reference=reference,
        progress=progress,
    )


#: A group mask whose masked validation P(AD) stays at this or above has not fooled its
#: CNN (`mask group` and the demo say so); so for a session mask and its session's P(AD)
#: after masking (`mask session` and the session study say so).
UNFOOLED = 0.5


def unfooled_sessions_message(p_ad_after: pd.Series) -> str | None:
    """What to tell a user whose session masks (their P(AD) after masking) include some
    that did not fool the CNN; None when every mask did."""
    unfooled = int((p_ad_after >= UNFOOLED).sum())
    if not unfooled:
        return None
    return (
        f"{unfooled} of {len(p_ad_after)} session masks did not fool the CNN (P(AD) "
        f"{UNFOOLED} or more after masking; p_ad_after in their index.tsv): their shape "
        "comes from the size and smoothness terms more than from the CNN. The session "
        "preset (voxel-level, mu = 1) fooled every CNN measured; under the area "
        "constraint, larger areas (4 and 6 %) did not fool the demo's weak CNN, which "
        "does not rely on a few regions: restoring its whole synthetic truth to healthy "
        "tissue left P(AD) at 0.81 (docs/mask_levers.md, rounds 17 and 18)."
    )


@dataclass
class GroupMaskOutputs:
    out: Path
    mask: np.ndarray
    history: pd.DataFrame
    n_images: int
    n_validation: int
    validation_p_ad: float
    #: each area tried (``area``, ``p_masked``, ``epochs``) when the mask grew past its first
    areas_tried: list[dict[str, float | int]] = field(default_factory=list)


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
    Writes ``mask.nii.gz`` (values above ``keep_above`` set to 1, but for the fine
    stage's 1 % coarse trace, the halo and the gradient trace, which rank the kept
    voxels), ``mask_raw.nii.gz``,
    ``mask.png`` (1 - m over the GM template), ``top_rois.tsv`` (the five densest AAL2
    ROIs), ``history.tsv``, ``selection.tsv``, ``image_losses.tsv``, ``result.json`` and
    ``mask_job.json``.
    """
    config = config or mask_preset("group")
    out = Path(out)
    trained = TrainedModel.open(model_dir, device, caps=caps)
    if validation_tsv is None:
        validation_tsv = trained.validation_tsv()
    extra = {"validation_tsv": record_path(validation_tsv, out) if validation_tsv else None}
    claim = functools.partial(
        claim_mask_job,
        "group",
        model_dir,
        caps,
        tsv,
        out,
        config,
        overwrite,
        extra,
        inputs=(validation_tsv, validation_caps),
    )
    claim(dry_run=True)
    train = trained.ad_sessions(caps, tsv, cache_dir=cache_dir, progress=progress)
    validation = None
    if validation_tsv is not None:
        validation = trained.ad_sessions(
            validation_caps or caps, validation_tsv, cache_dir=cache_dir, progress=progress
        )
    claim()
    explainer = _explainer(trained, train, config, progress, cache_dir)
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
    outputs = _write_group_outputs(out, explainer, train, validation, result)
    _group_sidecars(out, trained, tsv)
    for done in out.glob("checkpoint*.pt"):  # every stage's: areas, fine stage, floor
        done.unlink(missing_ok=True)
    if failure is not None:
        raise failure
    return outputs


def _group_sidecars(out: Path, trained: TrainedModel, tsv: PathArg) -> None:
    job = json.loads((out / JOB_RECORD).read_text())
    model = model_description(trained.record, trained.folder)
    for name, what in (
        ("mask.nii.gz", "values above keep_above set to 1"),
        ("mask_raw.nii.gz", "as optimised"),
    ):
        write_sidecar(
            out / name,
            f"Group perturbation mask m in [0, 1] ({what}): 1 keeps a voxel, 0 replaces it by "
            "the reference; one mask for the correctly classified AD sessions of the table.",
            [str(Path(tsv).resolve()), str((out / "selection.tsv").resolve())],
            Model=model,
            Job=job,
        )


def _write_group_outputs(
    out: Path,
    explainer: MeaningfulPerturbation,
    train: MaskInputs,
    validation: MaskInputs | None,
    result: PerturbationResult,
) -> GroupMaskOutputs:
    """The mask (thresholded and raw), its figure, its tables and its settings."""
    grid = train.data.grid
    mask = result.masks[0, 0].numpy()
    save_volume(out / "mask.nii.gz", mask, grid)
    save_volume(out / "mask_raw.nii.gz", result.raw_masks[0, 0].numpy(), grid)
    if isinstance(explainer.mu, torch.Tensor):
        save_volume(out / "reference.nii.gz", explainer.mu[0, 0].cpu().numpy(), grid)
    write_tsv(result.history, out / "history.tsv")
    selection = train.selection.assign(used_for="training")
    if validation is not None:
        selection = pd.concat([selection, validation.selection.assign(used_for="validation")])
    write_tsv(selection, out / "selection.tsv")
    write_tsv(image_losses(explainer, train, result.raw_masks), out / "image_losses.tsv")
    val_p = (
        float(np.mean(explainer.probabilities(validation.images, AD, result.masks)))
        if validation
        else float("nan")
    )
    n_validation = len(validation.sessions) if validation else 0
    summary = {
        **result.settings(),
        "n_images": len(train.sessions),
        "n_validation": n_validation,
        "validation_mean_p_ad_masked": val_p,
        "grid": grid.to_dict(),
    }
    write_tsv(top_rois(mask, default_atlas(grid), k=5), out / "top_rois.tsv")
    title = f"Group mask: 1 - m ({len(train.sessions)} AD sessions)"
    plot_mask(mask, grid, out / "mask.png", title=title)
    with atomic_path(out / "result.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return GroupMaskOutputs(
        out, mask, result.history, len(train.sessions), n_validation, val_p, result.areas_tried
    )


def image_losses(
    explainer: MeaningfulPerturbation,
    inputs: MaskInputs,
    mask: torch.Tensor,
    config: MaskConfig | None = None,
) -> pd.DataFrame:
    """Each training image's contribution to the masking loss (its score f under the mask,
    times the score's factor when normalised),
    with its robust z-score (median and MAD over the images), and the images that make
    the loss jump flagged, the paper's second quality-check step: a contribution above
    Tukey's far-out fence, Q3 + 3 IQR. (A robust z-score above 3.5 also flagged clean
    sessions of a confident CNN, whose masked scores cluster within a logit.)

    ``config``: the mask settings (default: the explainer's)."""
    config = config or explainer.config
    scores, probabilities = [], []
    for logits in batched_logits(
        explainer.model, inputs.images, mask, mu=explainer.mu, device=explainer.device
    ):
        scores.append(class_score(logits, AD, config.score, config.margin).cpu())
        probabilities.append(torch.softmax(logits, dim=1)[:, AD].cpu())
    score = torch.cat(scores).numpy() * explainer.score_scale
    median = float(np.median(score))
    mad = float(np.median(np.abs(score - median))) * 1.4826
    z = (score - median) / mad if mad > 0 else np.zeros_like(score)
    return inputs.sessions[["participant_id", "session_id"]].assign(
        loss_contribution=score,
        p_ad_masked=torch.cat(probabilities).numpy(),
        robust_z=z,
        flagged=score > far_out_fence(score),
    )


#: Tukey's factor for "far out" values: Q3 + 3 IQR.
FAR_OUT = 3.0


def far_out_fence(values: np.ndarray, factor: float = FAR_OUT) -> float:
    """Q3 + factor * IQR of the values (Tukey's far-out fence for factor 3)."""
    q1, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 75])
    return float(q3 + factor * (q3 - q1))


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
    trained = TrainedModel.open(model_dir, device, caps=caps)
    claim = functools.partial(
        claim_mask_job, "session", model_dir, caps, tsv, out, config, overwrite
    )
    claim(dry_run=True)
    inputs = trained.ad_sessions(caps, tsv, cache_dir=cache_dir, progress=progress)
    claim()
    explainer = _explainer(trained, inputs, config, progress, cache_dir)
    names = [
        f"{p}_{s}"
        for p, s in zip(
            inputs.sessions["participant_id"], inputs.sessions["session_id"], strict=True
        )
    ]
    records_dir = out / "records"
    records_dir.mkdir(exist_ok=True)
    job = json.loads((out / JOB_RECORD).read_text())
    model = model_description(trained.record, trained.folder)
    todo = [i for i, name in enumerate(names) if not (records_dir / f"{name}.json").is_file()]

    def done(i_todo: int, raw: torch.Tensor, rec: dict[str, Any]) -> None:
        i = todo[i_todo]
        mask = threshold(raw, config.keep_above)
        p_after = float(explainer.probabilities(inputs.images[i : i + 1], AD, mask[None])[0])
        nifti = out / f"{names[i]}_mask.nii.gz"
        save_volume(nifti, mask[0].numpy(), inputs.data.grid)
        p, s = inputs.sessions["participant_id"][i], inputs.sessions["session_id"][i]
        write_sidecar(
            nifti,
            "Session perturbation mask m in [0, 1]: 1 keeps a voxel, 0 replaces it by the "
            "reference.",
            [str(gm_map_path(caps, p, s, trained.record.get("dartel_group")).resolve())],
            Model=model,
            Job=job,
            Optimisation=rec,
            PADBefore=float(inputs.p_ad[i]),
            PADAfter=p_after,
        )
        row = {
            "participant_id": p,
            "session_id": s,
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
