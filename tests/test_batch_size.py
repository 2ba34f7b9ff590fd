"""The automatic session-mask batch: fitted to the free memory from two probe steps, 1 on
the CPU, refused for group masks, and without effect on the masks."""

import dataclasses

import pytest
import torch
from click.testing import CliRunner

from neuromask.errors import ParameterError
from neuromask.explain import MeaningfulPerturbation, mask_preset
from neuromask.explain.batch_size import MAX_AUTO_BATCH, fit_batch_size, session_batch_size


def linear_peak(fixed: float, per_image: float):
    calls = []

    def peak(b: int) -> float:
        calls.append(b)
        return fixed + b * per_image

    return peak, calls


def test_fit_batch_size_from_two_probes():
    peak, calls = linear_peak(fixed=2e9, per_image=1e9)
    # 0.8 * 20 GB = 16 GB: 2 GB fixed + 14 images of 1 GB
    assert fit_batch_size(20e9, peak) == 14
    assert calls == [1, 2]
    assert fit_batch_size(20e9, peak, headroom=1.0) == 18
    assert fit_batch_size(1e9, peak) == 1  # nothing fits: one at a time, never 0
    assert fit_batch_size(1e15, peak) == MAX_AUTO_BATCH
    tiny, _ = linear_peak(fixed=0.0, per_image=0.0)  # a degenerate probe does not divide by 0
    assert fit_batch_size(8.0, tiny, cap=5) == 5


@pytest.mark.parametrize("free", [0.0, -1.0, float("nan"), float("inf")])
def test_fit_batch_size_refuses_bad_memory(free):
    peak, _ = linear_peak(1.0, 1.0)
    with pytest.raises(ParameterError, match="free device memory"):
        fit_batch_size(free, peak)


def test_session_batch_size_on_the_cpu_and_with_probes(planted_model):
    model, train, _ = planted_model
    config = mask_preset("session", batch_size=0, max_epochs=2)
    explainer = MeaningfulPerturbation(model, config)
    assert session_batch_size(explainer, train[:6], 1) == 1  # the CPU: no probe at all
    peak, _ = linear_peak(fixed=1e6, per_image=1e6)
    assert session_batch_size(explainer, train[:6], 1, free_bytes=5e6, peak_of=peak) == 3
    # never more than the images to mask
    assert session_batch_size(explainer, train[:2], 1, free_bytes=1e12, peak_of=peak) == 2


def test_auto_batch_gives_the_one_by_one_masks_and_records_the_batch(planted_model):
    model, train, _ = planted_model
    images = train[:3]
    config = mask_preset("session", max_epochs=5, patience=5, score="probability")
    auto, result = MeaningfulPerturbation(
        model, dataclasses.replace(config, batch_size=0)
    ).attribute(images, 1, mode="session")
    single, _ = MeaningfulPerturbation(model, config).attribute(images, 1, mode="session")
    assert torch.equal(auto, single)  # on the CPU, auto is 1: the very same computation
    assert result.config.batch_size == 1
    assert (result.history["batch_size"] == 1).all()


def test_auto_batch_is_refused_for_group_masks(planted_model):
    model, train, _ = planted_model
    explainer = MeaningfulPerturbation(model, mask_preset("voxel", batch_size=0, max_epochs=1))
    with pytest.raises(ParameterError, match="batch_size = 0.*session masks only"):
        explainer.attribute(train[:2], 1)
    with pytest.raises(ParameterError, match="batch_size must be at least 1, or 0"):
        mask_preset("session", batch_size=-1)


def test_cli_batch_size_accepts_auto_and_names_bad_values():
    from neuromask.cli.mask_commands import BATCH_SIZE

    assert BATCH_SIZE.convert("auto", None, None) == 0
    assert BATCH_SIZE.convert("AUTO", None, None) == 0
    assert BATCH_SIZE.convert("4", None, None) == 4
    from neuromask.cli.main import cli

    result = CliRunner().invoke(
        cli, ["mask", "session", "m", ".", "t.tsv", "o", "--batch-size", "many"]
    )
    assert result.exit_code == 2
    assert "'many' is neither a positive integer nor 'auto'" in result.output
    result = CliRunner().invoke(
        cli, ["mask", "session", "m", ".", "t.tsv", "o", "--batch-size", "0"]
    )
    assert result.exit_code == 2 and "0 is not a positive integer" in result.output
