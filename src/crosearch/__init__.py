"""CroSearch-R1: multilingual search-augmented reasoning trained with GRPO."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crosearch")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
