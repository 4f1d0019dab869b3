"""LSM, its FNO / U-Net baselines, the training loop, weights and predict."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from krylearn.solvers.lsm import (
    FNO2d,
    LSM2d,
    NeuralSpectralBlock2d,
    NormalizedOperator,
    UNet2d,
    UnitGaussianNormalizer,
    evaluate,
    load_pretrained,
    predict,
    relative_l2,
    save_pretrained,
    train_operator,
)
import krylearn.solvers.lsm.train as lsm_train
from krylearn.solvers.lsm.model import lsm_plan
from krylearn.solvers.lsm.predict import resample_nodes


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def poisson_pairs(n, s=16, seed=0):
    """Smooth periodic a and u with -Laplace(u) = a - mean(a) on the unit torus (FFT)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(s, 1.0 / s)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    k2 = kx ** 2 + ky ** 2
    spec = (rng.standard_normal((n, s, s)) + 1j * rng.standard_normal((n, s, s))) * np.exp(-k2 / 8.0)
    a = np.fft.ifft2(spec).real * s + 1.0
    uhat = np.where(k2 > 0, np.fft.fft2(a) / (4 * np.pi ** 2 * np.where(k2 > 0, k2, 1)), 0)
    return a.astype(np.float32), np.fft.ifft2(uhat).real.astype(np.float32)


def tiny_lsm(levels=2):
    torch.manual_seed(0)
    return LSM2d(width=8, num_basis=4, num_token=2, levels=levels)


# ------------------------------------------------------------------ architecture
def test_parameter_counts_match_the_authors_models():
    assert nparams(LSM2d()) == 19_187_457                          # Darcy: 1 -> 1, w 64
    assert nparams(LSM2d(in_channels=10, width=64)) == 19_188_033   # Navier-Stokes
    assert nparams(LSM2d(in_channels=2, width=48)) == 10_804_913    # Pipe
    assert nparams(LSM2d(in_channels=2, width=32)) == 4_812_833     # Airfoil


def test_padding_and_patch_rule_reproduces_the_hand_picked_settings():
    assert lsm_plan(85) == ((6, 6), (96, 96))
    assert lsm_plan(64) == ((4, 4), (64, 64))
    assert lsm_plan(129) == ((9, 9), (144, 144))
    assert lsm_plan(41) == ((3, 3), (48, 48))
    assert lsm_plan((221, 51)) == ((14, 4), (224, 64))
    assert lsm_plan(85, patch=3) == ((3, 3), (96, 96))
    assert lsm_plan(37, levels=3, patch=(2, 5)) == ((2, 5), (40, 40))


@pytest.mark.parametrize("s", [85, 64, 37])
@pytest.mark.parametrize("make", [lambda: LSM2d(width=16), lambda: LSM2d(width=8, patch=3, levels=3),
                                  lambda: FNO2d(modes=8, width=8), lambda: UNet2d(width=8)],
                         ids=["lsm", "lsm-fixed-patch", "fno", "unet"])
def test_forward_shapes(make, s):
    torch.manual_seed(0)
    net = make().eval()
    y = net(torch.randn(2, 1, s, s))
    assert y.shape == (2, 1, s, s) and torch.isfinite(y).all()


def test_forward_rectangular_and_multichannel():
    net = LSM2d(in_channels=3, out_channels=2, width=8, levels=3).eval()
    assert net(torch.randn(1, 3, 23, 41)).shape == (1, 2, 23, 41)
    fno = FNO2d(modes=4, width=8, in_channels=3, out_channels=2)
    assert fno(torch.randn(1, 3, 23, 41)).shape == (1, 2, 23, 41)


def test_model_rejects_channel_last_input():
    with pytest.raises(ValueError, match="x must have shape"):
        LSM2d(width=8)(torch.randn(2, 16, 16, 1))
    with pytest.raises(ValueError, match="width"):
        LSM2d(width=12)


def test_nsb_preserves_shape_and_acts_patch_by_patch():
    torch.manual_seed(0)
    blk = NeuralSpectralBlock2d(16, num_basis=6, num_token=3)
    x = torch.randn(2, 16, 12, 8)
    y = blk(x, (4, 4))
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, :, 4:8, 0:4] += torch.randn(2, 16, 4, 4)   # change one patch only
    y2 = blk(x2, (4, 4))
    changed = (y2 - y).abs().amax(dim=(0, 1)) > 0
    assert changed[4:8, 0:4].all()
    changed[4:8, 0:4] = False
    assert not changed.any()
    with pytest.raises(ValueError, match="not divisible by patch"):
        blk(x, (5, 4))


