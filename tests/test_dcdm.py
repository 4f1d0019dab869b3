"""DCDM: network, solver safeguards, shipped weights, training, Ritz vectors."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch

import krylearn
from krylearn.utils.errors import FormatError
from krylearn.operators.stencil import FLUID, PoissonGrid
from krylearn.solvers.dcdm import DCDMNet, dcdm, load_model
from krylearn.solvers.dcdm.ritz import RitzSampler, lanczos_ritz
from krylearn.solvers.dcdm.train import TrainingSystem, dcdm_loss, train_dcdm
from krylearn.solvers.learned import available, save_weights

from _problems import full_grid, rhs


@pytest.fixture(scope="module")
def smoke2d():
    from krylearn.benchmarks.poisson import smoke_problem

    return smoke_problem("smoke-obstacle", 2, 48, 10, seed=0)


@pytest.fixture(scope="module")
def smoke3d():
    from krylearn.benchmarks.poisson import smoke_problem

    return smoke_problem("smoke-obstacle", 3, 20, 6, seed=0)


def _random_net(dim=2, seed=0):
    torch.manual_seed(seed)
    net = DCDMNet(dim, width=8, levels=2)
    for p in net.parameters():  # a genuinely random network, biases included
        torch.nn.init.normal_(p, std=0.3)
    return net


# ------------------------------------------------------------------ model
@pytest.mark.parametrize("dim,grid", [(2, (13, 22)), (2, (32, 32)), (3, (7, 10, 9))])
def test_network_any_grid_and_masked(dim, grid):
    net = DCDMNet(dim, width=4, levels=3)
    fluid = torch.rand(grid) > 0.3
    r = torch.randn((2,) + grid) * fluid
    q = net(r, fluid)
    assert q.shape == r.shape
    assert torch.all(q[:, ~fluid] == 0)


def test_network_input_scale_invariant():
    net = _random_net()
    fluid = torch.ones(16, 16)
    r = torch.randn(1, 16, 16)
    q = net(r, fluid)
    torch.testing.assert_close(net(1e-3 * r, fluid), q, rtol=1e-4, atol=1e-5 * q.abs().max().item())


def test_network_rejects_wrong_dimension():
    with pytest.raises(ValueError, match="dim"):
        DCDMNet(4)
    with pytest.raises(ValueError, match="r must have shape"):
        DCDMNet(3)(torch.zeros(1, 8, 8), torch.ones(8, 8))


# ----------------------------------------------------------------- solver
def test_untrained_network_converges_through_safeguard(smoke2d):
    p = smoke2d
    for smoother in (1, 0):  # the default, and the paper's pure method
        res = dcdm(p.A, p.b, model=_random_net(), grid_shape=p.grid_shape, rtol=1e-6, smoother=smoother)
        assert res.converged, smoother
        true = np.linalg.norm(p.b - p.A @ res.x) / np.linalg.norm(p.b)
        assert true <= 1e-6, smoother


class _NaNNet(DCDMNet):
    def forward(self, r, fluid):
        return torch.full_like(r, float("nan"))


def test_nonfinite_network_output_falls_back_every_step():
    A, solid = full_grid()
    b = rhs(A.shape[0], zero=solid)
    res = dcdm(A, b, model=_NaNNet(2, width=2, levels=1), grid_shape=(16, 16), rtol=1e-8)
    assert res.converged
    assert res.info["fallback_steps"] == res.iterations
    assert np.linalg.norm(b - A @ res.x) <= 1e-8 * np.linalg.norm(b)
    assert np.all(res.x[solid] == 0)


def test_full_grid_matrix_equals_poissongrid_operator(smoke2d):
    p = smoke2d
    op = PoissonGrid(p.grid_shape, p.flags, boundary=tuple(p.meta["boundary"]))
    assert abs(op.to_sparse() - p.A).max() == 0
    net = _random_net()
    a = dcdm(p.A, p.b, model=net, grid_shape=p.grid_shape, rtol=1e-6)
    b = dcdm(op, p.b, model=net, rtol=1e-6)
    c = dcdm(p.A, p.b, model=net, grid_shape=p.grid_shape, flags=p.flags, rtol=1e-6)
    # the stencil and the CSR product round differently, which can shift the stopping step slightly
    assert abs(a.iterations - b.iterations) <= 3
    assert np.linalg.norm(p.b - p.A @ b.x) <= 1e-6 * np.linalg.norm(p.b)
    assert np.linalg.norm(a.x - b.x) <= 1e-5 * np.linalg.norm(a.x)
    assert a.iterations == c.iterations and np.linalg.norm(a.x - c.x) == 0


def test_batched_matches_one_at_a_time(smoke2d):
    p = smoke2d
    net = _random_net(seed=1)
    rng = np.random.default_rng(1)
    B = np.stack([p.b, p.b * (rng.random(p.b.shape) + 0.5), np.zeros_like(p.b)])
    res = dcdm(p.A, B, model=net, grid_shape=p.grid_shape, rtol=1e-6)
    assert list(res.reason) == ["converged", "converged", "zero_rhs"]
    for i in range(2):
        one = dcdm(p.A, B[i], model=net, grid_shape=p.grid_shape, rtol=1e-6)
        # batched network calls round differently in float32: same path up to that rounding
        assert abs(one.iterations - res.iterations[i]) <= 2
        assert np.linalg.norm(B[i] - p.A @ res.x[i]) <= 1e-6 * np.linalg.norm(B[i])
        assert np.linalg.norm(one.x - res.x[i]) <= 1e-4 * np.linalg.norm(one.x)
    assert np.all(res.x[2] == 0)


def test_bad_arguments_named(smoke2d):
    p = smoke2d
    net = _random_net()
    with pytest.raises(ValueError, match="grid_shape"):
        dcdm(p.A, p.b, model=net)
    with pytest.raises(ValueError, match="grid_shape"):
        dcdm(p.A, p.b, model=net, grid_shape=(47, 48))
    with pytest.raises(ValueError, match="3-D but the grid"):
        dcdm(p.A, p.b, model=DCDMNet(3, width=2, levels=1), grid_shape=p.grid_shape)
    with pytest.raises(ValueError, match="history"):
        dcdm(p.A, p.b, model=net, grid_shape=p.grid_shape, history=0)
    with pytest.raises(ValueError, match="fallback"):
        dcdm(p.A, p.b, model=net, grid_shape=p.grid_shape, fallback="amg")
    with pytest.raises(ValueError, match="flags"):
        dcdm(p.A, p.b, model=net, grid_shape=p.grid_shape, flags=np.zeros(7))
    with pytest.raises(ValueError, match="model"):
        krylearn.solve(p.A, p.b, method="dcdm", model="no-such-model", grid_shape=p.grid_shape)


# ------------------------------------------------------- shipped weights
def test_shipped_models_listed():
    assert {"dcdm-2d", "dcdm-3d"} <= set(available("dcdm"))
    for name in ("dcdm-2d", "dcdm-3d"):
        net, card = load_model(name)
        for key in ("command", "data", "hardware", "seconds", "metrics", "config"):
            assert key in card, (name, key)


def test_shipped_2d_beats_cg(smoke2d):
    p = smoke2d
    res = krylearn.solve(p.A, p.b, method="dcdm", model="dcdm-2d", grid_shape=p.grid_shape, rtol=1e-6)
    cg = krylearn.solve(p.A, p.b, method="cg", rtol=1e-6)
    assert res.converged and cg.converged
    assert np.linalg.norm(p.b - p.A @ res.x) <= 1e-6 * np.linalg.norm(p.b)
    assert res.iterations < cg.iterations
    untrained = dcdm(p.A, p.b, model=_random_net(), grid_shape=p.grid_shape, rtol=1e-6)
    assert res.iterations < untrained.iterations
    pure = krylearn.solve(p.A, p.b, method="dcdm-pure", grid_shape=p.grid_shape, rtol=1e-6)
    assert pure.converged and pure.method == "dcdm-pure" and pure.info["smoother_steps"] == 0
    assert pure.iterations < cg.iterations


def test_shipped_3d_beats_cg(smoke3d):
    p = smoke3d
    res = krylearn.solve(p.A, p.b, method="dcdm", model="dcdm-3d", grid_shape=p.grid_shape, rtol=1e-6)
    cg = krylearn.solve(p.A, p.b, method="cg", rtol=1e-6)
    assert res.converged
    assert res.info["model"] == "dcdm-3d"
    assert res.iterations < cg.iterations


def test_corrupt_weights_raise_format_error(tmp_path):
    save_weights(DCDMNet(2, width=2, levels=1).state_dict(), {"config": {"dim": 2, "width": 2, "levels": 1}},
                 tmp_path / "m")
    (tmp_path / "m.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(FormatError, match="safetensors"):
        load_model(tmp_path / "m")


# ------------------------------------------------------------------- Ritz
def test_lanczos_ritz_extremes_match_eigenvalues():
    A, solid = full_grid()
    fluid_rows = ~solid
    dense = A.toarray()[np.ix_(fluid_rows, fluid_rows)]
    lam = scipy.linalg.eigvalsh(dense)
    values, vectors = lanczos_ritz(A, 120, seed=0)
    assert values[0] >= lam[0] - 1e-10 and values[-1] <= lam[-1] + 1e-10
    assert abs(values[0] - lam[0]) < 1e-8 * lam[-1]
    assert abs(values[-1] - lam[-1]) < 1e-8 * lam[-1]
    assert np.all(vectors[:, solid] == 0)
    v = vectors[0].astype(np.float64)
    assert np.linalg.norm(A @ v - values[0] * v) < 1e-5 * lam[-1]
    G = vectors @ vectors.T
    assert np.abs(G - np.eye(len(values))).max() < 1e-4


def test_ritz_sampler_unit_and_reproducible():
    V = np.linalg.qr(np.random.default_rng(0).standard_normal((50, 20)))[0].T.astype(np.float32)
    s1, s2 = RitzSampler(V, seed=3), RitzSampler(V, seed=3)
    b1 = s1.sample(4)
    torch.testing.assert_close(b1, s2.sample(4))
    torch.testing.assert_close(torch.linalg.vector_norm(b1, dim=1), torch.ones(4))
    low = (b1 @ torch.as_tensor(V[:11]).T).square().sum() / (b1 @ torch.as_tensor(V).T).square().sum()
    assert low > 0.7  # 9x weights on the lowest m/2 + m/20 vectors


# --------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_training():
    from krylearn.benchmarks.poisson import smoke_problem

    p = smoke_problem("smoke-obstacle", 2, 16, 4, seed=5)
    _, V = lanczos_ritz(p.A, 60, seed=0)
    return TrainingSystem(p.A, p.grid_shape, p.flags, V)


def test_training_beats_untrained_on_held_out(tiny_training):
    s = tiny_training
    cfg = {"width": 8, "levels": 2}
    out = train_dcdm([s], config=cfg, steps=120, batch=8, lr=3e-3, seed=0, progress=False, val_every=40)
    fresh = DCDMNet(2, **cfg)
    torch.manual_seed(0)
    fresh = DCDMNet(2, **cfg)
    held = RitzSampler(s.vectors, seed=999).sample(32)
    from krylearn.operators.sparse import SparseMatrix

    op = SparseMatrix(s.A.astype(np.float32))
    fluid = torch.as_tensor(s.flags == FLUID, dtype=torch.float32)
    with torch.no_grad():
        trained = dcdm_loss(out["net"], held, fluid, op, s.grid_shape).item()
        untrained = dcdm_loss(fresh, held, fluid, op, s.grid_shape).item()
    assert trained < 0.8 * untrained


def test_training_resume_is_exact(tiny_training, tmp_path):
    s = tiny_training
    cfg = {"width": 4, "levels": 2}
    kw = dict(config=cfg, batch=4, lr=1e-3, seed=0, progress=False, val_every=5, checkpoint_every=5)
    full = train_dcdm([s], steps=10, **kw)["net"]
    train_dcdm([s], steps=5, out=tmp_path, **kw)
    resumed = train_dcdm([s], steps=10, out=tmp_path, **kw)["net"]
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    with pytest.raises(ValueError, match="different run.*lr"):
        train_dcdm([s], steps=12, out=tmp_path, **{**kw, "lr": 2e-3})


def test_cli_train_writes_weights_and_card(tmp_path):
    from krylearn.cli.main import main

    rc = main(["train", "dcdm", "--arch", "cnn", "--dim", "2", "--n", "12", "--ritz", "30", "--steps", "6", "--batch", "2",
               "--width", "4", "--levels", "2", "--out", str(tmp_path), "-q"])
    assert rc == 0
    card = json.loads((tmp_path / "dcdm-2d.json").read_text())
    assert card["training"]["steps"] == 6 and card["config"]["width"] == 4
    net, _ = load_model(tmp_path / "dcdm-2d")
    assert isinstance(net, DCDMNet)
    A, solid = full_grid()
    res = dcdm(A, rhs(A.shape[0], zero=solid), model=net, grid_shape=(16, 16), rtol=1e-6)
    assert res.converged
