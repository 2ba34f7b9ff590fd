"""Randomised copies of a CNN for the model-randomisation test of Adebayo et al. (2018):
the layers with parameters, from the classifier down, re-initialised in a cascade."""

from __future__ import annotations

import copy

import torch

from neuromask.errors import ParameterError


def cascade_layers(model: torch.nn.Module) -> list[tuple[str, list[torch.nn.Module]]]:
    """The model's layers with parameters, from the top down: each Linear of the
    classifier, then each Conv3d with the BatchNorm that follows it.

    Named by their module path (``classifier.5``, ``features.12``).
    """
    layers: list[tuple[str, list[torch.nn.Module]]] = []
    current: tuple[str, list[torch.nn.Module]] | None = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv3d | torch.nn.Linear):
            current = (name, [module])
            layers.append(current)
        elif isinstance(module, torch.nn.BatchNorm3d | torch.nn.BatchNorm1d) and current:
            current[1].append(module)
    if not layers:
        raise ParameterError("the model has no Conv3d or Linear layer to randomise")
    return layers[::-1]


def randomised_copy(model: torch.nn.Module, n_layers: int, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` whose top ``n_layers`` layers (``cascade_layers``) are
    re-initialised with PyTorch's default initialisation (BatchNorm: weight 1, bias 0,
    running statistics 0 and 1), layer i from seed ``seed + i``."""
    twin = copy.deepcopy(model)
    layers = cascade_layers(twin)
    if not 0 <= n_layers <= len(layers):
        raise ParameterError(f"n_layers must be in [0, {len(layers)}], got {n_layers}")
    with torch.random.fork_rng(devices=[]):
        for i, (_, modules) in enumerate(layers[:n_layers]):
            torch.manual_seed(seed + i)
            for module in modules:
                module.reset_parameters()  # type: ignore[operator]
    return twin.eval()
