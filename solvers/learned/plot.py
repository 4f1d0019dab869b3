"""The loss plot every training pipeline writes beside its weights (matplotlib, PNG), and the end of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ...utils.atomic import atomic_write_text, save_figure
from .pretrained import save_pretrained

__all__ = ["plot_losses", "save_log_run"]


def plot_losses(records, path, *, title: str, ylabel: str = "loss", unit: str = "step", smooth: int | None = None,
                best: int | None = None, lines: dict | None = None) -> None:
    """Write a semi-log PNG of the training loss and the validation values of ``records``.

    Parameters
    ----------
    records : list of dict
        ``{unit: k, "loss": float, "val": float or None}`` in order, e.g.
        :attr:`TrainResult.history <krylearn.solvers.learned.TrainResult>` (one per
        round) or its ``log`` (one per log interval).
    path : str or Path
        The PNG, written atomically.
    title, ylabel, unit : str
        Figure title, y label, and the record key of the x axis.
    smooth : int, optional
        Also draw the ``smooth``-record moving mean (the raw curve turns light grey).
    best : int, optional
        Mark the kept round with a vertical line.
    lines : dict, optional
        ``{label: value}`` horizontal reference lines (e.g. the untrained model's validation loss).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray([r[unit] for r in records], dtype=float)
    loss = np.asarray([r["loss"] for r in records], dtype=float)
    val = np.asarray([np.nan if r.get("val") is None else r["val"] for r in records], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    w = 0 if smooth is None else max(1, min(int(smooth), len(loss)))
    if w > 1:
        ax.semilogy(x, loss, color="0.8", lw=0.5, label=f"training loss (per {unit})")
        ax.semilogy(x[w - 1:], np.convolve(loss, np.ones(w) / w, mode="valid"), color="C0",
                    label=f"training loss ({w}-{unit} mean)")
    else:
        ax.semilogy(x, loss, color="C0", label="training loss")
    if np.isfinite(val).any():
        keep = np.isfinite(val)
        ax.semilogy(x[keep], val[keep], color="C1", marker="." if keep.sum() < 60 else None, label="validation")
    if best is not None:
        ax.axvline(best, color="gray", ls=":", lw=1, label=f"kept {unit} {best}")
    for i, (label, value) in enumerate((lines or {}).items()):
        if value is not None:
            ax.axhline(value, color=f"C{i + 2}", ls="--", lw=1, label=f"{label} ({value:.3g})")
    ax.set_xlabel(unit)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def save_log_run(net, card: dict, target, out, log: list[dict], *, title: str, ylabel: str) -> dict:
    """Write a trained run: weights + card at ``target``, ``out/log.json`` and the loss plot ``out/loss.png``.

    ``log`` rows hold ``step``, ``train_loss`` and ``val_loss`` as natural
    logarithms (the losses of the log-reduction recipes); the plot shows
    their exponentials, with the card's ``metrics.best_step`` marked.
    Returns the card as written (with ``method``, ``config`` and ``sha256``).
    """
    _, cpath = save_pretrained(net, card, target)
    card = json.loads(cpath.read_text())
    atomic_write_text(Path(out) / "log.json", json.dumps({"card": card, "log": log}, indent=1))
    plot_losses([{"step": r["step"], "loss": math.exp(r["train_loss"]),
                  "val": None if r["val_loss"] is None else math.exp(r["val_loss"])} for r in log],
                Path(out) / "loss.png", title=title, unit="step", ylabel=ylabel,
                best=card["metrics"]["best_step"])
    return card
