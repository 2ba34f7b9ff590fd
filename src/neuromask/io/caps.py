"""Paths of Clinica CAPS t1-volume gray-matter maps."""

from __future__ import annotations

import os
from pathlib import Path

GM_SUFFIX_SEGMENTATION = "T1w_segm-graymatter_space-Ixi549Space_modulated-off_probability.nii.gz"
GM_SUFFIX_DARTEL = "T1w_segm-graymatter_space-Ixi549Space_modulated-on_probability.nii.gz"


def gm_map_path(
    caps: str | os.PathLike[str],
    participant_id: str,
    session_id: str,
    dartel_group: str | None = None,
) -> Path:
    """Path of one session's GM probability map in a CAPS folder.

    Without ``dartel_group``: the t1-volume segmentation in Ixi549Space, modulation off.
    With it: the DARTEL-registered map of that group, modulation on.

    >>> gm_map_path("caps", "sub-01", "ses-M000").name
    'sub-01_ses-M000_T1w_segm-graymatter_space-Ixi549Space_modulated-off_probability.nii.gz'
    """
    session_dir = Path(caps) / "subjects" / participant_id / session_id / "t1" / "spm"
    prefix = f"{participant_id}_{session_id}_"
    if dartel_group is None:
        return session_dir / "segmentation" / "normalized_space" / (prefix + GM_SUFFIX_SEGMENTATION)
    group = dartel_group if dartel_group.startswith("group-") else f"group-{dartel_group}"
    return session_dir / "dartel" / group / (prefix + GM_SUFFIX_DARTEL)
