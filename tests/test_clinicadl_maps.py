"""A ClinicaDL MAPS read as a neuromask model: the same logits as ClinicaDL's own
networks, and one-line errors for what neuromask cannot explain."""

from __future__ import annotations

import collections
import json

import pytest
import torch

from clinicadl_maps import maps_parameters, reference_network, write_maps
from neuromask.errors import MissingFileError, NeuromaskError, ParameterError
from neuromask.models.clinicadl import ClinicaDLCNN, PadMaxPool3d
from neuromask.models.maps import ClinicaDLCheckpointError, UnsupportedModelError
from neuromask.train.model_folder import load_model, model_folder

ODD_GRIDS = [(13, 17, 11), (33, 30, 35)]


def _maps(tmp_path, architecture="Conv5_FC3", shape=(13, 17, 11), seed=0, **overrides):
    net = reference_network(architecture, shape, seed)
    params = maps_parameters(architecture, shape, tmp_path / "caps", **overrides)
    return write_maps(tmp_path / "maps", net, params, metrics=("loss", "balanced_accuracy")), net


def _check_logits(tmp_path, architecture, shape, label_code=None):
    extra = {"label_code": label_code} if label_code else {}
    root, reference = _maps(tmp_path, architecture, shape, **extra)
    model, record = load_model(root, split=0, selection_metric="balanced_accuracy")
    x = torch.rand(3, 1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        got = model(x)
    code = label_code or {"AD": 0, "CN": 1}
    # neuromask's column 0 is CN and column 1 is AD, whatever ClinicaDL's codes are
    torch.testing.assert_close(got[:, 1], expected[:, code["AD"]], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[:, 0], expected[:, code["CN"]], atol=1e-5, rtol=0)
    assert record["input_shape"] == list(shape)
    assert record["source"] == "clinicadl" and record["split"] == 0
    assert record["selection_metric"] == "balanced_accuracy"
    return record


@pytest.mark.parametrize("architecture", ["Conv5_FC3", "Conv4_FC3"])
@pytest.mark.parametrize("shape", ODD_GRIDS)
def test_maps_logits_match_clinicadl(tmp_path, architecture, shape):
    _check_logits(tmp_path, architecture, shape)


def test_label_code_in_the_other_order_keeps_ad_in_column_one(tmp_path):
    _check_logits(tmp_path, "Conv5_FC3", (13, 17, 11), label_code={"AD": 1, "CN": 0})


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["Conv5_FC3", "Conv4_FC3"])
def test_maps_logits_match_clinicadl_on_the_clinica_grid(tmp_path, architecture):
    record = _check_logits(tmp_path, architecture, (121, 145, 121))
    assert record["train"]["normalization"] == "minmax"


def test_pooling_pads_before_the_first_voxel():
    """ClinicaDL's pooling of an odd axis is not MaxPool3d(ceil_mode=True): the zero pad
    comes first, so the first output takes voxel 0 alone."""
    x = torch.tensor([1.0, 5.0, 2.0, 0.0, 3.0]).reshape(1, 1, 5, 1, 1)
    out = PadMaxPool3d(2, 2)(x).flatten().tolist()
    assert out == [1.0, 5.0, 3.0]
    ceil = torch.nn.MaxPool3d(2, 2, ceil_mode=True)(x).flatten().tolist()
    assert ceil == [5.0, 2.0, 3.0]


