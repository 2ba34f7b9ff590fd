"""Write a MAPS folder exactly as ClinicaDL 1.x lays it out (maps.json, the best-model
checkpoints, the train and validation groups), for the tests of MAPS loading."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from clinicadl_reference import ARCHITECTURES


def reference_network(architecture, shape, seed=0):
    """ClinicaDL's network (its own definition), with random weights and BatchNorm
    statistics so that a wrong layer order or pooling shows in the logits."""
    torch.manual_seed(seed)
    net = ARCHITECTURES[architecture]([1, *shape], output_size=2, dropout=0.5)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return net.eval()


def maps_parameters(architecture, shape, caps, **overrides):
    """maps.json as ClinicaDL 1.6 writes it for an image-level t1-volume classifier."""
    params = {
        "architecture": architecture,
        "multi_network": False,
        "ssda_network": False,
        "dropout": 0.5,
        "latent_space_size": 128,
        "network_task": "classification",
        "selection_metrics": ["loss", "balanced_accuracy"],
        "label": "diagnosis",
        "label_code": {"AD": 0, "CN": 1},
        "selection_threshold": 0.0,
        "loss": "CrossEntropyLoss",
        "gpu": False,
        "n_proc": 2,
        "batch_size": 8,
        "evaluation_steps": 0,
        "amp": False,
        "seed": 0,
        "deterministic": False,
        "compensation": "memory",
        "transfer_path": False,
        "transfer_selection_metric": "loss",
        "nb_unfrozen_layer": 0,
        "use_extracted_features": False,
        "multi_cohort": False,
        "diagnoses": ["AD", "CN"],
        "baseline": False,
        "valid_longitudinal": False,
        "normalize": True,
        "data_augmentation": False,
        "sampler": "random",
        "size_reduction": False,
        "size_reduction_factor": 2,
        "n_splits": 3,
        "split": [0],
        "optimizer": "Adam",
        "epochs": 20,
        "learning_rate": 1e-4,
        "weight_decay": 1e-4,
        "patience": 0,
        "tolerance": 0.0,
        "accumulation_steps": 1,
        "profiler": False,
        "caps_directory": str(caps),
        "preprocessing_dict": {
            "preprocessing": "custom",
            "mode": "image",
            "use_uncropped_image": None,
            "prepare_dl": False,
            "custom_suffix": "graymatter_space-Ixi549Space_modulated-off_probability.nii.gz",
            "file_type": {
                "pattern": "*graymatter_space-Ixi549Space_modulated-off_probability.nii.gz",
                "description": "Custom suffix",
            },
        },
        "tsv_path": str(Path(caps).parent / "split" / "3_fold"),
        "output_size": 2,
        "input_size": [1, *shape],
        "validation": "KFoldSplit",
        "num_networks": 1,
    }
    params.update(overrides)
    return params


def write_maps(root, net, params, split=0, train=None, validation=None, metrics=("loss",)):
    """A MAPS at ``root`` holding ``net`` as split ``split``'s best model for ``metrics``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "maps.json").write_text(json.dumps(params, indent=4))
    state = {"model": net.state_dict(), "epoch": 7, "name": params.get("architecture")}
    for metric in metrics:
        folder = root / f"split-{split}" / f"best-{metric}"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(state, folder / "model.pth.tar")
    for group, table in (("train", train), ("validation", validation)):
        if table is None:
            continue
        folder = root / "groups" / group / f"split-{split}"
        folder.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(table).assign(cohort="single")
        # ClinicaDL writes the index too (no index=False) in these tables
        frame[["participant_id", "session_id", "cohort", "diagnosis"]].to_csv(
            folder / "data.tsv", sep="\t"
        )
        (folder / "maps.json").write_text(
            json.dumps({"caps_directory": params["caps_directory"], "multi_cohort": False})
        )
    return root