def test_lsm_output_does_not_depend_on_the_padded_margin():
    # the zero padding is added after the lift, so the output on the grid only sees the input
    torch.manual_seed(0)
    net = LSM2d(width=8, levels=3).eval()
    x = torch.randn(1, 1, 13, 13)
    assert torch.equal(net(x), net(x.clone()))
    assert net.plan(13, 13) == ((4, 4), (16, 16))


# ------------------------------------------------------------------ normaliser and loss
def test_normalizer_round_trip_and_unit_statistics():
    torch.manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(50, 1, 9, 7)
    n = UnitGaussianNormalizer.fit(x)
    z = n.encode(x)
    torch.testing.assert_close(n.decode(z), x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z.mean(0), torch.zeros(1, 9, 7), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(1, 9, 7), atol=1e-4, rtol=0)
    assert set(n.state_dict()) == {"mean", "std", "eps"}


def test_normalizer_at_another_resolution_interpolates_the_statistics():
    # fields affine in the grid coordinates: their mean/std fields are affine too, so bilinear
    # resampling of the statistics is exact, and encoding commutes with sub-sampling
    rng = np.random.default_rng(1)
    def fields(s, coef):
        g = np.linspace(0, 1, s)
        X, Y = np.meshgrid(g, g, indexing="ij")
        return torch.tensor(coef[:, 0, None, None] + coef[:, 1, None, None] * X + coef[:, 2, None, None] * Y,
                            dtype=torch.float32)[:, None]
    coef = rng.standard_normal((40, 3))
    fine, coarse = fields(17, coef), fields(9, coef)
    n = UnitGaussianNormalizer.fit(fine)
    mean9 = torch.nn.functional.interpolate(n.mean[None], size=(9, 9), mode="bilinear", align_corners=True)[0]
    torch.testing.assert_close(mean9, coarse.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(n.encode(coarse), n.encode(fine)[..., ::2, ::2], atol=1e-4, rtol=0)
    torch.testing.assert_close(n.decode(n.encode(coarse)), coarse, atol=1e-5, rtol=1e-5)


def test_relative_l2_exact():
    true = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    pred = torch.tensor([[3.0, 9.0], [1.0, 0.5]])
    assert torch.equal(relative_l2(pred, true, "none"), torch.tensor([1.0, 0.5]))
    assert relative_l2(pred, true).item() == 0.75
    assert relative_l2(pred, true, "sum").item() == 1.5
    assert relative_l2(true, true).item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        relative_l2(pred, true[:1])


# ------------------------------------------------------------------ training
def test_training_beats_the_untrained_model_on_held_out_data():
    a, u = poisson_pairs(96)
    net = tiny_lsm()
    pre = NormalizedOperator(net, UnitGaussianNormalizer.fit(a[:64]), UnitGaussianNormalizer.fit(u[:64]))
    before = evaluate(pre, a[64:], u[64:])
    out = train_operator(pre, a[:64], u[:64], a[64:80], u[64:80], epochs=15, batch_size=8, lr=5e-3,
                         progress=False)
    after = evaluate(out["predictor"], a[80:], u[80:])
    assert before > 0.9                      # an untrained net predicts about the mean field (0)
    assert after < 0.5 * before
    assert len(out["train_loss"]) == len(out["val_loss"]) == 15
    assert out["best_val"] == min(out["val_loss"])
    assert out["val_loss"][out["best_epoch"] - 1] == out["best_val"]
    # the kept weights are the best epoch's: evaluating them reproduces the recorded val error
    assert evaluate(out["predictor"], a[64:80], u[64:80]) == pytest.approx(out["best_val"], rel=1e-5)
    assert out["lr"][0] == 5e-3


def test_bf16_autocast_training_learns_and_keeps_float32_weights(monkeypatch):
    a, u = poisson_pairs(96)
    torch.manual_seed(0)
    monkeypatch.setattr(lsm_train, "cpu_has_native_bf16", lambda: True)
    out = train_operator(tiny_lsm(), a[:64], u[:64], a[64:80], u[64:80], epochs=15, batch_size=8, lr=5e-3,
                         progress=False, bf16=True)
    pred = out["predictor"]
    assert all(p.dtype == torch.float32 for p in pred.parameters())
    assert evaluate(pred, a[80:], u[80:]) < 0.5  # an untrained net scores about 1 (see the test above)
    assert evaluate(pred, a[64:80], u[64:80]) == pytest.approx(out["best_val"], rel=1e-5)  # validated in float32


def test_bf16_on_a_cpu_without_native_bfloat16_warns(monkeypatch):
    a, u = poisson_pairs(16)
    monkeypatch.setattr(lsm_train, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bfloat16"):
        train_operator(tiny_lsm(), a, u, epochs=1, batch_size=8, progress=False, bf16=True, device="cpu")


@pytest.mark.parametrize("make", [lambda: FNO2d(modes=4, width=8, layers=2), lambda: UNet2d(width=8, levels=2)],
                         ids=["fno", "unet"])
def test_baselines_train_with_the_same_loop(make):
    a, u = poisson_pairs(48, seed=3)
    torch.manual_seed(0)
    out = train_operator(make(), a[:32], u[:32], a[32:], u[32:], epochs=4, batch_size=8, lr=5e-3,
                         progress=False)
    assert out["best_val"] < out["val_loss"][0] or out["best_epoch"] == 1
    assert out["best_val"] < 0.9


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    a, u = poisson_pairs(40, seed=2)
    kw = dict(batch_size=8, lr=3e-3, step_size=2, gamma=0.5, seed=7, progress=False)
    full = train_operator(tiny_lsm(), a[:32], u[:32], a[32:], u[32:], epochs=4,
                          checkpoint=tmp_path / "full.ckpt", **kw)
    half = train_operator(tiny_lsm(), a[:32], u[:32], a[32:], u[32:], epochs=2,
                          checkpoint=tmp_path / "part.ckpt", **kw)
    assert half["epochs"] == 2
    log = []
    rest = train_operator(tiny_lsm(), a[:32], u[:32], a[32:], u[32:], epochs=4,
                          checkpoint=tmp_path / "part.ckpt", log=log.append, **kw)
    assert [r["epoch"] for r in log] == [3, 4]
    assert rest["train_loss"] == full["train_loss"] and rest["val_loss"] == full["val_loss"]
    assert rest["lr"] == full["lr"] == [3e-3, 3e-3, 1.5e-3, 1.5e-3]
    assert rest["best_epoch"] == full["best_epoch"]
    s1, s2 = full["predictor"].state_dict(), rest["predictor"].state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    # a checkpoint from another run is refused, naming what differs
    with pytest.raises(ValueError, match="lr"):
        train_operator(tiny_lsm(), a[:32], u[:32], a[32:], u[32:], epochs=5,
                       checkpoint=tmp_path / "part.ckpt", **{**kw, "lr": 1e-3})


def test_cosine_and_onecycle_schedules_span_the_run_and_resume_only_with_its_length(tmp_path):
    a, u = poisson_pairs(40, seed=2)
    kw = dict(batch_size=8, lr=4e-3, seed=1, progress=False)
    cos = train_operator(tiny_lsm(), a[:32], u[:32], a[32:], u[32:], epochs=4, schedule="cosine", **kw)
    np.testing.assert_allclose(cos["lr"], [4e-3 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)], rtol=1e-9)
    one = train_operator(tiny_lsm(), a[:32], u[:32], a[32:], u[32:], epochs=6, schedule="onecycle",
                         checkpoint=tmp_path / "one.ckpt", **kw)
    lr = one["lr"]
    assert lr[0] == pytest.approx(4e-3 / 25) and max(lr) <= 4e-3 * (1 + 1e-9)
    top = int(np.argmax(lr))
    assert 0 < top < 5 and all(np.diff(lr[:top + 1]) > 0) and all(np.diff(lr[top:]) < 0)
    assert one["best_val"] < 0.9  # it learns (an untrained net scores about 1)
    with pytest.raises(ValueError, match="schedule_epochs"):  # the schedule's length is part of the run
        train_operator(tiny_lsm(), a[:32], u[:32], a[32:], u[32:], epochs=8, schedule="onecycle",
                       checkpoint=tmp_path / "one.ckpt", **kw)
    with pytest.raises(ValueError, match="schedule"):
        train_operator(tiny_lsm(), a[:32], u[:32], epochs=2, schedule="linear", **kw)


def test_training_log_file_and_no_validation(tmp_path):
    a, u = poisson_pairs(24, seed=4)
    out = train_operator(tiny_lsm(), a, u, epochs=2, batch_size=8, progress=False, log=tmp_path / "log.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and lines[0]["val"] is None
    assert out["best_epoch"] == 2 and out["best_val"] is None


def test_training_rejects_bad_data():
    a, u = poisson_pairs(16)
    bad = a.copy()
    bad[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="a_train contains NaN"):
        train_operator(tiny_lsm(), bad, u, epochs=1, progress=False)
    with pytest.raises(ValueError, match="u_train"):
        train_operator(tiny_lsm(), a, u[:8], epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_operator(tiny_lsm(), a, u, epochs=0, progress=False)


# ------------------------------------------------------------------ weights and predict
@pytest.fixture()
def saved(tmp_path):
    a, u = poisson_pairs(24, seed=5)
    out = train_operator(tiny_lsm(levels=3), a[:16], u[:16], a[16:], u[16:], epochs=2, batch_size=8,
                         progress=False)
    path = tmp_path / "weights" / "toy-lsm"
    save_pretrained(out["predictor"], {"data": "synthetic periodic Poisson 16x16"}, path)
    return out["predictor"], path, a


def test_save_load_predict_round_trip(saved):
    trained, path, a = saved
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["kind"] == "lsm" and card["config"]["width"] == 8 and card["resolution"] == [16, 16]
    loaded = load_pretrained(path).net
    s1, s2 = trained.state_dict(), loaded.state_dict()
    assert all(torch.equal(s1[k].cpu(), s2[k]) for k in s1)
    with torch.no_grad():
        ref = trained(torch.from_numpy(a[:, None]))[:, 0].numpy()
    got = predict(a, model=path, batch_size=5)                       # numpy in, numpy out
    assert isinstance(got, np.ndarray) and got.shape == a.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    got_t = predict(torch.from_numpy(a).double(), model=loaded)       # torch in, torch out
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.float64
    np.testing.assert_allclose(got_t.numpy(), ref, rtol=1e-5, atol=1e-6)
    one = predict(a[0].astype(np.float64), model=str(path))           # a single field
    assert one.shape == (16, 16) and one.dtype == np.float64
    np.testing.assert_allclose(one, ref[0], rtol=1e-5, atol=1e-6)


def test_predict_at_another_resolution(saved):
    _, path, a = saved
    coarse = np.ascontiguousarray(a[:3, ::2, ::2])                   # 8x8
    with pytest.warns(UserWarning, match="trained on a 16x16 grid"):
        native = predict(coarse, model=path, resample=False)
    assert native.shape == (3, 8, 8) and np.isfinite(native).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resampled = predict(coarse, model=path, resample=True)
    assert resampled.shape == (3, 8, 8)


def test_resample_nodes_nearest_is_strided_subsampling():
    x = torch.arange(21 * 21, dtype=torch.float32).reshape(1, 1, 21, 21)
    assert torch.equal(resample_nodes(x, (5, 5), "nearest"), x[..., ::5, ::5])
    lin = torch.linspace(0, 1, 9).view(1, 1, 9, 1).expand(1, 1, 9, 9)
    torch.testing.assert_close(resample_nodes(lin, (17, 17), "bilinear")[0, 0, :, 3], torch.linspace(0, 1, 17))


def test_predict_rejects_bad_input(saved):
    _, path, a = saved
    with pytest.raises(ValueError, match=r"\ba must have shape"):
        predict(np.zeros((2, 1, 1, 16, 16)), model=path)
    with pytest.raises(ValueError, match=r"\ba must have shape"):
        predict(np.zeros(16), model=path)
    bad = a[:2].copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"\ba contains NaN"):
        predict(bad, model=path)
    with pytest.raises(ValueError, match=r"\ba contains NaN"):
        predict(torch.full((16, 16), float("inf")), model=path)
    with pytest.raises(TypeError, match=r"\ba must be"):
        predict("field", model=path)
    with pytest.raises(ValueError, match="batch_size"):
        predict(a, model=path, batch_size=0)
    with pytest.raises(ValueError, match="no-such-model"):
        predict(a, model="no-such-model")


def test_load_pretrained_rejects_a_bad_card(saved):
    from krylearn.utils.errors import FormatError

    _, path, _ = saved
    card = json.loads(path.with_suffix(".json").read_text())
    card["config"]["width"] = 16
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(FormatError, match="config"):
        load_pretrained(path)
    card["kind"] = "resnet"
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(FormatError, match="kind"):
        load_pretrained(path)


# ------------------------------------------------------------------ DDP
_DDP_SCRIPT = textwrap.dedent("""
    import json, sys, numpy as np, torch
    torch.set_num_threads(1)
    from krylearn.solvers.lsm import FNO2d, train_operator
    d = np.load(sys.argv[1])
    torch.manual_seed(0)
    out = train_operator(FNO2d(modes=4, width=8, layers=2), d["a"][:16], d["u"][:16], d["a"][16:], d["u"][16:],
                         epochs=2, batch_size=8, lr=3e-3, progress=False)
    import os
    if int(os.environ.get("RANK", "0")) == 0:
        json.dump({"train": out["train_loss"], "val": out["val_loss"], "world": out["world_size"]},
                  open(sys.argv[2], "w"))
""")


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tmp_path):
    # FNO has no BatchNorm, so two gloo processes each taking half of every global batch
    # must reproduce the one-process run up to float reduction order
    a, u = poisson_pairs(24, seed=6)
    np.savez(tmp_path / "d.npz", a=a, u=u)
    (tmp_path / "run.py").write_text(_DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "d.npz"), str(tmp_path / "one.json")],
                   check=True, env=env, timeout=300)
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "d.npz"),
                               str(tmp_path / "two.json")],
                              env={**env, "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["world"] == 1 and two["world"] == 2
    np.testing.assert_allclose(two["train"], one["train"], rtol=1e-4)
    np.testing.assert_allclose(two["val"], one["val"], rtol=1e-4)
