"""``method="fcg-lsm"``: flexible CG with an LSM preconditioner converges whatever the network does, its
torch stencil is the matrix, the shipped network beats an untrained one and Jacobi on held-out Darcy fields,
and training lowers the held-out loss."""

import json

import numpy as np
import pytest
import scipy.sparse
import torch

import krylearn
from krylearn.cli.main import main
from krylearn.operators.darcy import darcy_system
from krylearn.solvers.fcg_lsm import LSMPreconditioner, grid_apply, stencil_tensors
from krylearn.solvers.fcg_lsm.recipe import darcy_operator, train_fcg_lsm
from krylearn.solvers.fcg_lsm.train import random_fields
from krylearn.solvers.flexible import FCGStepper
from krylearn.solvers.learned import load_pretrained, save_pretrained
from krylearn.solvers.lsm.model import LSM2d
from krylearn.solvers.multigrid import grid_stencil


def rel_residual(A, b, x):
    return np.linalg.norm(b - A @ np.asarray(x)) / np.linalg.norm(b)


def random_net(seed=0, scale=1.0, **kw):
    torch.manual_seed(seed)
    net = LSMPreconditioner(width=8, **kw)
    if scale != 1.0:
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(scale)
    return net.eval()


def test_torch_stencil_equals_the_matrix():
    A, _ = darcy_operator(23, 5, 0)
    d, w = grid_stencil(None, A, (21, 21))
    st = stencil_tensors(d, w, dtype=torch.float64)
    x = np.random.default_rng(0).standard_normal((3, 21 * 21))
    y = grid_apply(st, torch.from_numpy(x).reshape(3, 21, 21)).reshape(3, -1).numpy()
    ref = (A @ x.T).T
    assert np.abs(y - ref).max() <= 1e-12 * np.abs(ref).max()


def _run_fcg(A, b, apply_M, history=8, maxiter=2000):
    op = lambda v: torch.from_numpy((A @ v.numpy().T).T)  # noqa: E731
    dinv = torch.from_numpy(1.0 / A.diagonal())
    st = FCGStepper(op, apply_M, lambda r: r * dinv, history=history)
    x = torch.zeros(1, b.size, dtype=torch.float64)
    r = torch.from_numpy(b)[None].clone()
    st.start(x, r, r.clone())
    active = torch.ones(1, dtype=torch.bool)
    for it in range(1, maxiter + 1):
        rn, _ = st.step(active)
        if float(rn[0]) <= 1e-10 * np.linalg.norm(b):
            return it, x[0].numpy(), st.info()
    return maxiter, x[0].numpy(), st.info()


def test_fcg_with_the_exact_inverse_takes_one_step_and_with_jacobi_matches_pcg():
    A, b = darcy_operator(19, 1, 0)
    lu = scipy.sparse.linalg.splu(A.tocsc())
    it, x, _ = _run_fcg(A, b, lambda r: torch.from_numpy(lu.solve(r[0].numpy()))[None])
    assert it == 1 and rel_residual(A, b, x) <= 1e-10
    dinv = torch.from_numpy(1.0 / A.diagonal())
    it_j, x, info = _run_fcg(A, b, lambda r: r * dinv)
    ref = krylearn.solve(A, b, method="pcg-jacobi", rtol=1e-10)
    assert rel_residual(A, b, x) <= 1e-10 and info["fallback_steps"] == 0
    assert abs(it_j - ref.iterations) <= 2


@pytest.mark.parametrize("bad", ["nan", "negative", "zero"])
def test_fcg_survives_a_useless_preconditioner(bad):
    A, b = darcy_operator(19, 2, 0)
    fn = {"nan": lambda r: torch.full_like(r, float("nan")), "negative": lambda r: -r,
          "zero": lambda r: torch.zeros_like(r)}[bad]
    it, x, info = _run_fcg(A, b, fn)
    assert rel_residual(A, b, x) <= 1e-10
    assert info["fallback_steps"] == it


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_random_network_still_converges(scale):
    A, b = darcy_operator(33, 3, 0)
    res = krylearn.solve(A, b, method="fcg-lsm", model=random_net(scale=scale), grid_shape=(31, 31), rtol=1e-8)
    assert res.converged and rel_residual(A, b, res.x) <= 1e-8


def test_shipped_network_beats_untrained_and_jacobi_on_held_out_fields():
    for i in range(2):
        A, b = darcy_operator(85, 4242, i)
        shipped = krylearn.solve(A, b, method="fcg-lsm", grid_shape=(83, 83), rtol=1e-8)
        untrained = krylearn.solve(A, b, method="fcg-lsm", model=random_net(), grid_shape=(83, 83), rtol=1e-8)
        jacobi = krylearn.solve(A, b, method="pcg-jacobi", rtol=1e-8)
        assert shipped.converged and rel_residual(A, b, shipped.x) <= 1e-8
        assert shipped.iterations < untrained.iterations / 2
        assert shipped.iterations < jacobi.iterations / 2
        assert shipped.info["model"] == "fcg-lsm-darcy"


