"""DCDM's learned V-cycle (``dcdm-mg-*``, the default model): a valid CG preconditioner whatever its weights,
the same on its compiled and torch paths, better than the untrained cycle on held-out frames when trained,
and loadable beside the paper's CNN."""

import json

import numpy as np
import pytest
import scipy.sparse
import torch

import krylearn
from krylearn.cli.main import main
from krylearn.solvers.dcdm.multigrid_model import DCDMMultigrid, stencil_features
from krylearn.solvers.dcdm.recipe_multigrid import pressure_systems
from krylearn.solvers.learned import load_pretrained, save_pretrained
from krylearn.solvers.multigrid import MultigridPreconditioner, coarsen, grid_stencil
from krylearn.utils.errors import FormatError

from test_multigrid import rhs_for, scene


def random_model(dim, seed=0, scale=3.0):
    net = DCDMMultigrid(dim)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("shape", [(40, 36), (14, 18, 16)])
def test_random_cycle_is_symmetric_positive_and_paths_agree(shape):
    A = scene(shape, seed=3)
    M = MultigridPreconditioner(A, learned=random_model(len(shape)))
    fluid = A.flags.cpu().numpy().reshape(-1) == 0
    R = np.random.default_rng(1).standard_normal((12, A.shape[0])) * fluid
    Z = M._solve(torch.from_numpy(R)).numpy()
    Zt = M._cycle(0, torch.from_numpy(R).reshape((12,) + shape)).reshape(12, -1).numpy()
    assert np.abs(Z - Zt).max() <= 1e-12 * np.abs(Zt).max()
    G = R @ Z.T
    assert np.abs(G - G.T).max() <= 1e-10 * np.abs(G).max()
    assert np.linalg.eigvalsh((G + G.T) / 2).min() > 0
    assert np.all(Z[:, ~fluid] == 0)


def test_features_read_the_boundary():
    A = scene((16, 16), seed=0)
    d, w = grid_stencil(A, None)
    rho, delta = stencil_features(d, w)
    fluid = d > 0
    assert rho[fluid].max() == pytest.approx(1.0) and delta[fluid].max() == pytest.approx(1.0)
    air_next = fluid & (rho < 1)  # next to an empty cell: a Dirichlet face, so the row is strictly dominant
    assert air_next.any() and np.all(rho[~fluid] == 0)


@pytest.mark.parametrize("shape", [(48, 40), (16, 20, 18)])
def test_random_model_still_converges(shape):
    A = scene(shape, seed=5)
    b = rhs_for(A, seed=2)
    res = krylearn.solve(A, b, method="dcdm", model=random_model(len(shape), seed=4), rtol=1e-10)
    assert res.converged
    r = b - A.to_sparse() @ res.x
    assert np.linalg.norm(r) <= 1e-10 * np.linalg.norm(b) * 1.0001


def test_pure_neumann_tank_is_solved_like_cg():
    A = scene((32, 32), seed=2, top="solid", air=False)  # closed: constants are in the null space
    b = rhs_for(A, seed=3)
    b[A.flags.cpu().numpy().reshape(-1) == 0] -= b[A.flags.cpu().numpy().reshape(-1) == 0].mean()
    res = krylearn.solve(A, b, method="dcdm", rtol=1e-9)
    assert res.converged and res.info["null_space"] == 1


@pytest.fixture(scope="module")
def held_out_2d():
    return pressure_systems(("smoke-obstacle", "smoke-plume"), 2, 96, seed=0, frames=11, take=(10,))


def test_shipped_2d_model_beats_the_untrained_cycle_on_held_out_frames(held_out_2d):
    for op, b in held_out_2d:
        trained = krylearn.solve(op, b, method="dcdm", rtol=1e-6)
        untrained = krylearn.solve(op, b, method="dcdm", model=DCDMMultigrid(2), rtol=1e-6)
        mg2 = krylearn.solve(op, b, method="mgpcg", rtol=1e-6, sweeps=2)  # the cycle the model's 2 sweeps learn
        mg = krylearn.solve(op, b, method="mgpcg", rtol=1e-6)  # mgpcg's default (3 sweeps in 2D)
        assert trained.converged and trained.info["model"] == "dcdm-mg-2d"
        assert untrained.iterations == mg2.iterations  # the untrained cycle is mgpcg's
        assert trained.iterations <= 0.8 * mg2.iterations
        assert trained.iterations < mg.iterations


def test_shipped_3d_model_beats_the_untrained_cycle():
    for op, b in pressure_systems(("smoke-obstacle",), 3, 24, seed=0, frames=11, take=(10,)):
        trained = krylearn.solve(op, b, method="dcdm", rtol=1e-6)
        mg = krylearn.solve(op, b, method="mgpcg", rtol=1e-6)
        assert trained.converged and trained.info["model"] == "dcdm-mg-3d"
        assert trained.iterations < mg.iterations


