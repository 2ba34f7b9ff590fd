import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from neuromask.models import CNNConfig
from neuromask.train.classification import binary_metrics
from neuromask.train.config import TrainConfig
from neuromask.train.trainer import RunMismatchError, batches_of, train_run

SHAPE = (7, 8, 9)
SMALL = CNNConfig(n_blocks=2, first_filters=2, max_filters=4, sub_blocks=(1, 1), dropout=0.3)


def planted(n=24, seed=0):
    """Noise images; AD images (label 1) have a darker corner block."""
    gen = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2))
    x = gen.normal(0.5, 0.1, (n, *SHAPE)).astype(np.float32)
    x[y == 1, :3, :3, :3] -= 0.4
    sessions = pd.DataFrame(
        {"participant_id": [f"sub-{i}" for i in range(n)], "session_id": ["ses-M000"] * n}
    )
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y), sessions


def config(**kwargs):
    base = dict(
        model=SMALL, learning_rate=3e-3, batch_size=4, max_epochs=4, patience=5, device="cpu"
    )
    return TrainConfig(**{**base, **kwargs})


def test_metrics_agree_with_sklearn():
    gen = np.random.default_rng(3)
    y = gen.integers(0, 2, 50)
    pred = gen.integers(0, 2, 50)
    p = gen.random(50)
    m = binary_metrics(y, pred, p)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["sensitivity"] == pytest.approx(recall_score(y, pred, pos_label=1))
    assert m["specificity"] == pytest.approx(recall_score(y, pred, pos_label=0))
    assert m["accuracy"] == pytest.approx(np.mean(y == pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))


def test_batches_never_leave_a_single_image():
    assert [len(b) for b in batches_of(np.arange(10), 3)] == [3, 3, 4]
    assert [len(b) for b in batches_of(np.arange(1), 3)] == [1]


def test_a_run_learns_and_writes_its_outputs(tmp_path):
    x, y, sessions = planted()
    train_idx, val_idx = np.arange(16), np.arange(16, 24)
    before = torch.get_rng_state()
    result = train_run(
        x,
        y,
        train_idx,
        val_idx,
        sessions.iloc[val_idx],
        config(max_epochs=6, learning_rate=1e-2),
        tmp_path / "run",
        run_seed=1,
        progress=False,
    )
    assert torch.equal(before, torch.get_rng_state())  # the caller's generator is untouched
    assert result.validation["balanced_accuracy"] == 1.0
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert names == {
        "config.json",
        "model.safetensors",
        "model_best_loss.safetensors",
        "training.tsv",
        "validation_predictions.tsv",
        "validation_metrics.json",
    }
    history = pd.read_csv(tmp_path / "run" / "training.tsv", sep="\t")
    for column in (
        "train_loss",
        "validation_loss",
        "train_balanced_accuracy",
        "validation_balanced_accuracy",
        "validation_accuracy",
        "validation_sensitivity",
        "validation_specificity",
        "time_s",
    ):
        assert column in history.columns
    top = history[
        history["validation_balanced_accuracy"] == history["validation_balanced_accuracy"].max()
    ]
    assert result.best_epoch == top.loc[top["validation_loss"].idxmin(), "epoch"]
    predictions = pd.read_csv(tmp_path / "run" / "validation_predictions.tsv", sep="\t")
    assert list(predictions.columns) == [
        "participant_id",
        "session_id",
        "true_label",
        "predicted_label",
        "p_ad",
    ]
    assert predictions["true_label"].tolist() == y[val_idx].tolist()
    assert set(load_file(tmp_path / "run" / "model.safetensors")) >= {
        "features.0.weight",
        "classifier.2.weight",
    }
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["run_seed"] == 1 and record["train"]["learning_rate"] == 1e-2


def test_early_stopping_after_patience_epochs_above_the_best_loss(tmp_path):
    x, y, sessions = planted()
    # A learning rate this large makes the validation loss bounce above its minimum.
    result = train_run(
        x,
        y,
        np.arange(16),
        np.arange(16, 24),
        sessions.iloc[16:],
        config(learning_rate=0.5, max_epochs=40, patience=2),
        tmp_path / "run",
        run_seed=0,
        progress=False,
    )
    losses = result.history["validation_loss"].to_numpy()
    assert len(losses) < 40
    best = int(np.argmin(losses))
    assert len(losses) - 1 - best == 2  # stopped right after two epochs above the minimum
    assert (losses[best + 1 :] >= losses[best]).all()


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    x, y, sessions = planted()
    args = (x, y, np.arange(16), np.arange(16, 24), sessions.iloc[16:], config())
    straight = train_run(*args, tmp_path / "straight", run_seed=7, progress=False)

    def interrupt(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(*args, tmp_path / "resumed", run_seed=7, progress=False, after_epoch=interrupt)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()
    resumed = train_run(*args, tmp_path / "resumed", run_seed=7, progress=False)
    assert resumed.resumed and not (tmp_path / "resumed" / "checkpoint.pt").exists()
    for name in ("model.safetensors", "model_best_loss.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    pd.testing.assert_frame_equal(
        straight.history.drop(columns="time_s"), resumed.history.drop(columns="time_s")
    )
    again = train_run(*args, tmp_path / "resumed", run_seed=7, progress=False)
    assert again.skipped


def test_other_seeds_give_other_runs_and_changed_settings_are_refused(tmp_path):
    x, y, sessions = planted()
    args = (x, y, np.arange(16), np.arange(16, 24), sessions.iloc[16:])
    train_run(*args, config(max_epochs=1), tmp_path / "a", run_seed=1, progress=False)
    train_run(*args, config(max_epochs=1), tmp_path / "b", run_seed=2, progress=False)
    a, b = (
        load_file(tmp_path / "a" / "model.safetensors"),
        load_file(tmp_path / "b" / "model.safetensors"),
    )
    assert not torch.equal(a["features.0.weight"], b["features.0.weight"])
    with pytest.raises(RunMismatchError, match="differs in: train"):
        train_run(
            *args,
            config(max_epochs=1, learning_rate=1e-2),
            tmp_path / "a",
            run_seed=1,
            progress=False,
        )
