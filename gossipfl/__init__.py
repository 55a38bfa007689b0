"""gossipfl: peer-to-peer gossip learning.

The public surface is what this module and the subpackages' ``__init__``
re-export; everything else is private and may change.
"""

from importlib.metadata import PackageNotFoundError, version

from gossipfl.plugins import PluginError
from gossipfl.trainers.api import Trainer, TrainerSpec

try:
    __version__ = version("gossipfl")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["PluginError", "Trainer", "TrainerSpec", "__version__"]
