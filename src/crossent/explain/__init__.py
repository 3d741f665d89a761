"""The blog post's step-by-step explanation of the cross-entropy loss, for any scores.

:func:`explain` computes every number of the walk-through (scores, shift, ``exp``, softmax,
``-log p``, target, gradient, loss, regularization) with crossent's own functions;
:func:`format_text` prints it as a table, :func:`plot` draws it, and :func:`render_html` makes
a self-contained interactive page of it, each in English or Chinese (``lang='zh'``).
``crossent explain`` is the command line for all three. The tutorial's experiments and figures
(:func:`plot_cases`, :func:`regularization_sweep`, :func:`plot_sweep`, :func:`plot_templates`,
:func:`train_with_curves`, :func:`plot_curves`) live here too.
"""

from crossent._files import atomic_write
from crossent.explain._compute import SEED_CLASSES, SEED_SCORES, explain
from crossent.explain._html import render_html, write_html
from crossent.explain._lesson import (
    Curves,
    Sweep,
    plot_cases,
    plot_curves,
    plot_sweep,
    plot_templates,
    regularization_sweep,
    train_with_curves,
)
from crossent.explain._messages import LANGS
from crossent.explain._plot import plot, save_figure, save_plot
from crossent.explain._result import Explanation, PenaltyTerm
from crossent.explain._text import format_number, format_text

__all__ = [
    "LANGS",
    "SEED_CLASSES",
    "SEED_SCORES",
    "Curves",
    "Explanation",
    "PenaltyTerm",
    "Sweep",
    "atomic_write",
    "explain",
    "format_number",
    "format_text",
    "plot",
    "plot_cases",
    "plot_curves",
    "plot_sweep",
    "plot_templates",
    "regularization_sweep",
    "render_html",
    "save_figure",
    "save_plot",
    "train_with_curves",
    "write_html",
]
