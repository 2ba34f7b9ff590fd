"""The healthy reference of a perturbation mask: deleted voxels take healthy tissue.

With mu = 1, a deleted voxel becomes pure gray matter, more than any brain holds: a CNN
that learnt "more GM, less AD" is fooled by such hyper-healthy voxels wherever they are,
atrophied or not. The paper's future work (§5) proposes to mask an AD image with the
healthy version of that subject instead. ``reference = "healthy"`` approximates it:

    deleted voxel u  ->  max(X(u), H(u))

where H is a cognitively normal session of the CNN's training set. Where the image holds
less GM than H (atrophy), deletion restores H's value; where it holds as much or more,
deletion changes nothing, so a mask gains nothing by deleting healthy tissue and cannot
create atrophy. Group masks draw H anew for each image of each mini-batch (from a
generator keyed on the seed, the epoch and the batch, so that a resumed run draws the
same), which keeps a mask from fitting one reference's detail; validation, session
masks and reports pair image i with session i mod K, so that their losses are
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neuromask.errors import ParameterError

#: The most CN sessions an explainer holds (one per subject, drawn with the mask's seed):
#: enough to average over, small enough to keep at 1.5 mm (8.5 MB each).
MAX_HEALTHY_SESSIONS = 64


class HealthyReference:
    """max(X, H) for H among ``sessions`` (K, X, Y, Z): CN maps normalised as the model's
    inputs are."""

    def __init__(self, sessions: np.ndarray | torch.Tensor, device: torch.device) -> None:
        maps = torch.as_tensor(
            np.array(sessions, dtype=np.float32)
        )  # a copy: the input may be read-only
        if maps.dim() != 4 or maps.shape[0] == 0:
            raise ParameterError(
                "mask setting reference = 'healthy' needs cognitively normal sessions "
                f"(K, X, Y, Z) with K >= 1, got shape {tuple(maps.shape)}"
            )
        self.sessions = maps.unsqueeze(1).to(device)

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.sessions.shape[2:])

    def __len__(self) -> int:
        return int(self.sessions.shape[0])

    def _fill(self, images: torch.Tensor, which: np.ndarray) -> torch.Tensor:
        healthy = self.sessions[torch.as_tensor(which, dtype=torch.long)].to(images.device)
        return torch.maximum(images, healthy)

    def paired(self, images: torch.Tensor, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """The reference of images ``indices`` (of the set being scored): image i with
        session i mod K."""
        return self._fill(images, np.asarray(indices, dtype=np.int64) % len(self))

    __call__ = paired

    def drawn(self, images: torch.Tensor, seed: int, epoch: int, batch: int) -> torch.Tensor:
        """The reference of a training mini-batch: one session per image, drawn from a
        generator keyed on (seed, epoch, batch)."""
        rng = np.random.default_rng([seed, epoch, batch, 17])
        return self._fill(images, rng.integers(len(self), size=images.shape[0]))


def healthy_subset(n_sessions: int, subjects: Sequence[str], seed: int) -> np.ndarray:
    """Which of ``n_sessions`` CN sessions (their subjects in order) an explainer keeps:
    one per subject, at most :data:`MAX_HEALTHY_SESSIONS`, drawn with ``seed``."""
    if n_sessions != len(subjects):
        raise ParameterError(f"{n_sessions} sessions but {len(subjects)} subject labels")
    first = np.unique(np.asarray(subjects), return_index=True)[1]
    first.sort()
    if len(first) <= MAX_HEALTHY_SESSIONS:
        return first
    rng = np.random.default_rng([seed, 23])
    return np.sort(rng.choice(first, size=MAX_HEALTHY_SESSIONS, replace=False))
