"""neuromask: 3D CNNs on gray-matter maps, explained with optimised perturbation masks."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neuromask")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
