"""The seed's step-by-step explanation of the cross-entropy loss, for any scores.

:func:`explain` computes every number of the walk-through (scores, shift, ``exp``, softmax,
``-log p``, target, gradient, loss, regularization) with crossent's own functions;
:func:`format_text` prints it as a table, :func:`plot` draws it, and :func:`render_html` makes
a self-contained interactive page of it. ``crossent explain`` is the command line for all
three.
"""

from crossent._files import atomic_write
from crossent.explain._compute import SEED_CLASSES, SEED_SCORES, explain
from crossent.explain._html import render_html, write_html
from crossent.explain._plot import plot, save_plot
from crossent.explain._result import Explanation, PenaltyTerm
from crossent.explain._text import format_number, format_text

__all__ = [
    "SEED_CLASSES",
    "SEED_SCORES",
    "Explanation",
    "PenaltyTerm",
    "atomic_write",
    "explain",
    "format_number",
    "format_text",
    "plot",
    "render_html",
    "save_plot",
    "write_html",
]