def test_state_dict_keys_are_clinicadls():
    reference = reference_network("Conv4_FC3", (13, 17, 11))
    ours = ClinicaDLCNN("Conv4_FC3", (13, 17, 11))
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_ddp_prefix_is_dropped(tmp_path):
    root, reference = _maps(tmp_path)
    path = root / "split-0" / "best-loss" / "model.pth.tar"
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"model": collections.OrderedDict(state), "epoch": 3, "name": "Conv5_FC3"}, path)
    model, _ = load_model(root, split=0)
    x = torch.rand(1, 1, 13, 17, 11)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, 1], reference(x)[:, 0], atol=1e-5, rtol=0)


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message
    for internal in ("np.int64", "tensor(", "torch.Size", "Traceback"):
        assert internal not in message
    return message


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    root, _ = _maps(tmp_path)
    params = json.loads((root / "maps.json").read_text())
    params["architecture"] = "resnet18"
    (root / "maps.json").write_text(json.dumps(params))
    with pytest.raises(UnsupportedModelError) as err:
        load_model(root, split=0)
    message = _one_line(err.value)
    assert "'resnet18' is not supported" in message and "Conv4_FC3, Conv5_FC3" in message


class Smuggled:
    """Not a tensor: loading it would need pickled code."""


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    root, reference = _maps(tmp_path)
    path = root / "split-0" / "best-loss" / "model.pth.tar"
    torch.save({"model": reference.state_dict(), "epoch": 1, "extra": Smuggled()}, path)
    with pytest.raises(ClinicaDLCheckpointError) as err:
        load_model(root, split=0)
    assert "weights_only=True" in _one_line(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("preprocessing_dict", {"preprocessing": "t1-linear", "mode": "image"}, "t1-volume"),
        ("preprocessing_dict", {"preprocessing": "custom", "mode": "patch"}, "mode is 'patch'"),
        ("size_reduction", True, "size_reduction"),
        ("network_task", "regression", "classification"),
        ("label_code", {"AD": 0, "MCI": 1}, "label_code"),
        ("input_size", [1, 13, 17], "input_size"),
    ],
)
def test_settings_neuromask_cannot_explain_are_refused(tmp_path, key, value, words):
    root, _ = _maps(tmp_path, **{key: value})
    with pytest.raises(UnsupportedModelError) as err:
        load_model(root, split=0)
    assert words in _one_line(err.value) and "maps.json" in str(err.value)


def test_weights_of_another_input_size_are_refused_without_tensor_reprs(tmp_path):
    root, _ = _maps(tmp_path, input_size=[1, 33, 30, 35])
    with pytest.raises(ClinicaDLCheckpointError) as err:
        load_model(root, split=0)
    assert "fc.2.weight has shape 1300×128" in _one_line(err.value)


def test_choosing_split_and_metric(tmp_path):
    root, _ = _maps(tmp_path)
    assert model_folder(root) == root / "split-0" / "best-loss"  # the only split
    assert model_folder(root, 0, "balanced_accuracy").name == "best-balanced_accuracy"
    with pytest.raises(MissingFileError, match=r"no split 3 \(splits found: \[0\]\)"):
        model_folder(root, 3)
    with pytest.raises(MissingFileError, match="found: balanced_accuracy, loss"):
        model_folder(root, 0, "accuracy")
    # the selection folder itself is a model folder too
    model, record = load_model(root / "split-0" / "best-loss")
    assert record["selection_metric"] == "loss"
    with pytest.raises(ParameterError, match="MAPS model folder"):
        model_folder(root / "split-0" / "best-loss", split=0)


def test_split_option_on_a_neuromask_run_folder(tmp_path):
    with pytest.raises(ParameterError, match="neuromask run folder"):
        model_folder(tmp_path, split=1)


def test_maps_errors_are_neuromask_errors():
    assert issubclass(UnsupportedModelError, NeuromaskError)
    assert issubclass(ClinicaDLCheckpointError, NeuromaskError)


def test_grad_cam_reads_the_activation_after_the_last_convolution():
    from neuromask.explain.baselines import last_conv_layer
    from neuromask.models.clinicadl import ClassOrder

    model = ClassOrder(ClinicaDLCNN("Conv5_FC3", (13, 17, 11)), (1, 0))
    layer = last_conv_layer(model)
    convolutions = list(model.network.convolutions)
    assert isinstance(layer, torch.nn.ReLU) and layer is convolutions[-2]
