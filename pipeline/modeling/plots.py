"""Figures of the evaluation curves. Functions return figures; saving is the caller's job.

Built with `matplotlib.figure.Figure` rather than pyplot: no backend is chosen at import and
no figure is kept by a figure manager, so the module works headless (CI, DVC, MLflow's
`log_figure`) and leaves a notebook's inline charts alone.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

_SPECS = {
    "roc": ("fpr", "tpr", "False positive rate", "True positive rate", "ROC curve"),
    "precision_recall": ("recall", "precision", "Recall", "Precision", "Precision-recall"),
    "calibration": (
        "predicted",
        "observed",
        "Predicted churn probability",
        "Observed churn rate",
        "Calibration",
    ),
    "lift": (
        "population_share",
        "captured_share",
        "Share of accounts contacted",
        "Share of churners reached",
        "Cumulative gains",
    ),
}


def curve_figures(frames: dict[str, pd.DataFrame]) -> dict[str, Figure]:
    """One small figure per known curve frame (roc, precision_recall, calibration, lift).

    Frames with another name are skipped, so a caller can pass every CSV of the plots
    directory. The diagonal is the random-ranking reference where one exists.
    """
    figures = {}
    for name, frame in frames.items():
        if name not in _SPECS:
            continue
        x, y, xlabel, ylabel, title = _SPECS[name]
        fig = Figure(figsize=(4.5, 4), dpi=100)
        ax = fig.subplots()
        ax.plot(frame[x], frame[y], marker="o" if name == "calibration" else None, lw=1.5)
        if name in ("roc", "calibration", "lift"):
            ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.02))
        fig.tight_layout()
        figures[name] = fig
    return figures