def test_stored_matrix_and_grid_operator_agree(held_out_2d):
    op, b = held_out_2d[0]
    on_grid = krylearn.solve(op, b, method="dcdm", rtol=1e-8)
    on_csr = krylearn.solve(op.to_sparse(), b, method="dcdm", grid_shape=op.grid_shape, rtol=1e-8)
    assert on_grid.iterations == on_csr.iterations
    assert np.allclose(on_grid.x, on_csr.x, atol=1e-8 * np.abs(on_grid.x).max())


def test_the_papers_cnn_is_still_loadable(held_out_2d):
    op, b = held_out_2d[0]
    cnn = krylearn.solve(op, b, method="dcdm", model="dcdm-2d", rtol=1e-5)
    pure = krylearn.solve(op, b, method="dcdm-pure", rtol=1e-5)
    assert cnn.converged and cnn.info["model"] == "dcdm-2d" and "fallback_steps" in cnn.info
    assert pure.info["model"] == "dcdm-2d"


def test_weights_round_trip_and_bad_kind(tmp_path):
    net = random_model(3, seed=7)
    wpath, cpath = save_pretrained(net, {"name": "t"}, tmp_path / "mg")
    card = json.loads(cpath.read_text())
    assert card["kind"] == "multigrid" and card["method"] == "dcdm"
    back, _ = load_pretrained(tmp_path / "mg", method="dcdm", cache=False)
    assert isinstance(back, DCDMMultigrid)
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v.float())
    card["kind"] = "transformer"
    cpath.write_text(json.dumps(card))
    with pytest.raises(FormatError, match="kind"):
        load_pretrained(tmp_path / "mg", method="dcdm", cache=False)


def test_train_dcdm_multigrid_beats_untrained_on_validation(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "dcdm", "--n", "16", "--steps", "40", "--out", str(out), "-q"]) == 0
    card = json.loads((out / "dcdm-mg-2d.json").read_text())
    m = card["metrics"]
    assert m["best_val_loss"] < m["untrained_val_loss"] - 0.1  # log residual reduction on held-out frames
    frames = m["validation_frames"]
    assert sum(f["iterations"] for f in frames) <= sum(f["untrained_iterations"] for f in frames)
    net, _ = load_pretrained(out / "dcdm-mg-2d", method="dcdm", cache=False)
    assert isinstance(net, DCDMMultigrid)


def test_compiled_weights_equal_the_training_tensors():
    A = scene((30, 26), seed=3)
    net = random_model(2, seed=9)
    M = MultigridPreconditioner(A, learned=net)
    st = [grid_stencil(A, None)]
    for _ in range(M.levels - 1):
        st.append(coarsen(*st[-1]))
    for i, (f, c) in enumerate(zip(M._levels, M._levels[1:])):
        W, s = net.tensors(i, *st[i], *st[i + 1])
        for a, t in zip(f.sweep_np, W):
            assert np.allclose(a.reshape(f.shape), t.detach().numpy(), rtol=1e-6, atol=0)
        assert np.allclose(f.scale_np.reshape(c.shape), s.detach().numpy(), rtol=1e-6, atol=0)


def test_a_matrix_the_cycle_cannot_coarsen_falls_back_to_the_cnn():
    A = scene((16, 16), seed=1)
    L = A.to_sparse()
    D = scipy.sparse.diags(np.linspace(0.5, 3.0, L.shape[0]))
    B = (D @ L @ D).tocsr()  # SPD, but not a diagonally dominant grid Laplacian
    b = rhs_for(A, seed=4)
    with pytest.warns(UserWarning, match="CNN 'dcdm-2d'"):
        res = krylearn.solve(B, b, method="dcdm", grid_shape=(16, 16), rtol=1e-8)
    assert res.converged and res.info["model"] == "dcdm-2d"
    with pytest.raises(ValueError, match="diagonally dominant.*: dcdm needs a grid Laplacian"):  # dcdm's own name
        krylearn.solve(B, b, method="dcdm", model="dcdm-mg-2d", grid_shape=(16, 16))


def test_bad_model_options():
    with pytest.raises(ValueError, match="sweeps"):
        DCDMMultigrid(2, sweeps=0)
    with pytest.raises(ValueError, match="knots"):
        DCDMMultigrid(2, knots=(1, 4))
    with pytest.raises(ValueError, match="dim"):
        DCDMMultigrid(4)
    A = scene((16, 16))
    with pytest.raises(ValueError, match="3-D"):
        krylearn.solve(A, rhs_for(A), method="dcdm", model=DCDMMultigrid(3))
