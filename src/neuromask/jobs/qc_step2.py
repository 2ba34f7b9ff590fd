"""The paper's quality-check step 2 as a procedure (``neuromask mask group-qc``).

Step 1 rejects a GM map by its own values (``neuromask qc``). Some failures pass it: the
paper's example is a map whose eyes were segmented as GM. The paper found it while
training its first group mask, because that image made the loss jump; it removed the
image and trained the mask again. :func:`group_mask_qc_job` does exactly that:

1. the first group mask, as ``neuromask mask group`` makes it, in ``OUT/first/``;
2. every training session whose contribution to the loss under that mask (its score f)
   lies above Tukey's far-out fence, Q3 + ``factor`` IQR over the sessions (factor 3),
   is removed; ``OUT/removed.tsv`` lists them with their contribution and the reason.
   On a confident CNN (tuning cohort t104, 120 subjects per class, 3 mm) with one of 16
   AD sessions given the "block" failure, a first voxel-level mask (preset ``voxel``, 20
   epochs) left the clean sessions' logits between -18.5 and -15.6 and the corrupted
   one at -8.2: the fence (-11.9) took it alone, where a robust z-score above 3.5 would
   also have taken three clean sessions. With preset ``group-mu`` (the same 20 epochs)
   the clean sessions lay between -7.5 and -6.4 and the corrupted one at -2.2, which
   the fence again took alone;
3. when any was removed, the final mask is trained on the other sessions
   (``OUT/sessions.tsv``) in ``OUT/final/``; when none was, the first mask is final.

The masks default to preset ``group-mu`` (mu = 1, 5 %). Under the healthy reference of
the ``group`` default (20 epochs, the same 16 sessions), the mask did not fool the CNN
(masked logits -0.7 to 2.6) and the block session (0.67) did not stand out. The fence
needs a first mask that fools the CNN on the clean sessions, so that the failure is
what is left.

``OUT/qc_step2.json`` names the final mask's folder, the fence and the counts;
``OUT/mask_job.json`` marks the folder as this job's, as ``mask group`` marks its own.
Every stage resumes: rerun the same command after an interruption.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neuromask.errors import ParameterError
from neuromask.explain import MaskConfig, mask_preset
from neuromask.io.atomic import atomic_path
from neuromask.io.participants import read_participants, write_tsv
from neuromask.jobs.masks import FAR_OUT, claim_mask_job, far_out_fence, group_mask_job

PathArg = str | os.PathLike[str]

#: The masks of the procedure (see the module's text).
QC_PRESET = "group-mu"


@dataclass
class QCStep2Outputs:
    out: Path
    removed: pd.DataFrame
    first_sessions: int
    final_sessions: int
    final_dir: Path


def loss_outliers(losses: pd.DataFrame, factor: float = FAR_OUT) -> pd.DataFrame:
    """The rows of an ``image_losses.tsv`` table whose loss contribution lies above
    Q3 + ``factor`` IQR, with the reason for their removal."""
    fence = far_out_fence(losses["loss_contribution"].to_numpy(), factor)
    flagged = losses[losses["loss_contribution"] > fence].reset_index(drop=True)
    reasons = [
        f"loss contribution {c:.4g} under the first mask, above the far-out fence "
        f"{fence:.4g} (Q3 + {factor:g} IQR)"
        for c in flagged["loss_contribution"]
    ]
    return flagged.assign(reason=reasons)


def group_mask_qc_job(
    model_dir: PathArg,
    caps: PathArg,
    tsv: PathArg,
    out: PathArg,
    config: MaskConfig | None = None,
    *,
    factor: float = FAR_OUT,
    validation_tsv: PathArg | None = None,
    validation_caps: PathArg | None = None,
    overwrite: bool = False,
    device: str = "auto",
    cache_dir: PathArg | None = None,
    progress: bool = True,
) -> QCStep2Outputs:
    """A group mask with the paper's quality-check step 2 (see the module's text)."""
    if not factor > 0:
        raise ParameterError(f"the fence's IQR factor must be > 0, got {factor!r}")
    config = config or mask_preset(QC_PRESET)
    out = Path(out)
    claim = functools.partial(
        claim_mask_job,
        "group_qc_step2",
        model_dir,
        caps,
        tsv,
        out,
        config,
        overwrite,
        {"iqr_factor": factor},
        inputs=(validation_tsv, validation_caps),
    )
    claim(dry_run=True)
    sessions = read_participants(tsv)
    claim()

    def mask(folder: str, table: PathArg) -> int:
        """A stage's mask (kept when finished: the claim on OUT vouches for its settings);
        the number of sessions it learnt from."""
        done = out / folder / "result.json"
        if done.is_file() and not (out / folder / "checkpoint.pt").exists():
            return int(json.loads(done.read_text())["n_images"])
        return group_mask_job(
            model_dir,
            caps,
            table,
            out / folder,
            config,
            validation_tsv=validation_tsv,
            validation_caps=validation_caps,
            device=device,
            cache_dir=cache_dir,
            progress=progress,
        ).n_images

    first = mask("first", tsv)
    losses = pd.read_csv(out / "first" / "image_losses.tsv", sep="\t")
    fence = far_out_fence(losses["loss_contribution"].to_numpy(), factor)
    removed = loss_outliers(losses, factor)
    write_tsv(removed, out / "removed.tsv")
    final, final_dir = first, out / "first"
    if len(removed):
        gone = set(zip(removed["participant_id"], removed["session_id"], strict=True))
        keep = [
            (p, s) not in gone
            for p, s in zip(sessions["participant_id"], sessions["session_id"], strict=True)
        ]
        write_tsv(sessions[keep], out / "sessions.tsv")
        final, final_dir = mask("final", out / "sessions.tsv"), out / "final"
    summary = {
        "iqr_factor": factor,
        "fence": fence,
        "first_mask_sessions": first,
        "removed": len(removed),
        "final_mask_sessions": final,
        "final_dir": final_dir.name,
    }
    with atomic_path(out / "qc_step2.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return QCStep2Outputs(out, removed, first, final, final_dir)
