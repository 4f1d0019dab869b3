"""``krylearn bench darcy-layout``: a trained operator on its training grid against a cell-centred 128^2 grid.

PDEBench files hold their fields at cell centres ``(i + 1/2) / s``; the LSM
benchmark's grid is 85 points a side that are nodes ``i / 84`` to a tenth of
a cell (FNO's 421 cell centres sub-sampled by 5).  This study measures what
predicting across layouts costs, on *paired* samples (the same coefficient
fields on both grids, so the comparison carries no sampling noise):

* each sample is one benchmark-recipe solve (:func:`~krylearn.problems.darcy.darcy_sample`,
  ``grid="fno"``) at ``res = 640`` cell centres;
* its cell-centred ``128 x 128`` fields are the points ``[2::5]`` of that
  grid, exactly (``(5 i + 2 + 1/2) / 640 = (i + 1/2) / 128``);
* its fields on the model's training grid (the card's ``grid``; nodes when
  it names none) are the same solution there: the coefficient at the
  nearest fine point, the solution by the tensor-product cubic spline the
  generator itself uses between grids.

Per sample it reports the relative L2 error of the prediction on the
training grid, on the cell-centred grid placed by its coordinates
(``predict(..., coords=(x, y))``), and on the cell-centred grid under the
node assumption (``coords="node"``: the 128 points taken for the nodes
``i / 127``, the mistake of a reader that ignores the file's coordinates).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import scipy.interpolate
from tqdm.auto import tqdm

from ...datasets.grids import classify_coordinates, grid_coordinates, interpolation_matrix
from ...problems.darcy import darcy_sample
from ...utils.atomic import atomic_write_text
from ...utils.checks import check_int
from .predict import predict
from .recipe import resolve_model

__all__ = ["layout_samples", "layout_study", "format_layout_table", "write_layout_report"]


def _spline(v: np.ndarray, src: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Tensor-product not-a-knot cubic spline through ``v`` on ``src x src``, at ``dx x dy`` (extrapolating)."""
    v = scipy.interpolate.make_interp_spline(src, v, k=3, axis=0)(dx)
    return scipy.interpolate.make_interp_spline(src, v, k=3, axis=1)(dy)


def layout_samples(seed: int, n: int, *, res: int = 640, sub: int = 5, offset: int = 2, grid=None) -> dict:
    """Paired Darcy samples on a cell-centred grid and on a second grid (the model's training grid).

    Parameters
    ----------
    seed, n : int
        Samples ``0 .. n-1`` of ``generate_darcy(..., seed=seed)``'s seeding.
    res, sub, offset : int
        The fine ``grid="fno"`` solve (cell centres ``(k + 1/2) / res``) and
        the points ``[offset::sub]`` kept for the cell-centred grid
        (default: 128 centres).
    grid : (array_like (s1,), array_like (s2,)), optional
        Coordinates of the second grid (default: the 85 nodes ``linspace(0, 1, 85)``).

    Returns
    -------
    dict
        ``a_cell``, ``u_cell`` float32 ``(n, s, s)`` and ``x_cell`` float64
        ``(s,)``; ``a_train``, ``u_train`` float32 ``(n, s1, s2)`` and
        ``grid_train`` (the second grid's coordinates).
    """
    n = check_int("n", n, 1)
    fine = (np.arange(res) + 0.5) / res
    keep = slice(offset, None, sub)
    gx, gy = (np.asarray(c, dtype=np.float64) for c in (grid or (grid_coordinates(85),) * 2))
    px, py = interpolation_matrix(fine, gx, "nearest"), interpolation_matrix(fine, gy, "nearest")
    out = {k: [] for k in ("a_cell", "u_cell", "a_train", "u_train")}
    for i in tqdm(range(n), desc="darcy samples", unit="sample", disable=n < 4):
        a, u, _ = darcy_sample(seed, i, res=res, sub=1, grid="fno")
        out["a_cell"].append(a[keep, keep])
        out["u_cell"].append(u[keep, keep])
        out["a_train"].append(px @ a.astype(np.float64) @ py.T)
        out["u_train"].append(_spline(u.astype(np.float64), fine, gx, gy))
    arrays = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
    return {**arrays, "x_cell": fine[keep], "grid_train": (gx, gy)}


def _rel(pred, u) -> np.ndarray:
    n = len(u)
    p, t = np.asarray(pred, np.float64).reshape(n, -1), np.asarray(u, np.float64).reshape(n, -1)
    return np.linalg.norm(p - t, axis=1) / np.linalg.norm(t, axis=1)


