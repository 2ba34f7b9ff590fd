"""Train ClinicaDL's Conv5_FC3 (or Conv4_FC3) on a CAPS folder and write it as a ClinicaDL
1.x MAPS, for trying neuromask's MAPS support without ClinicaDL installed.

What it writes is what ``clinicadl train classification`` writes for an image-level
t1-volume classifier (``custom`` preprocessing with the gray-matter suffix, min-max
normalisation, classes coded AD = 0 and CN = 1): ``maps.json``,
``split-<k>/best-loss/model.pth.tar`` and ``best-balanced_accuracy/model.pth.tar``
(``{"model": state_dict, "epoch", "name"}``) and ``groups/{train,validation}/split-<k>/
data.tsv``. The network is neuromask's rebuild of ClinicaDL's, whose parameter names and
logits the test suite checks against ClinicaDL's own definition.

Usage::

    python examples/make_clinicadl_maps.py CAPS SPLIT_DIR MAPS [--split 0] [--epochs 30]

SPLIT_DIR is a neuromask split folder or a ``clinicadl tsvtools kfold`` folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuromask.data.dataset import load_gm_maps
from neuromask.models.clinicadl import ClinicaDLCNN
from neuromask.runtime import tune_allocator
from neuromask.train.splits_io import read_split_folder
from neuromask.train.tensors import normalize_images

LABEL_CODE = {"AD": 0, "CN": 1}  # ClinicaDL's codes: the labels in alphabetical order
GM_SUFFIX = "graymatter_space-Ixi549Space_modulated-off_probability.nii.gz"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("caps", type=Path)
    parser.add_argument("split_dir", type=Path)
    parser.add_argument("maps", type=Path)
    parser.add_argument("--split", type=int, default=0)
    parser.add_argument("--architecture", choices=["Conv5_FC3", "Conv4_FC3"], default="Conv5_FC3")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def images_and_labels(caps: Path, table: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_gm_maps(caps, table, progress=False)
    x = normalize_images(np.asarray(data.images), "minmax")  # ClinicaDL's MinMaxNormalization
    y = table["diagnosis"].map(LABEL_CODE).to_numpy(dtype=np.int64)
    return torch.from_numpy(np.array(x, dtype=np.float32)).unsqueeze(1), torch.from_numpy(y)


def balanced_accuracy(true: torch.Tensor, predicted: torch.Tensor) -> float:
    recalls = [
        float((predicted[true == c] == c).float().mean()) for c in (0, 1) if (true == c).any()
    ]
    return float(np.mean(recalls))


def maps_json(args: argparse.Namespace, shape: tuple[int, ...]) -> dict:
    return {
        "architecture": args.architecture,
        "multi_network": False,
        "dropout": 0.5,
        "network_task": "classification",
        "selection_metrics": ["loss", "balanced_accuracy"],
        "label": "diagnosis",
        "label_code": LABEL_CODE,
        "loss": "CrossEntropyLoss",
        "batch_size": args.batch_size,
        "seed": args.seed,
        "normalize": True,
        "size_reduction": False,
        "size_reduction_factor": 2,
        "diagnoses": ["AD", "CN"],
        "baseline": False,
        "multi_cohort": False,
        "optimizer": "Adam",
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "caps_directory": str(args.caps.resolve()),
        "tsv_path": str(args.split_dir.resolve()),
        "preprocessing_dict": {
            "preprocessing": "custom",
            "mode": "image",
            "use_uncropped_image": None,
            "prepare_dl": False,
            "custom_suffix": GM_SUFFIX,
            "file_type": {"pattern": f"*{GM_SUFFIX}", "description": "Custom suffix"},
        },
        "output_size": 2,
        "input_size": [1, *shape],
        "validation": "KFoldSplit",
        "num_networks": 1,
    }


def refuse_to_overwrite(args: argparse.Namespace) -> None:
    """Stop before touching a MAPS that holds this split already, or other settings."""
    if (args.maps / f"split-{args.split}").exists():
        raise SystemExit(f"{args.maps} already holds split {args.split}; choose another MAPS.")
    record = args.maps / "maps.json"
    if record.is_file():
        wanted = maps_json(args, tuple(json.loads(record.read_text()).get("input_size", [1])[1:]))
        if json.loads(record.read_text()) != wanted:
            raise SystemExit(f"{record} holds other settings; choose another MAPS.")


def main() -> None:
    args = parse()
    tune_allocator()  # as the neuromask command does: CPU steps about twice as fast
    refuse_to_overwrite(args)
    torch.manual_seed(args.seed)
    train, validation = read_split_folder(args.split_dir, [args.split]).folds[args.split]
    x, y = images_and_labels(args.caps, train)
    xv, yv = images_and_labels(args.caps, validation)
    net = ClinicaDLCNN(args.architecture, tuple(x.shape[2:]), 2, dropout=0.5)
    optimiser = torch.optim.Adam(net.parameters(), lr=args.learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    best = {"loss": float("inf"), "balanced_accuracy": -1.0}
    generator = torch.Generator().manual_seed(args.seed)
    split_dir = args.maps / f"split-{args.split}"
    for epoch in range(args.epochs):
        net.train()
        for batch in torch.randperm(len(y), generator=generator).split(args.batch_size):
            optimiser.zero_grad()
            loss_fn(net(x[batch]), y[batch]).backward()
            optimiser.step()
        net.eval()
        with torch.no_grad():
            logits = net(xv)
        scores = {
            "loss": float(loss_fn(logits, yv)),
            "balanced_accuracy": balanced_accuracy(yv, logits.argmax(1)),
        }
        print(f"epoch {epoch}: validation loss {scores['loss']:.3f}, "
              f"balanced accuracy {scores['balanced_accuracy']:.3f}")  # fmt: skip
        for metric, value in scores.items():
            better = value < best[metric] if metric == "loss" else value > best[metric]
            if better:
                best[metric] = value
                folder = split_dir / f"best-{metric}"
                folder.mkdir(parents=True, exist_ok=True)
                state = {"model": net.state_dict(), "epoch": epoch, "name": args.architecture}
                torch.save(state, folder / "model.pth.tar")
    args.maps.mkdir(parents=True, exist_ok=True)
    (args.maps / "maps.json").write_text(json.dumps(maps_json(args, tuple(x.shape[2:])), indent=4))
    for group, table in (("train", train), ("validation", validation)):
        folder = args.maps / "groups" / group / f"split-{args.split}"
        folder.mkdir(parents=True, exist_ok=True)
        columns = ["participant_id", "session_id", "cohort", "diagnosis"]
        table.assign(cohort="single")[columns].to_csv(folder / "data.tsv", sep="\t")
    print(f"{args.maps}: best validation loss {best['loss']:.3f}, "
          f"balanced accuracy {best['balanced_accuracy']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
