"""One training run: a CNN, a training set, a validation set, a seed.

- Cross-entropy loss, Adam with weight decay, shuffled mini-batches.
- After each epoch the validation set is scored. The selected model is the epoch with
  the highest validation balanced accuracy, ties going to the lower validation loss (on
  small validation sets many epochs reach the same accuracy, and the first of them is
  often barely confident); the model with the lowest validation loss is kept as well.
- Early stopping as in the paper: training stops once the validation loss has stayed
  above its lowest value for ``patience`` consecutive epochs.
- Every epoch ends with a checkpoint. Rerunning the same run resumes from it and ends
  with the same weights as an uninterrupted run (CPU): each epoch's randomness
  (shuffling, dropout) is drawn from a seed derived from (run seed, epoch), inside
  ``torch.random.fork_rng`` so that the caller's global generator is left untouched.
- Train metrics in ``training.tsv`` come from the training pass itself (train mode).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

import neuromask
from neuromask.errors import NeuromaskError
from neuromask.io.atomic import atomic_path
from neuromask.io.claim import claim_output_dir
from neuromask.io.participants import write_tsv
from neuromask.models.inference import class_probabilities
from neuromask.models.registry import build_model
from neuromask.progress import Bar
from neuromask.progress import console as _console
from neuromask.train.checkpoint import (
    cpu_state,
    save_weights,
)
from neuromask.train.classification import binary_metrics
from neuromask.train.config import TrainConfig
from neuromask.train.model_folder import MODEL_FORMAT
from neuromask.train.run_state import RunState, Selection
from neuromask.train.tensors import resolve_device

CHECKPOINT = "checkpoint.pt"
DONE = "validation_metrics.json"


class RunMismatchError(NeuromaskError, ValueError):
    """A run folder holds a run made with other settings."""


@dataclass
class RunResult:
    out: Path
    history: pd.DataFrame
    best_epoch: int
    validation: dict[str, float]
    resumed: bool = False
    skipped: bool = False


def epoch_seed(run_seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([run_seed, epoch]).generate_state(1)[0])


def predict(
    model: torch.nn.Module,
    x: torch.Tensor,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Softmax probabilities (n, classes) of ``x[indices]`` in eval mode."""
    return class_probabilities(
        model, x, indices=np.asarray(indices), batch_size=batch_size, device=device
    )


@dataclass
class RunData:
    """The images and labels of a run, and which of them train and validate."""

    x: torch.Tensor
    y: torch.Tensor
    train_idx: np.ndarray
    val_idx: np.ndarray
    val_sessions: pd.DataFrame

    @property
    def val_true(self) -> np.ndarray:
        return self.y.numpy()[self.val_idx]


def _start(
    config: TrainConfig, input_shape: tuple[int, ...], out: Path, device: torch.device, seed: int
) -> RunState:
    """A new run (the model initialised from ``seed``), or the one checkpointed in ``out``."""
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        model = build_model(config.model, input_shape).to(device)  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    initial = cpu_state(model)
    run = RunState(model, optimizer, Selection(), initial, initial)
    if (out / CHECKPOINT).is_file():
        run.resume(out / CHECKPOINT)
    return run


def _validate(
    run: RunState, data: RunData, config: TrainConfig, device: torch.device
) -> tuple[float, dict[str, float]]:
    """Validation loss and metrics of the model as it is now."""
    probs = predict(run.model, data.x, data.val_idx, config.batch_size, device)
    val_loss = float(
        F.nll_loss(
            torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(data.val_true)
        )
    )
    return val_loss, binary_metrics(data.val_true, probs.argmax(1))


