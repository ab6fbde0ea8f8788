"""fastloss: fused forward + backward loss kernels for NumPy, with torch.nn.functional semantics.

Every loss returns its value; its ``*_with_grad`` twin returns ``(loss, grad_input)``
from one pass over the data. ``fastloss.reference`` holds the pure-NumPy
specification the kernels are tested against.
"""

from ._config import show_config
from ._version import __version__
from .functional import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_with_grad,
    cross_entropy,
    cross_entropy_with_grad,
    huber_loss,
    huber_loss_with_grad,
    mse_loss,
    mse_loss_with_grad,
)

__all__ = [
    "__version__",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "cross_entropy",
    "cross_entropy_with_grad",
    "huber_loss",
    "huber_loss_with_grad",
    "mse_loss",
    "mse_loss_with_grad",
    "show_config",
]
