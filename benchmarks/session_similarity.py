"""Do a subject's session masks resemble each other more than other subjects' masks?

Usage: python benchmarks/session_similarity.py OUT [--epochs 300] [--patience 50]

Uses the cohort and CNN that `mask_localisation.py OUT` prepared. Trains session masks
(the paper's session settings, with fewer epochs for the CPU) for the correctly
classified AD sessions of the training and validation subjects, then compares the
ROI-based cosine similarity of masks of the same subject (longitudinal, intra-subject)
with that of the baseline masks of different subjects (cross-sectional, inter-subject).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path

import numpy as np

from neuromask.explain import MeaningfulPerturbation, mask_preset
from neuromask.io.atlas import load_aal2
from neuromask.io.participants import session_order
from neuromask.jobs.trained_model import load_ad_sessions
from neuromask.metrics.similarity import cosine_matrix, roi_vectors
from neuromask.train.evaluate import load_trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    model, record = load_trained_model(args.out / "models" / "split-0" / "run-0")
    config = dataclasses.replace(
        mask_preset("session"),
        max_epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
    )
    explainer = MeaningfulPerturbation(model, config)
    inputs = load_ad_sessions(
        model,
        record,
        args.out / "synth" / "caps",
        args.out / "split" / "train_val.tsv",
        progress=False,
    )
    sessions = inputs.sessions
    multi = sessions.groupby("participant_id")["session_id"].transform("size") > 1
    keep = np.flatnonzero(multi.to_numpy())
    tic = time.perf_counter()
    masks, result = explainer.attribute(inputs.images[keep], 1, mode="session")
    elapsed = time.perf_counter() - tic
    chosen = sessions.iloc[keep].reset_index(drop=True)
    atlas = load_aal2(inputs.data.grid)
    sim = cosine_matrix(roi_vectors(masks[:, 0].numpy(), atlas))
    intra = []
    for _, rows in chosen.groupby("participant_id"):
        idx = rows.index.to_numpy()
        intra.append(np.mean([sim[i, j] for i, j in itertools.combinations(idx, 2)]))
    baseline = chosen.assign(order=chosen["session_id"].map(session_order)).sort_values("order")
    first = baseline.groupby("participant_id").head(1).index.to_numpy()
    inter = [sim[i, j] for i, j in itertools.combinations(first, 2)]
    p_before = (
        inputs.selection.set_index(["participant_id", "session_id"])
        .loc[list(zip(chosen["participant_id"], chosen["session_id"], strict=True)), "p_ad"]
        .to_numpy()
    )
    p_after = np.array(
        [
            explainer.probabilities(inputs.images[keep][i : i + 1], 1, masks[i : i + 1])[0]
            for i in range(len(keep))
        ]
    )
    print(
        f"{len(keep)} AD sessions of {chosen['participant_id'].nunique()} subjects, "
        f"{args.epochs} epochs at most, patience {args.patience}, batch {args.batch_size}: {elapsed:.0f} s"
    )
    print(
        f"mean epochs {result.history['epochs'].mean():.0f}; P(AD) before {p_before.mean():.3f}, "
        f"after {p_after.mean():.3f}"
    )
    print(f"intra-subject ROI similarity {np.mean(intra):.3f} (mean over {len(intra)} subjects)")
    print(
        f"inter-subject ROI similarity {np.mean(inter):.3f} (mean over {len(inter)} pairs of baselines)"
    )


if __name__ == "__main__":
    main()
