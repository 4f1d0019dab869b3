"""Grid coordinates: layouts read from files, resampling by position, and the training grid in the card."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from krylearn.datasets.grids import (
    check_coordinates,
    classify_coordinates,
    grid_coordinates,
    interpolation_matrix,
    same_points,
)
from krylearn.datasets.pde_formats import read_darcy, write_darcy
from krylearn.problems.darcy import generate_darcy
from krylearn.solvers.lsm import LSM2d, NormalizedOperator, UnitGaussianNormalizer, load_pretrained, predict
from krylearn.solvers.lsm import save_pretrained
from krylearn.solvers.lsm.model import grid_channels
from krylearn.solvers.lsm.predict import resample_grid, resample_nodes
from krylearn.solvers.lsm.recipe import evaluate
from krylearn.utils.errors import FormatError

CELL128 = (np.arange(128) + 0.5) / 128
NODE85 = np.linspace(0.0, 1.0, 85)


def smooth(x, y):
    """A smooth analytic field on the unit square, zero on its edges like a Darcy solution."""
    return np.sin(np.pi * x)[:, None] * np.sin(np.pi * y)[None, :] * (1.0 + 0.5 * x[:, None] * y[None, :])


def _rel(p, t):
    return float(np.linalg.norm(p - t) / np.linalg.norm(t))


# ------------------------------------------------------------------ layouts
def test_layouts_are_classified_on_the_unit_square():
    assert classify_coordinates(NODE85) == "node"
    assert classify_coordinates(CELL128) == "cell"
    assert classify_coordinates(CELL128.astype(np.float32)) == "cell"  # float32 storage
    assert classify_coordinates(CELL128[::2]) == "general"
    assert classify_coordinates(((np.arange(421) + 0.5) / 421)[::5]) == "general"
    assert classify_coordinates(NODE85[::-1]) == "general"
    assert classify_coordinates(grid_coordinates(8, "cell", (2.0, 4.0)), domain=(2.0, 4.0)) == "cell"
    # FNO's 421 cell centres sub-sampled by 5 are the 85 nodes to a tenth of a cell; cells and nodes are not
    assert same_points(((np.arange(421) + 0.5) / 421)[::5], NODE85)
    assert not same_points(grid_coordinates(85, "cell"), NODE85)


@pytest.mark.parametrize("bad, message", [
    (np.array([0.0, 0.2, 0.1, 0.3]), r"c must be strictly monotone, but c\[1\] = 0.2 and c\[2\] = 0.1"),
    (np.array([0.0, 0.5, np.nan, 1.0]), "c contains NaN"),
    (np.zeros((2, 2)), "c must be one-dimensional"),
    (np.linspace(0, 1, 5), "c must have 4 points"),
])
def test_check_coordinates_names_the_argument(bad, message):
    with pytest.raises(ValueError, match=message):
        check_coordinates("c", bad, 4)


def test_interpolation_matrix_is_exact_where_it_should_be():
    np.testing.assert_array_equal(interpolation_matrix(CELL128, CELL128), np.eye(128))
    fine = grid_coordinates(421)
    pick = interpolation_matrix(fine, NODE85, "nearest")            # nested grids: exact [::5]
    np.testing.assert_array_equal(pick, np.eye(421)[::5])
    f = lambda c: 2.0 - 3.0 * c                                        # noqa: E731  affine: exact, extrapolation too
    np.testing.assert_allclose(interpolation_matrix(CELL128, NODE85) @ f(CELL128), f(NODE85), atol=1e-12)
    np.testing.assert_allclose(interpolation_matrix(NODE85[::-1], CELL128) @ f(NODE85[::-1]), f(CELL128), atol=1e-12)
    assert interpolation_matrix(CELL128, [0.0, 1.0], "nearest")[[0, 1], [0, 127]].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------ loaders and writer
def test_pdebench_layout_file_reports_cell_centred_coordinates(tmp_path):
    a = np.full((2, 16, 16), 3.0, np.float32)
    u = np.ones((2, 16, 16), np.float32)
    p = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    write_darcy(p, a, u, layout="cell", attrs={"generator": "a PDEBench-layout test file", "beta": 1.0})
    d = read_darcy(p)
    assert d.source == "pdebench" and d.layout == "cell"
    np.testing.assert_allclose(d.x, (np.arange(16) + 0.5) / 16)
    np.testing.assert_allclose(d.coords[1], d.y)
    assert read_darcy(p, sub=2).layout == "general"                   # centres of the fine grid, not of the coarse
    np.testing.assert_allclose(read_darcy(p, sub=2).x, d.x[::2])
    write_darcy(p, a, u)
    assert read_darcy(p).layout == "node"
    x = np.linspace(0.0, 1.0, 16) ** 2
    write_darcy(p, a, u, x=x, layout="cell")
    d = read_darcy(p)
    assert d.layout == "general" and classify_coordinates(d.y) == "cell"
    np.testing.assert_allclose(d.x, x, atol=1e-7)


def test_files_without_coordinates_are_read_as_nodes(tmp_path):
    p = tmp_path / "bare.h5"
    with h5py.File(p, "w") as f:
        f["nu"] = np.ones((1, 9, 9), np.float32)
        f["tensor"] = np.ones((1, 1, 9, 9), np.float32)
    d = read_darcy(p, sub=4)
    assert d.layout == "node"
    np.testing.assert_allclose(d.x, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("coord, message", [
    (np.array([0.1, 0.3, 0.2, 0.4, 0.5, 0.6, 0.7]), r"x-coordinate: coordinates must be strictly monotone"),
    (np.linspace(0, 1, 8), "x-coordinate: 8 coordinates, but the grid has 7 points"),
    (np.array([0.0, 0.1, np.inf, 0.4, 0.5, 0.6, 0.7]), "x-coordinate: coordinates contains NaN or Inf"),
    (np.full(7, 0.5), r"x-coordinate: coordinates must be strictly monotone"),
    (np.zeros((7, 1)), "x-coordinate: expected a 1-D numeric dataset"),
])
def test_bad_coordinates_raise_format_error_naming_the_key(tmp_path, coord, message):
    p = tmp_path / "bad_coords.h5"
    with h5py.File(p, "w") as f:
        f["nu"] = np.ones((2, 7, 7), np.float32)
        f["tensor"] = np.ones((2, 1, 7, 7), np.float32)
        f["x-coordinate"] = coord
        f["y-coordinate"] = (np.arange(7) + 0.5) / 7
    with pytest.raises(FormatError, match=message) as e:
        read_darcy(p)
    assert str(p) in str(e.value)


def test_writer_refuses_bad_coordinates_and_layouts(tmp_path):
    a = np.ones((1, 5, 5))
    with pytest.raises(ValueError, match="x must be strictly monotone"):
        write_darcy(tmp_path / "w.h5", a, a, x=[0.0, 0.5, 0.4, 0.8, 1.0])
    with pytest.raises(ValueError, match="y must have 5 points"):
        write_darcy(tmp_path / "w.h5", a, a, y=[0.0, 1.0])
    with pytest.raises(ValueError, match="layout must be 'node' or 'cell'"):
        write_darcy(tmp_path / "w.h5", a, a, layout="centre")
    assert not list(tmp_path.iterdir())


def test_generator_writes_cell_centred_files_with_an_offset(tmp_path):
    p = tmp_path / "cells.h5"
    generate_darcy(p, 1, res=33, sub=4, offset=2, seed=0, workers=1, progress=False, grid="node")
    d = read_darcy(p)
    assert d.resolution == (8, 8) and d.layout == "cell" and d.attrs["offset"] == 2
    with pytest.raises(ValueError, match="offset"):
        generate_darcy(p, 1, res=33, sub=4, offset=4, progress=False)


# ------------------------------------------------------------------ resampling by position
def _old_node_assumption(f128: np.ndarray) -> np.ndarray:
    """The earlier resampling: the 128 points taken as nodes i / 127, bilinear with align_corners=True."""
    return F.interpolate(torch.from_numpy(f128)[None, None], size=(85, 85), mode="bilinear",
                         align_corners=True)[0, 0].numpy()


def test_cell_to_node_to_cell_round_trip_and_the_node_assumption_is_worse():
    f_cell, f_node = smooth(CELL128, CELL128), smooth(NODE85, NODE85)
    t = torch.from_numpy(f_cell)[None, None]
    on_nodes = resample_grid(t, (CELL128, CELL128), (NODE85, NODE85), "linear")
    back = resample_grid(on_nodes, (NODE85, NODE85), (CELL128, CELL128), "linear")[0, 0].numpy()
    ours = _rel(on_nodes[0, 0].numpy(), f_node)
    old = _rel(_old_node_assumption(f_cell), f_node)
    assert ours < 1e-3 and _rel(back, f_cell) < 1e-3
    assert old > 5 * ours, (old, ours)


class _Position(nn.Module):
    """A stand-in network: returns ``smooth`` at the node grid its input is taken to lie on."""

    kind = "lsm"
    config = {"in_channels": 1}

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x):
        g = grid_channels(x).double().numpy()
        out = np.stack([smooth(gi[0, :, 0], gi[1, 0, :]) for gi in g])
        return self.gain * torch.from_numpy(out)[:, None].to(x.dtype)


def _position_operator(s=85):
    ones = torch.ones(1, s, s)
    return NormalizedOperator(_Position(), UnitGaussianNormalizer(0 * ones, ones))


def test_predict_places_a_cell_centred_field_by_its_coordinates():
    op, a = _position_operator(), np.full((2, 128, 128), 3.0, np.float32)
    truth = smooth(CELL128, CELL128)
    by_coords = predict(a, model=op, coords=(CELL128, CELL128))
    np.testing.assert_allclose(predict(a, model=op, coords="cell"), by_coords)
    as_nodes = predict(a, model=op)                                  # default: the 128 points taken as nodes
    ours, old = _rel(by_coords[0], truth), _rel(as_nodes[0], truth)
    assert ours < 2e-3 and old > 5 * ours, (ours, old)
    same = predict(np.full((85, 85), 3.0), model=op, coords="node")   # the training grid: no resampling
    np.testing.assert_allclose(same, smooth(NODE85, NODE85), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"coords\[0\] \(x\) must have 128 points"):
        predict(a, model=op, coords=(NODE85, CELL128))
    with pytest.raises(ValueError, match="coords must be None, 'node', 'cell'"):
        predict(a, model=op, coords="centres")
    with pytest.warns(UserWarning, match="other points"):
        predict(np.full((85, 85), 3.0), model=op, coords="cell", resample=False)


@pytest.mark.parametrize("size, new", [((21, 17), (9, 13)), ((85, 85), (43, 43)), ((43, 43), (85, 85)),
                                       ((128, 128), (85, 85))])
def test_resample_nodes_is_resampling_by_node_coordinates(size, new):
    x = torch.rand(1, 2, *size, dtype=torch.float64)
    src, dst = tuple(grid_coordinates(s) for s in size), tuple(grid_coordinates(s) for s in new)
    torch.testing.assert_close(resample_grid(x, src, dst, "linear"), resample_nodes(x, new, "bilinear"))
    torch.testing.assert_close(resample_grid(x, src, dst, "nearest"), resample_nodes(x, new, "nearest"))


def test_evaluate_reads_the_files_coordinates(tmp_path):
    op = _position_operator()
    p = tmp_path / "pdebench128.h5"
    u = np.repeat(smooth(CELL128, CELL128)[None], 2, axis=0)
    write_darcy(p, np.full_like(u, 3.0), u, layout="cell")
    with pytest.raises(ValueError, match="resample"):
        evaluate(op, p)
    assert evaluate(op, p, resample=True)["rel_l2_mean"] < 2e-3
    same = tmp_path / "cells85.h5"                                   # the training size, other points
    u85 = np.repeat(smooth(*(grid_coordinates(85, "cell"),) * 2)[None], 2, axis=0)
    write_darcy(same, np.full_like(u85, 3.0), u85, layout="cell")
    with pytest.raises(ValueError, match=r"\(cell layout\) are not the model's training points \(node layout\)"):
        evaluate(op, same)
    ev = evaluate(op, same, resample=True)
    assert ev["layout"] == "cell" and ev["rel_l2_mean"] < 2e-3


# ------------------------------------------------------------------ the training grid in the card
def test_training_grid_travels_in_the_card(tmp_path):
    torch.manual_seed(0)
    net = LSM2d(width=8, num_basis=4, num_token=2, levels=2)
    ones = torch.ones(1, 12, 12)
    op = NormalizedOperator(net, UnitGaussianNormalizer(0 * ones, ones), UnitGaussianNormalizer(0 * ones, ones))
    assert op.layout == "node"
    np.testing.assert_array_equal(op.coordinates[0], grid_coordinates(12))
    op.set_coordinates(grid_coordinates(12, "cell"), grid_coordinates(12, "cell"))
    save_pretrained(op, {"data": "test"}, tmp_path / "cells")
    loaded = load_pretrained(tmp_path / "cells", method="lsm", cache=False)
    assert loaded.card["grid"] == {"layout": "cell", "domain": [0.0, 1.0]}
    np.testing.assert_allclose(loaded.net.coordinates[1], grid_coordinates(12, "cell"))
    general = ((np.arange(60) + 0.5) / 60)[::5]
    op.set_coordinates(general, general)
    save_pretrained(op, {"data": "test"}, tmp_path / "general")
    loaded = load_pretrained(tmp_path / "general", method="lsm", cache=False)
    assert loaded.card["grid"]["layout"] == "general"
    np.testing.assert_allclose(loaded.net.coordinates[0], general)
    with pytest.raises(ValueError, match="x must have 12 points"):
        op.set_coordinates(grid_coordinates(11), general)


def test_a_card_without_a_grid_means_nodes(tmp_path):
    torch.manual_seed(0)
    ones = torch.ones(1, 12, 12)
    op = NormalizedOperator(LSM2d(width=8, num_basis=4, num_token=2, levels=2), UnitGaussianNormalizer(0 * ones, ones))
    op.set_coordinates(grid_coordinates(12, "cell"), grid_coordinates(12, "cell"))
    _, card_path = save_pretrained(op, {"data": "test"}, tmp_path / "old")
    card = json.loads(card_path.read_text())
    del card["grid"]                                                  # as cards written before grids were recorded
    card_path.write_text(json.dumps(card))
    net = load_pretrained(tmp_path / "old", method="lsm", cache=False).net
    assert net.layout == "node"
    np.testing.assert_array_equal(net.coordinates[0], grid_coordinates(12))
    card["grid"] = {"layout": "general", "x": [0.5] * 12, "y": list(grid_coordinates(12))}
    card_path.write_text(json.dumps(card))
    with pytest.raises(FormatError, match="grid: x must be strictly monotone"):
        load_pretrained(tmp_path / "old", method="lsm", cache=False)


def test_shipped_card_records_its_training_points():
    net = load_pretrained("lsm-darcy").net
    assert net.layout == "general" and net.resolution == (85, 85)
    np.testing.assert_allclose(net.coordinates[0], ((np.arange(421) + 0.5) / 421)[::5], rtol=1e-6)
    assert same_points(net.coordinates[1], NODE85)                   # nodes to a tenth of a cell


# ------------------------------------------------------------------ the shipped model across layouts
@pytest.mark.slow
def test_shipped_model_on_128_cell_centres_is_within_1_2x_of_its_85_node_error():
    from krylearn.solvers.lsm.bench_layout import layout_study

    r = layout_study("lsm-darcy", n=12, seed=7, device="cpu")
    assert r["ratio_cell"] < 1.2, r
    assert r["ratio_cell_as_nodes"] > 1.5 * r["ratio_cell"], r