def _summary(rel: np.ndarray) -> dict:
    return {"mean": float(rel.mean()), "median": float(np.median(rel)), "max": float(rel.max()),
            "sem": float(rel.std(ddof=1) / np.sqrt(len(rel))) if len(rel) > 1 else None, "per_sample": rel.tolist()}


def layout_study(model="lsm-darcy", *, n: int = 16, seed: int = 7, res: int = 640, sub: int = 5, offset: int = 2,
                 batch_size: int = 16, device=None, samples: dict | None = None) -> dict:
    """Relative L2 of ``model`` on paired training-grid and cell-centred samples (see the module docstring).

    Parameters
    ----------
    model : str, Path or NormalizedOperator
    n, seed, res, sub, offset : int
        The samples (:func:`layout_samples`); ``seed=7`` is in none of
        ``lsm-darcy``'s files.
    samples : dict, optional
        Precomputed :func:`layout_samples` output (``n``, ``seed``, ... are then only recorded).

    Returns
    -------
    dict
        ``train`` (on the model's training grid), ``cell`` (cell-centred,
        placed by its coordinates) and ``cell_as_nodes`` (cell-centred,
        node assumption): each ``mean``, ``median``, ``max``, ``sem``,
        ``per_sample``; ``ratio_cell`` and ``ratio_cell_as_nodes`` (mean over
        the training grid's mean), sizes, the training grid's ``train_layout``, ``seconds``.
    """
    t0 = time.perf_counter()
    predictor = resolve_model(model, device)
    s = samples if samples is not None else layout_samples(seed, n, res=res, sub=sub, offset=offset,
                                                           grid=predictor.coordinates)
    kw = {"model": predictor, "batch_size": batch_size, "device": next(predictor.parameters()).device}
    train = _rel(predict(s["a_train"], coords=s["grid_train"], **kw), s["u_train"])
    cell = _rel(predict(s["a_cell"], coords=(s["x_cell"], s["x_cell"]), **kw), s["u_cell"])
    as_nodes = _rel(predict(s["a_cell"], coords="node", **kw), s["u_cell"])
    card = getattr(predictor, "card", None) or {}
    return {"model": str(card.get("name") or getattr(predictor, "source", model)), "n": int(len(train)),
            "seed": seed, "fine_grid": {"res": res, "sub": sub, "offset": offset, "grid": "fno"},
            "train_size": int(s["a_train"].shape[-1]), "train_layout": classify_coordinates(s["grid_train"][0]),
            "cell_size": int(s["a_cell"].shape[-1]),
            "train": _summary(train), "cell": _summary(cell), "cell_as_nodes": _summary(as_nodes),
            "ratio_cell": float(cell.mean() / train.mean()),
            "ratio_cell_as_nodes": float(as_nodes.mean() / train.mean()), "seconds": time.perf_counter() - t0}


def format_layout_table(r: dict) -> str:
    """A markdown table of a :func:`layout_study`."""
    rows = [("train", f"{r['train_size']}^2 training grid ({r['train_layout']})", "none"),
            ("cell", f"{r['cell_size']}^2 cell centres (i+1/2)/{r['cell_size']}", "by the file's coordinates"),
            ("cell_as_nodes", f"{r['cell_size']}^2 cell centres (i+1/2)/{r['cell_size']}",
             f"node assumption (i/{r['cell_size'] - 1})")]
    lines = [f"{r['model']} on {r['n']} paired Darcy samples (seed {r['seed']}; one res-{r['fine_grid']['res']} "
             "solve per sample), relative L2 ||u_pred - u|| / ||u||",
             "", "| grid | resampling | mean ± s.e. | median | max | × training-grid mean |",
             "|---|---|---|---|---|---|"]
    for key, grid, how in rows:
        v = r[key]
        ratio = v["mean"] / r["train"]["mean"]
        sem = f" ± {v['sem']:.4f}" if v["sem"] is not None else ""
        lines.append(f"| {grid} | {how} | {v['mean']:.4f}{sem} | {v['median']:.4f} | {v['max']:.4f} | {ratio:.2f} |")
    return "\n".join(lines)


def write_layout_report(r: dict, out_dir) -> list[str]:
    """``darcy-layout.json`` and ``darcy-layout.md`` in ``out_dir`` (atomic); returns their paths."""
    out = Path(out_dir)
    jpath, mpath = out / "darcy-layout.json", out / "darcy-layout.md"
    atomic_write_text(jpath, json.dumps(r, indent=1) + "\n")
    atomic_write_text(mpath, format_layout_table(r) + "\n")
    return [str(jpath), str(mpath)]
