"""rwku: benchmark real-world knowledge unlearning in large language models (RWKU)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rwku")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
