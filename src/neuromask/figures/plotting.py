"""Matplotlib set-up shared by every figure: a non-interactive backend, atomic PNG output."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Mathtext asks for fonts (STIX, Computer Modern) that a bare machine lacks; matplotlib
# falls back to DejaVu Sans and says so on every figure: 21 lines in one demo's output.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from neuromask.io.atomic import atomic_path  # noqa: E402


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def quiet_stat_map(*args, **kwargs):
    """nilearn's plot_stat_map, without its warning for a map that is empty (such a map
    is drawn as the bare template, which is what it is)."""
    from nilearn import plotting

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="empty mask")
        return plotting.plot_stat_map(*args, **kwargs)