def test_poisson_grid_and_batches():
    A = krylearn.operators.PoissonGrid((24, 20), boundary="empty")
    B = np.random.default_rng(0).standard_normal((2, 24 * 20))
    res = krylearn.solve(A, B, method="fcg-lsm", rtol=1e-8)
    assert all(res.converged)
    csr = A.to_sparse()
    for k in range(2):
        assert rel_residual(csr, B[k], res.x[k]) <= 1e-8


def test_bad_input_names_the_problem():
    A, b = darcy_system(np.ones((12, 12)))
    with pytest.raises(ValueError, match="grid_shape"):
        krylearn.solve(A, b, method="fcg-lsm")
    with pytest.raises(ValueError, match="grid_shape"):
        krylearn.solve(A, b, method="fcg-lsm", grid_shape=(9, 11))
    A3 = krylearn.operators.PoissonGrid((6, 6, 6), boundary="empty")
    with pytest.raises(ValueError, match="2D"):
        krylearn.solve(A3, np.ones(216), method="fcg-lsm")
    Apos = A.copy()
    Apos.data[Apos.data < 0] *= -1
    with pytest.raises(ValueError, match="off-diagonal"):
        krylearn.solve(Apos, b, method="fcg-lsm", grid_shape=(10, 10))
    with pytest.raises(ValueError, match="history"):
        krylearn.solve(A, b, method="fcg-lsm", grid_shape=(10, 10), history=0)
    with pytest.raises(TypeError, match="LSMPreconditioner"):
        krylearn.solve(A, b, method="fcg-lsm", grid_shape=(10, 10), model=torch.nn.Linear(2, 2))


def test_batch_independent_norms():
    x = torch.randn(3, 2, 20, 20)
    for norm in ("group", "none"):
        torch.manual_seed(0)
        net = LSM2d(2, 1, width=8, norm=norm).train()
        assert torch.allclose(net(x[:1]), net(x)[:1], atol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        LSM2d(2, 1, width=8, norm="layer")
    assert "norm" not in LSM2d(1, 1, width=8).config  # the paper's configuration keeps its old card


def test_weights_round_trip(tmp_path):
    net = random_net(seed=4, pre=2, post=0)
    save_pretrained(net, {"name": "t"}, tmp_path / "t")
    back, card = load_pretrained(tmp_path / "t", method="fcg_lsm")
    assert card["config"]["pre"] == 2 and card["config"]["post"] == 0
    A, _ = darcy_operator(21, 6, 0)
    st = stencil_tensors(*grid_stencil(None, A, (19, 19)))
    r = random_fields(2, (19, 19), torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(net(st, r), back(st, r))


def test_training_lowers_the_held_out_loss():
    out = train_fcg_lsm(sizes=(17, 33), val_sizes=(33,), fields=6, val_fields=2, width=8, steps=40, batch=4,
                        lr=3e-3, progress=False)
    assert out["best_val"] < out["untrained_val"] - 0.5
    assert out["data"]["train_sizes"] == [17, 33]


def test_cli_bench_and_train(tmp_path, capsys):
    assert main(["bench", "fcg-lsm", "--sizes", "21", "--fields", "1", "--methods", "pcg-ic,fcg-lsm",
                 "--out", str(tmp_path / "b"), "--quiet"]) == 0
    rep = json.loads((tmp_path / "b" / "fcg-lsm.json").read_text())
    assert {r["method"] for r in rep["rows"]} == {"pcg-ic", "fcg-lsm"} and all(r["converged"] for r in rep["rows"])
    assert (tmp_path / "b" / "fcg-lsm-scaling.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["bench", "fcg-lsm", "--sizes", "abc"])
    assert main(["bench", "fcg-lsm", "--sizes", "3", "--out", str(tmp_path / "c")]) != 0


def test_network_cycle_paths_agree_and_beat_ic_on_a_larger_grid():
    from krylearn.operators.convert import as_operator
    from krylearn.solvers.fcg_lsm.cycle import NetworkCycle
    from krylearn.solvers.fcg_lsm.solve import load_model

    A, b = darcy_operator(161, 4243, 0)
    net, _ = load_model("fcg-lsm-darcy")
    C = NetworkCycle(as_operator(A), net=net, stencil=grid_stencil(None, A, (159, 159)))
    assert C.levels == 2 and C.info["net_grid"] == (80, 80)
    r = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 159 * 159)))
    z_compiled = C._solve(r)
    z_torch = C._cycle(0, r.reshape(2, 159, 159)).reshape(2, -1)
    assert torch.allclose(z_compiled, z_torch, rtol=0, atol=1e-5 * float(z_torch.abs().max()))
    res = krylearn.solve(A, b, method="fcg-lsm", grid_shape=(159, 159), rtol=1e-8)
    ic = krylearn.solve(A, b, method="pcg-ic", rtol=1e-8)
    assert res.converged and rel_residual(A, b, res.x) <= 1e-8
    assert res.iterations <= ic.iterations / 3 and res.info["fallback_steps"] == 0
