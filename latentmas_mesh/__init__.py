"""latentmas-mesh: an open implementation of the LatentMAS/2.0 working-memory exchange protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("latentmas-mesh")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

PROTOCOL_VERSION = "LatentMAS/2.0"
PROTOCOL_VERSION_V1 = "LatentMAS/1.0"

__all__ = ["PROTOCOL_VERSION", "PROTOCOL_VERSION_V1", "__version__"]