def _epoch(
    run: RunState,
    data: RunData,
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    *,
    run_seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Train one epoch (its randomness keyed on the run seed and epoch), validate, and
    update what is kept; the epoch's history row."""
    tic = time.perf_counter()
    with torch.random.fork_rng(devices=_rng_devices(device)):
        seed = epoch_seed(run_seed, epoch)
        torch.manual_seed(seed)
        order = torch.randperm(len(data.train_idx), generator=torch.Generator().manual_seed(seed))
        train_stats = _train_epoch(
            run.model,
            run.optimizer,
            data.x,
            data.y,
            data.train_idx[order.numpy()],
            config,
            device,
            epoch,
            progress,
        )
    val_loss, val_metrics = _validate(run, data, config, device)
    row = {
        "epoch": epoch,
        **train_stats,
        "validation_loss": val_loss,
        **{f"validation_{k}": v for k, v in val_metrics.items()},
        "time_s": round(time.perf_counter() - tic, 3),
    }
    if progress:
        _console.print(
            f"  validation loss {val_loss:.4f}, balanced accuracy "
            f"{val_metrics['balanced_accuracy']:.3f} ({row['time_s']:.1f} s)"
        )
    best_ba, best_loss = run.selection.update(epoch, val_metrics["balanced_accuracy"], val_loss)
    if best_ba:
        run.best_ba_state = cpu_state(run.model)
    if best_loss:
        run.best_loss_state = cpu_state(run.model)
    return row


def train_run(
    x: torch.Tensor,
    y: torch.Tensor,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    val_sessions: pd.DataFrame,
    config: TrainConfig,
    out: str | Path,
    *,
    run_seed: int,
    record: dict[str, Any] | None = None,
    progress: bool = True,
    after_epoch: Callable[[int], None] | None = None,
) -> RunResult:
    """Train one run into ``out`` (resuming or skipping when ``out`` already holds it).

    ``x`` is (N, 1, X, Y, Z), ``y`` (N,) with 1 = AD; ``train_idx`` and ``val_idx`` index
    them. ``record`` is extra provenance written into ``config.json`` (split, paths).
    ``after_epoch`` is called after each checkpoint (used to test interruption).
    """
    out = Path(out)
    device = resolve_device(config.device)
    input_shape = tuple(int(s) for s in x.shape[2:])
    meta = {
        "format": MODEL_FORMAT,
        "neuromask_version": neuromask.__version__,
        "train": config.to_dict(),
        "input_shape": list(input_shape),
        "run_seed": int(run_seed),
        "labels": {"CN": 0, "AD": 1},
        "n_train": int(len(train_idx)),
        "n_validation": int(len(val_idx)),
        **(record or {}),
    }
    _claim_run_folder(out, meta)
    if (out / DONE).is_file():
        history = pd.read_csv(out / "training.tsv", sep="\t")
        done = json.loads((out / DONE).read_text())
        return RunResult(out, history, int(done["best_epoch"]), done["metrics"], skipped=True)
    data = RunData(x, y, train_idx, val_idx, val_sessions)
    run = _start(config, input_shape, out, device, run_seed)
    for epoch in range(run.start_epoch, config.max_epochs):
        if run.selection.since_best_loss >= config.patience:
            break
        run.history.append(
            _epoch(run, data, config, device, epoch, run_seed=run_seed, progress=progress)
        )
        run.save(out / CHECKPOINT, epoch)
        if after_epoch is not None:
            after_epoch(epoch)
    return _finish(out, run, data, config, device)


def _finish(
    out: Path, run: RunState, data: RunData, config: TrainConfig, device: torch.device
) -> RunResult:
    """Write the selected weights, the history and the validation predictions."""
    save_weights(run.best_ba_state, out / "model.safetensors")
    save_weights(run.best_loss_state, out / "model_best_loss.safetensors")
    table = pd.DataFrame(run.history)
    write_tsv(table, out / "training.tsv")
    run.model.load_state_dict(run.best_ba_state)
    probs = predict(run.model, data.x, data.val_idx, config.batch_size, device)
    predictions = prediction_table(data.val_sessions, data.val_true, probs)
    write_tsv(predictions, out / "validation_predictions.tsv")
    metrics = binary_metrics(
        predictions["true_label"], predictions["predicted_label"], predictions["p_ad"]
    )
    done = {
        "best_epoch": int(run.selection.ba_epoch),
        "best_loss_epoch": int(run.selection.loss_epoch),
        "epochs_run": len(run.history),
        "metrics": metrics,
    }
    with atomic_path(out / DONE) as tmp:
        tmp.write_text(json.dumps(done, indent=2))
    (out / CHECKPOINT).unlink(missing_ok=True)
    return RunResult(out, table, int(run.selection.ba_epoch), metrics, resumed=run.resumed)


def prediction_table(sessions: pd.DataFrame, true: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """participant, session, true label, predicted label and P(AD) per session."""
    return pd.DataFrame(
        {
            "participant_id": sessions["participant_id"].to_numpy(),
            "session_id": sessions["session_id"].to_numpy(),
            "true_label": np.asarray(true, dtype=int),
            "predicted_label": probs.argmax(1).astype(int),
            "p_ad": probs[:, 1].astype(float),
        }
    )


def batches_of(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch of one image joins the one before,
    since BatchNorm cannot train on a single image once the grid is down to one voxel.

    >>> [len(b) for b in batches_of(np.arange(9), 4)]
    [4, 5]
    """
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def _train_epoch(
    model, optimizer, x, y, order, config, device, epoch, progress
) -> dict[str, float]:
    model.train()
    batches = batches_of(order, config.batch_size)
    total_loss, predictions, truths = 0.0, [], []
    use_amp = config.amp and device.type == "cuda"
    with Bar(len(batches), f"epoch {epoch + 1}/{config.max_epochs}", enabled=progress) as bar:
        for indices in batches:
            idx = torch.as_tensor(indices)
            batch = x[idx].to(device=device, dtype=torch.float32, non_blocking=True)
            target = y[idx].to(device)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, enabled=use_amp):
                logits = model(batch)
            loss = F.cross_entropy(logits.float(), target)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            predictions.append(logits.argmax(1).cpu())
            truths.append(target.cpu())
            bar.advance(1, f"loss {total_loss / sum(len(t) for t in truths):.4f}")
    metrics = binary_metrics(torch.cat(truths).numpy(), torch.cat(predictions).numpy())
    return {"train_loss": total_loss / len(order), **{f"train_{k}": v for k, v in metrics.items()}}


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda"
    )


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def _claim_run_folder(out: Path, meta: dict[str, Any]) -> None:
    """The run folder holds this run (resume), is new, or holds another run (refused)."""
    keys = ("train", "input_shape", "run_seed", "n_train", "n_validation")

    def differs(path: Path) -> list[str]:
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            return ["config.json, which is not valid JSON"]
        if not isinstance(stored, dict):
            return ["config.json, which is not a JSON object"]
        return [k for k in keys if stored.get(k) != json.loads(json.dumps(meta.get(k)))]

    def mismatch(folder: Path) -> RunMismatchError:
        return RunMismatchError(
            f"{folder} already holds a run made with other settings (differs in: "
            f"{', '.join(differs(folder / 'config.json'))}). Use another output folder, or "
            "remove it."
        )

    claim_output_dir(
        out,
        "config.json",
        json.dumps(meta, indent=2),
        same=lambda path: not differs(path),
        allow_unmarked=True,
        mismatch=mismatch,
    )
