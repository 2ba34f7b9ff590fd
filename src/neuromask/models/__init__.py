"""3D CNN architectures, looked up by name."""

from neuromask.models.cnn import CNN3D, CNNConfig
from neuromask.models.registry import PRESETS, build_model, get_preset, list_presets

__all__ = ["CNN3D", "PRESETS", "CNNConfig", "build_model", "get_preset", "list_presets"]
