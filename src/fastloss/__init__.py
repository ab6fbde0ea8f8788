"""fastloss: fused forward + backward loss kernels for NumPy, with torch.nn.functional semantics.

Every loss returns its value; its ``*_with_grad`` twin returns ``(loss, grad_input)``
from one pass over the data. ``fastloss.reference`` holds the pure-NumPy
specification the kernels are tested against.
"""

from ._config import show_config
from ._version import __version__
from . import functional
from .functional import *  # noqa: F403 (the losses: functional.__all__)

__all__ = ["__version__", "functional", "show_config"]
__all__ += functional.__all__
