"""ClinicaDL's own definitions of PadMaxPool3d, Conv5_FC3 and Conv4_FC3, kept as the
reference that neuromask's rebuilt networks are checked against.

Taken from ClinicaDL 1.6.1 (MIT licence): ``clinicadl/utils/network/network_utils.py``
(PadMaxPool3d) and ``clinicadl/utils/network/cnn/models.py`` (Conv5_FC3, Conv4_FC3),
3D branch only. The ``CNN`` base class is reduced to what the forward pass uses:
``convolutions`` then ``fc``, which also gives ClinicaDL's state-dict keys. Do not
"improve" this file: its point is to stay what ClinicaDL runs.
"""

import numpy as np
import torch
from torch import nn


class PadMaxPool3d(nn.Module):
    def __init__(self, kernel_size, stride, return_indices=False, return_pad=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.pool = nn.MaxPool3d(kernel_size, stride, return_indices=return_indices)
        self.pad = nn.ConstantPad3d(padding=0, value=0)
        self.return_indices = return_indices
        self.return_pad = return_pad

    def forward(self, f_maps):
        coords = [self.stride - f_maps.size(i + 2) % self.stride for i in range(3)]
        for i, coord in enumerate(coords):
            if coord == self.stride:
                coords[i] = 0

        self.pad.padding = (coords[2], 0, coords[1], 0, coords[0], 0)
        return self.pool(self.pad(f_maps))


class CNN(nn.Module):
    def __init__(self, convolutions, fc, n_classes):
        super().__init__()
        self.convolutions = convolutions
        self.fc = fc
        self.n_classes = n_classes

    def forward(self, x):
        x = self.convolutions(x)
        return self.fc(x)


def _convolutions(input_size):
    conv, norm, pool = nn.Conv3d, nn.BatchNorm3d, PadMaxPool3d
    # fmt: off
    return nn.Sequential(
        conv(input_size[0], 8, 3, padding=1),
        norm(8),
        nn.ReLU(),
        pool(2, 2),

        conv(8, 16, 3, padding=1),
        norm(16),
        nn.ReLU(),
        pool(2, 2),

        conv(16, 32, 3, padding=1),
        norm(32),
        nn.ReLU(),
        pool(2, 2),

        conv(32, 64, 3, padding=1),
        norm(64),
        nn.ReLU(),
        pool(2, 2),

        conv(64, 128, 3, padding=1),
        norm(128),
        nn.ReLU(),
        pool(2, 2),
    )
    # fmt: on


class Conv5_FC3(CNN):
    def __init__(self, input_size, gpu=True, output_size=2, dropout=0.5):
        convolutions = _convolutions(input_size)
        input_tensor = torch.zeros(input_size).unsqueeze(0)
        output_convolutions = convolutions(input_tensor)
        # fmt: off
        fc = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(p=dropout),

            nn.Linear(np.prod(list(output_convolutions.shape)).item(), 1300),
            nn.ReLU(),

            nn.Linear(1300, 50),
            nn.ReLU(),

            nn.Linear(50, output_size)
        )
        # fmt: on
        super().__init__(convolutions=convolutions, fc=fc, n_classes=output_size)


class Conv4_FC3(CNN):
    def __init__(self, input_size, gpu=True, output_size=2, dropout=0.5):
        convolutions = _convolutions(input_size)
        input_tensor = torch.zeros(input_size).unsqueeze(0)
        output_convolutions = convolutions(input_tensor)
        # fmt: off
        fc = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(p=dropout),

            nn.Linear(np.prod(list(output_convolutions.shape)).item(), 50),
            nn.ReLU(),

            nn.Linear(50, 40),
            nn.ReLU(),

            nn.Linear(40, output_size)
        )
        # fmt: on
        super().__init__(convolutions=convolutions, fc=fc, n_classes=output_size)


ARCHITECTURES = {"Conv5_FC3": Conv5_FC3, "Conv4_FC3": Conv4_FC3}
