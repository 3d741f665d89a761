"""crossent: softmax cross-entropy, done right.

Numerically stable ``softmax``/``log_softmax``/``logsumexp``; the cross-entropy loss with every
PyTorch option and more, finite wherever the mathematics is; exact gradients; binary
cross-entropy; L1/L2/elastic-net penalties and the regularized objective. Only NumPy is needed;
the classifier (``crossent.models``), the CLI and the PyTorch layer (``crossent.torch``) are
imported on demand.
"""

from crossent._binary import binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_grad
from crossent._cross_entropy import cross_entropy, cross_entropy_grad, cross_entropy_with_grad
from crossent._penalties import (
    elastic_net_penalty,
    elastic_net_penalty_grad,
    l1_penalty,
    l1_penalty_grad,
    l2_penalty,
    l2_penalty_grad,
    penalty,
    penalty_grad,
    regularized_objective,
)
from crossent._softmax import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_with_grad",
    "elastic_net_penalty",
    "elastic_net_penalty_grad",
    "l1_penalty",
    "l1_penalty_grad",
    "l2_penalty",
    "l2_penalty_grad",
    "log_softmax",
    "logsumexp",
    "penalty",
    "penalty_grad",
    "regularized_objective",
    "softmax",
]
