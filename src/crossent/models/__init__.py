"""Classifiers trained with crossent's loss, with scikit-learn's estimator API.

- :class:`SoftmaxClassifier`: the linear model ``y = Wx + b`` (softmax regression).
- :class:`MLPClassifier`: a small ReLU network whose last layer gives the class scores,
  trained by backpropagation.

Both minimize the mean cross-entropy plus ``alpha · R(W)`` (L2, L1 or elastic net, biases not
penalized). Importing this package needs scikit-learn and SciPy (``pip install crossent[learn]``).
"""

try:
    import scipy.optimize  # noqa: F401
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"crossent.models needs scikit-learn and SciPy ({exc}): pip install 'crossent[learn]'"
    ) from exc

from crossent.models._linear import SoftmaxClassifier
from crossent.models._mlp import MLPClassifier
from crossent.models._pipeline import split_pipeline
from crossent.models._state import TrainingState

__all__ = ["MLPClassifier", "SoftmaxClassifier", "TrainingState", "split_pipeline"]
