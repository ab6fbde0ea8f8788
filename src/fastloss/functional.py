"""The public API: torch.nn.functional's losses on NumPy arrays, each fused with its gradient.

Every loss comes in two forms with the same arguments:

- ``name(input, target, ...) -> loss``
- ``name_with_grad(input, target, ..., grad_output=None, out=None) -> (loss, grad_input)``
  where ``grad_input`` (input's shape and dtype) is the gradient of
  ``sum(grad_output * loss)`` with respect to ``input``, computed in the same
  pass over the data as the loss. A loss with several differentiable arrays
  returns one gradient per array after the loss, in the order of the
  arguments (``gaussian_nll_loss_with_grad`` returns ``(loss, grad_input,
  grad_var)``), and its ``out=`` is None or a tuple of one array (or None) per
  gradient. Targets are not differentiated. ``grad_output`` defaults to 1; for
  ``reduction="none"`` it may be an array of the loss's shape. ``out=`` (an array
  of input's shape and dtype, C-contiguous; ``input`` itself is allowed) receives
  the gradient without allocating.

The losses of ``GRAD_HESS`` have a third form for gradient boosting:
``name_grad_hess(input, target, ..., sample_weight=None, hessian="exact", out=None)
-> (loss, grad, hess)``: the sum of ``sample_weight * loss``, its gradient and the
diagonal of its hessian per element, from one pass; ``hessian="xgboost"`` or
``"lightgbm"`` follows that library's built-in objective (see each function).

Conventions shared by all of them:

- ``input`` is float32 or float64 and results keep its dtype (float16 is
  computed in float32 and cast back); integer, bool and complex inputs raise
  TypeError. Inputs are never modified; non-contiguous inputs are copied first.
- ``reduction`` is ``"none"`` (per-element, or per-sample for cross-entropy,
  losses as an array), ``"mean"`` or ``"sum"`` (a NumPy scalar of input's dtype).
- ``n_threads``: the most OpenMP threads to use (default: OpenMP's own setting,
  so ``OMP_NUM_THREADS`` and threadpoolctl apply). Inputs under 2**20 (about
  1e6) elements always run on the calling thread. Results are bit-identical for
  every thread count.
"""

from __future__ import annotations

from ._class_rows import (
    cross_entropy, cross_entropy_grad_hess, cross_entropy_with_grad, multi_margin_loss, multi_margin_loss_with_grad,
    nll_loss, nll_loss_with_grad,
)
from ._elementwise import (
    binary_cross_entropy_grad_hess, kl_div_grad_hess, multilabel_soft_margin_loss_grad_hess,
    binary_cross_entropy_with_logits_grad_hess, gaussian_nll_loss_grad_hess,
    hinge_loss_grad_hess, huber_loss_grad_hess, l1_loss_grad_hess, log_cosh_loss_grad_hess,
    mse_loss_grad_hess, msle_loss_grad_hess, poisson_nll_loss_grad_hess,
    sigmoid_focal_loss_grad_hess, smooth_l1_loss_grad_hess, soft_margin_loss_grad_hess,
    binary_cross_entropy, binary_cross_entropy_with_grad, binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_with_grad, gaussian_nll_loss, gaussian_nll_loss_with_grad,
    hinge_loss, hinge_loss_with_grad, huber_loss, huber_loss_with_grad, kl_div,
    kl_div_with_grad, l1_loss, l1_loss_with_grad, log_cosh_loss, log_cosh_loss_with_grad,
    mse_loss, mse_loss_with_grad, msle_loss, msle_loss_with_grad, multilabel_soft_margin_loss,
    multilabel_soft_margin_loss_with_grad, poisson_nll_loss, poisson_nll_loss_with_grad,
    sigmoid_focal_loss, sigmoid_focal_loss_with_grad, smooth_l1_loss, smooth_l1_loss_with_grad,
    soft_margin_loss, soft_margin_loss_with_grad,
)
from ._pairs import (
    center_loss, center_loss_update, center_loss_with_grad, contrastive_loss,
    contrastive_loss_with_grad, cosine_embedding_loss, cosine_embedding_loss_with_grad,
    hinge_embedding_loss, hinge_embedding_loss_with_grad, margin_ranking_loss,
    margin_ranking_loss_with_grad, triplet_margin_loss, triplet_margin_loss_with_grad,
)

#: Every loss, by family (the per-family modules hold their code).
LOSSES = {
    "class rows": ("cross_entropy", "nll_loss", "multi_margin_loss"),
    "elementwise": ("binary_cross_entropy_with_logits", "binary_cross_entropy",
                    "multilabel_soft_margin_loss", "soft_margin_loss", "hinge_loss",
                    "sigmoid_focal_loss", "kl_div", "mse_loss", "l1_loss", "huber_loss",
                    "smooth_l1_loss", "msle_loss", "log_cosh_loss", "poisson_nll_loss",
                    "gaussian_nll_loss"),
    "pairs": ("contrastive_loss", "cosine_embedding_loss", "triplet_margin_loss",
              "margin_ranking_loss", "hinge_embedding_loss", "center_loss"),
}

#: The losses with a ``<name>_grad_hess`` for gradient boosting (see
#: fastloss.xgboost and fastloss.lightgbm).
GRAD_HESS = ("cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal_loss",
             "soft_margin_loss", "hinge_loss", "mse_loss", "l1_loss", "huber_loss",
             "smooth_l1_loss", "msle_loss", "log_cosh_loss", "poisson_nll_loss",
             "gaussian_nll_loss", "binary_cross_entropy", "kl_div",
             "multilabel_soft_margin_loss")

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad_hess",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad_hess",
    "binary_cross_entropy_with_logits_with_grad",
    "center_loss",
    "center_loss_update",
    "center_loss_with_grad",
    "contrastive_loss",
    "contrastive_loss_with_grad",
    "cosine_embedding_loss",
    "cosine_embedding_loss_with_grad",
    "cross_entropy",
    "cross_entropy_grad_hess",
    "cross_entropy_with_grad",
    "gaussian_nll_loss",
    "gaussian_nll_loss_grad_hess",
    "gaussian_nll_loss_with_grad",
    "hinge_embedding_loss",
    "hinge_embedding_loss_with_grad",
    "hinge_loss",
    "hinge_loss_grad_hess",
    "hinge_loss_with_grad",
    "huber_loss",
    "huber_loss_grad_hess",
    "huber_loss_with_grad",
    "kl_div",
    "kl_div_grad_hess",
    "kl_div_with_grad",
    "l1_loss",
    "l1_loss_grad_hess",
    "l1_loss_with_grad",
    "log_cosh_loss",
    "log_cosh_loss_grad_hess",
    "log_cosh_loss_with_grad",
    "margin_ranking_loss",
    "margin_ranking_loss_with_grad",
    "mse_loss",
    "mse_loss_grad_hess",
    "mse_loss_with_grad",
    "msle_loss",
    "msle_loss_grad_hess",
    "msle_loss_with_grad",
    "multi_margin_loss",
    "multi_margin_loss_with_grad",
    "multilabel_soft_margin_loss",
    "multilabel_soft_margin_loss_grad_hess",
    "multilabel_soft_margin_loss_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
    "poisson_nll_loss",
    "poisson_nll_loss_grad_hess",
    "poisson_nll_loss_with_grad",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad_hess",
    "sigmoid_focal_loss_with_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_grad_hess",
    "smooth_l1_loss_with_grad",
    "soft_margin_loss",
    "soft_margin_loss_grad_hess",
    "soft_margin_loss_with_grad",
    "triplet_margin_loss",
    "triplet_margin_loss_with_grad",
]
