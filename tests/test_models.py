import pytest
import torch
from torch import nn

from neuromask.errors import ParameterError
from neuromask.models import CNNConfig, build_model, get_preset, list_presets


@pytest.mark.parametrize("downsampling", ["maxpool", "stride"])
@pytest.mark.parametrize("shape", [(7, 8, 9), (31, 37, 31), (13, 5, 22)])
def test_feature_shape_matches_a_forward_pass(downsampling, shape):
    config = CNNConfig(
        n_blocks=3,
        first_filters=2,
        max_filters=4,
        sub_blocks=(1, 2, 3),
        downsampling=downsampling,
        fc_layers=(5,),
        dropout=0.0,
    )
    model = build_model(config, shape).eval()
    with torch.no_grad():
        features = model.features(torch.zeros(2, 1, *shape))
        logits = model(torch.zeros(2, 1, *shape))
    assert tuple(features.shape[1:]) == config.feature_shape(shape)
    assert logits.shape == (2, 2)


def test_block_structure_and_filters():
    config = CNNConfig(
        n_blocks=4,
        first_filters=8,
        max_filters=32,
        sub_blocks=(1, 2, 3, 1),
        downsampling="stride",
        fc_layers=(16, 8),
    )
    model = build_model(config, (16, 16, 16))
    convs = [m for m in model.features if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [8, 16, 16, 32, 32, 32, 32]
    assert [c.stride[0] for c in convs] == [2, 1, 2, 1, 1, 2, 2]
    assert not any(isinstance(m, nn.MaxPool3d) for m in model.features)
    assert sum(isinstance(m, nn.BatchNorm3d) for m in model.features) == 7
    assert sum(isinstance(m, nn.LeakyReLU) for m in model.features) == 7
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(32, 16), (16, 8), (8, 2)]


def test_conv5_fc3_is_clinicadls_network():
    # ClinicaDL's Conv5_FC3 on its t1-linear grid (169 x 208 x 179) has a first FC layer of
    # 128 * 6 * 7 * 6 inputs; the same arithmetic must come out here.
    model = build_model("conv5_fc3", (169, 208, 179))
    convs = [m for m in model.features if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 128]
    assert sum(isinstance(m, nn.MaxPool3d) for m in model.features) == 5
    assert sum(isinstance(m, nn.ReLU) for m in model.features) == 5
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [
        (128 * 6 * 7 * 6, 1300),
        (1300, 50),
        (50, 2),
    ]
    assert isinstance(model.classifier[1], nn.Dropout) and model.classifier[1].p == 0.5


def test_paper_preset_works_on_the_clinica_grid_and_coarser_ones():
    config = get_preset("paper")
    assert config.n_blocks == 7 and len(config.fc_layers) == 0
    assert [config.filters(b) for b in range(7)] == [8, 16, 32, 64, 128, 128, 128]
    assert config.feature_shape((121, 145, 121)) == (128, 1, 2, 1)
    assert config.feature_shape((61, 73, 61)) == (128, 1, 1, 1)
    assert config.feature_shape((31, 37, 31)) == (128, 1, 1, 1)


def test_unknown_names_and_bad_settings():
    assert list_presets() == ["conv5_fc3", "paper"]
    with pytest.raises(ParameterError, match="valid names: conv5_fc3, paper"):
        build_model("resnet", (8, 8, 8))
    with pytest.raises(ParameterError, match="sub_blocks"):
        CNNConfig(n_blocks=3, sub_blocks=(1, 1))
    with pytest.raises(ParameterError, match="sub_blocks"):
        CNNConfig(n_blocks=1, sub_blocks=(4,))
    with pytest.raises(ParameterError, match="downsampling"):
        CNNConfig(downsampling="avgpool")
    with pytest.raises(ParameterError, match="dropout"):
        CNNConfig(dropout=1.0)
