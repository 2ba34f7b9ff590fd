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
from neuromask.io.participants import write_tsv
from neuromask.models.registry import build_model
from neuromask.progress import Bar
from neuromask.progress import console as _console
from neuromask.train.checkpoint import (
    cpu_state,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from neuromask.train.config import TrainConfig
from neuromask.train.metrics import binary_metrics
from neuromask.train.tensors import resolve_device

MODEL_FORMAT = 1
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
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            idx = torch.as_tensor(indices[start : start + batch_size])
            batch = x[idx].to(device=device, dtype=torch.float32, non_blocking=True)
            with _autocast(device, enabled=False):
                logits = model(batch)
            out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 2), np.float32)


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
    out.mkdir(parents=True, exist_ok=True)
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
    _check_or_write_config(out, meta)
    if (out / DONE).is_file():
        history = pd.read_csv(out / "training.tsv", sep="\t")
        done = json.loads((out / DONE).read_text())
        return RunResult(out, history, int(done["best_epoch"]), done["metrics"], skipped=True)

    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(run_seed)
        model = build_model(config.model, input_shape).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )

    history: list[dict[str, Any]] = []
    start_epoch = 0
    best = {
        "ba": -1.0,
        "ba_epoch": -1,
        "loss": float("inf"),
        "loss_epoch": -1,
        "since_best_loss": 0,
    }
    best_ba_state = best_loss_state = cpu_state(model)
    resumed = False
    if (out / CHECKPOINT).is_file():
        state = load_checkpoint(out / CHECKPOINT)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best = list(state["history"]), dict(state["best"])
        best_ba_state, best_loss_state = state["best_ba_state"], state["best_loss_state"]
        start_epoch = int(state["epoch"]) + 1
        resumed = True

    y_np = y.numpy()
    stopped = best["since_best_loss"] >= config.patience
    for epoch in range(start_epoch, config.max_epochs):
        if stopped:
            break
        tic = time.perf_counter()
        with torch.random.fork_rng(devices=_rng_devices(device)):
            seed = epoch_seed(run_seed, epoch)
            torch.manual_seed(seed)
            order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
            train_stats = _train_epoch(
                model, optimizer, x, y, train_idx[order.numpy()], config, device, epoch, progress
            )
        probs = predict(model, x, val_idx, config.batch_size, device)
        val_true = y_np[val_idx]
        val_loss = float(
            F.nll_loss(
                torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(val_true)
            )
        )
        val_metrics = binary_metrics(val_true, probs.argmax(1))
        row = {
            "epoch": epoch,
            **train_stats,
            "validation_loss": val_loss,
            **{f"validation_{k}": v for k, v in val_metrics.items()},
            "time_s": round(time.perf_counter() - tic, 3),
        }
        history.append(row)
        if progress:
            _console.print(
                f"  validation loss {val_loss:.4f}, balanced accuracy "
                f"{val_metrics['balanced_accuracy']:.3f} ({row['time_s']:.1f} s)"
            )
        ba = val_metrics["balanced_accuracy"]
        if ba > best["ba"] or (ba == best["ba"] and val_loss < best["ba_loss"]):
            best.update(ba=ba, ba_epoch=epoch, ba_loss=val_loss)
            best_ba_state = cpu_state(model)
        if val_loss < best["loss"]:
            best.update(loss=val_loss, loss_epoch=epoch, since_best_loss=0)
            best_loss_state = cpu_state(model)
        else:
            best["since_best_loss"] += 1
        stopped = best["since_best_loss"] >= config.patience
        save_checkpoint(
            {
                "epoch": epoch,
                "model": cpu_state(model),
                "optimizer": optimizer.state_dict(),
                "history": history,
                "best": best,
                "best_ba_state": best_ba_state,
                "best_loss_state": best_loss_state,
            },
            out / CHECKPOINT,
        )
        if after_epoch is not None:
            after_epoch(epoch)

    return _finish(
        out,
        model,
        best_ba_state,
        best_loss_state,
        history,
        best,
        x,
        y_np,
        val_idx,
        val_sessions,
        config,
        device,
        resumed,
    )


def _finish(
    out,
    model,
    best_ba_state,
    best_loss_state,
    history,
    best,
    x,
    y_np,
    val_idx,
    val_sessions,
    config,
    device,
    resumed,
) -> RunResult:
    save_weights(best_ba_state, out / "model.safetensors")
    save_weights(best_loss_state, out / "model_best_loss.safetensors")
    table = pd.DataFrame(history)
    write_tsv(table, out / "training.tsv")
    model.load_state_dict(best_ba_state)
    probs = predict(model, x, val_idx, config.batch_size, device)
    predictions = prediction_table(val_sessions, y_np[val_idx], probs)
    write_tsv(predictions, out / "validation_predictions.tsv")
    metrics = binary_metrics(
        predictions["true_label"], predictions["predicted_label"], predictions["p_ad"]
    )
    done = {
        "best_epoch": int(best["ba_epoch"]),
        "best_loss_epoch": int(best["loss_epoch"]),
        "epochs_run": len(history),
        "metrics": metrics,
    }
    with atomic_path(out / DONE) as tmp:
        tmp.write_text(json.dumps(done, indent=2))
    (out / CHECKPOINT).unlink(missing_ok=True)
    return RunResult(out, table, int(best["ba_epoch"]), metrics, resumed=resumed)


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


def _check_or_write_config(out: Path, meta: dict[str, Any]) -> None:
    path = out / "config.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        keys = ("train", "input_shape", "run_seed", "n_train", "n_validation")
        diffs = [k for k in keys if stored.get(k) != json.loads(json.dumps(meta.get(k)))]
        if diffs:
            raise RunMismatchError(
                f"{out} already holds a run made with other settings (differs in: "
                f"{', '.join(diffs)}). Use another output folder, or remove it."
            )
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
