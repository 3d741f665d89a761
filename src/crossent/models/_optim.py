r"""First-order optimizers and the proximal L1 step, on one flat parameter vector.

Every optimizer updates ``theta`` (a flat float64 vector holding all parameters) in place and
keeps its state as a dict of arrays and numbers, so a training run can be checkpointed and
resumed bit for bit.

SGD with momentum ``μ`` and learning rate ``η``:

.. math:: v \leftarrow \mu v - \eta g, \qquad \theta \leftarrow \theta + v

Adam (Kingma & Ba, 2015), with bias-corrected moments:

.. math::

    m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
    s \leftarrow \beta_2 s + (1-\beta_2) g^2, \quad
    \theta \leftarrow \theta - \eta\,\frac{m / (1-\beta_1^t)}{\sqrt{s / (1-\beta_2^t)} + \epsilon}

The proximal step of ``λ‖w‖₁`` (soft-thresholding) sets small weights exactly to zero:

.. math:: \operatorname{prox}_{\eta\lambda}(w) = \operatorname{sign}(w)\,\max(|w| - \eta\lambda, 0)

With momentum it is applied to the heavy-ball step, and the velocity becomes the step actually
taken (iPiano, Ochs et al. 2014), so that the next steps do not carry the shrinkage away:

.. math::

    \theta_{k+1} = \operatorname{prox}_{\eta\lambda}\big(\theta_k + \mu v_k - \eta g_k\big),
    \qquad v_{k+1} = \theta_{k+1} - \theta_k

(with ``v`` the velocity before the prox, the momentum would keep pushing weights out against a
threshold ``ηλ`` that is ``1/(1-μ)`` times too small, and the objective can rise every epoch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "learning_rate_at",
    "make_optimizer",
    "soft_threshold",
]

SCHEDULES = ("constant", "invscaling")
OPTIMIZERS = ("sgd", "adam")


def learning_rate_at(schedule: str, eta0: float, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based, counted over the whole run).

    ``"constant"``: ``η₀``; ``"invscaling"``: ``η₀ / √(1 + epoch)``.

    Examples
    --------
    >>> learning_rate_at("invscaling", 0.1, 3)
    0.05
    """
    if schedule == "constant":
        return eta0
    return eta0 / float(np.sqrt(1.0 + epoch))


def soft_threshold(w: NDArray[np.float64], threshold: float) -> None:
    """In place: ``w ← sign(w)·max(|w| − threshold, 0)`` (exact zeros below the threshold).

    Examples
    --------
    >>> w = np.array([0.3, -0.05, 0.0, -1.0])
    >>> soft_threshold(w, 0.1); w
    array([ 0.2, -0. ,  0. , -0.9])
    """
    np.multiply(np.sign(w), np.maximum(np.abs(w) - threshold, 0.0), out=w)


class SGD:
    """Stochastic gradient descent with (optionally Nesterov) momentum."""

    name = "sgd"

    def __init__(self, size: int, *, momentum: float = 0.9, nesterov: bool = False) -> None:
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocity = np.zeros(size)  # (P,)

    def step(self, theta: NDArray[np.float64], grad: NDArray[np.float64], lr: float) -> None:
        v = self.velocity
        v *= self.momentum
        v -= lr * grad
        if self.nesterov:
            theta += self.momentum * v - lr * grad
        else:
            theta += v

    def shrink(self, theta: NDArray[np.float64], spans: list[slice], threshold: float) -> None:
        """The proximal L1 step on ``theta[span]`` for each span, after :meth:`step`.

        The velocity becomes the step actually taken (see the module docstring).
        """
        for span in spans:
            w = theta[span]
            before = w.copy()
            soft_threshold(w, threshold)
            before -= w
            self.velocity[span] -= before

    def state_dict(self) -> dict[str, Any]:
        return {"velocity": self.velocity.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity = np.array(state["velocity"], dtype=np.float64)


class Adam:
    """Adam with bias correction."""

    name = "adam"

    def __init__(
        self, size: int, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(size)  # (P,)
        self.s = np.zeros(size)  # (P,)
        self.t = 0
        self._buf = np.empty(size)  # scratch space: one step allocates nothing

    def step(self, theta: NDArray[np.float64], grad: NDArray[np.float64], lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        buf = self._buf
        self.m *= b1
        np.multiply(grad, 1.0 - b1, out=buf)
        self.m += buf  # m = β₁m + (1-β₁)g
        self.s *= b2
        np.multiply(grad, grad, out=buf)
        buf *= 1.0 - b2
        self.s += buf  # s = β₂s + (1-β₂)g²
        # θ -= η·m̂/(√ŝ + ε) with m̂ = m/(1-β₁ᵗ), ŝ = s/(1-β₂ᵗ), computed without temporaries
        root_bc2 = np.sqrt(1.0 - b2**self.t)
        np.sqrt(self.s, out=buf)
        buf /= root_bc2
        buf += self.eps
        np.divide(self.m, buf, out=buf)
        buf *= lr / (1.0 - b1**self.t)
        theta -= buf

    def state_dict(self) -> dict[str, Any]:
        return {"m": self.m.copy(), "s": self.s.copy(), "t": np.array(self.t)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.m = np.array(state["m"], dtype=np.float64)
        self.s = np.array(state["s"], dtype=np.float64)
        self.t = int(state["t"])


def make_optimizer(name: str, size: int, *, momentum: float = 0.9) -> SGD | Adam:
    """The optimizer called ``name`` (``"sgd"`` or ``"adam"``) for ``size`` parameters."""
    if name == "sgd":
        return SGD(size, momentum=momentum)
    return Adam(size)
