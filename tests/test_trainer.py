"""The shared Trainer: same numbers as a plain torch loop, exact resume, fingerprints, safe checkpoints, budget."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from krylearn.operators.sparse import SparseMatrix
from krylearn.operators.stencil import FLUID
from krylearn.solvers.dcdm import DCDMNet
from krylearn.solvers.dcdm.ritz import RitzSampler, lanczos_ritz
from krylearn.solvers.dcdm.train import TrainingSystem, dcdm_loss, train_dcdm
from krylearn.solvers.learned import Trainer, TrainTask, plot_losses
from krylearn.utils.errors import FormatError


class Regression(TrainTask):
    """Least squares ``y = X w``: two batches per round, drawn from a generator seeded by the round."""

    unit = "epoch"

    def __init__(self, X, y, *, lr=0.05, validate=True):
        self.X, self.y, self.lr, self.with_val = X, y, lr, validate
        self.setup_calls = 0

    def setup(self):
        self.setup_calls += 1
        return nn.Linear(self.X.shape[1], 1)

    def make_optimizer(self, model):
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    def data(self):
        return (self.X, self.y)

    def batches(self, round):
        perm = torch.randperm(len(self.X), generator=torch.Generator().manual_seed(1000 + round))
        yield from (perm[:8], perm[8:16])

    def loss(self, module, idx):
        return ((module(self.X[idx])[:, 0] - self.y[idx]) ** 2).mean()

    def validate(self, model):
        return float(((model(self.X)[:, 0] - self.y) ** 2).mean()) if self.with_val else None


def regression_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(16, 4, generator=g)
    return X, X @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(16, generator=g)


def reference_run(X, y, rounds, seed, ema_decay=None):
    """The same training as ``Regression`` on the Trainer, written as a plain torch loop."""
    torch.manual_seed(seed)
    model = nn.Linear(4, 1)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    losses, k = [], 0
    for r in range(rounds):
        perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(1000 + r))
        step_losses = []
        for idx in (perm[:8], perm[8:16]):
            loss = ((model(X[idx])[:, 0] - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema_decay is not None:
                d = min(ema_decay, (1 + k) / (10 + k))
                with torch.no_grad():
                    for e, p in zip(ema, model.parameters()):
                        e.lerp_(p, 1 - d)
            k += 1
            step_losses.append(loss.item())
        sched.step()
        losses.append(float(np.mean(step_losses)))
    return losses, model, ema


def test_trainer_reproduces_a_plain_torch_loop_and_its_ema():
    X, y = regression_data()
    res = Trainer(Regression(X, y), rounds=5, seed=3, ema_decay=0.9, progress=False).fit()
    losses, model, ema = reference_run(X, y, 5, seed=3, ema_decay=0.9)
    assert res.losses() == losses
    assert [h["lr"] for h in res.history] == [0.05, 0.05, 0.025, 0.025, 0.0125]
    for a, b in zip(res.raw_model.parameters(), model.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(res.model.parameters(), ema):  # the EMA is what is kept and returned
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert res.model is not res.raw_model and not res.model.training


def test_dcdm_training_equals_a_plain_torch_loop():
    """``train_dcdm`` through the Trainer gives the losses of the paper's loop written out by hand."""
    A = _poisson(8)
    _, V = lanczos_ritz(A, 20, seed=0)
    s = TrainingSystem(A, (8, 8), np.full(64, FLUID, np.uint8), V)  # every cell fluid
    out = train_dcdm([s], config={"width": 4, "levels": 1}, steps=4, batch=3, lr=1e-3, seed=5, val_every=1,
                     progress=False)
    torch.manual_seed(5)
    net = DCDMNet(2, width=4, levels=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sampler, op = RitzSampler(V, seed=5), SparseMatrix(A.astype(np.float32))
    fluid = torch.ones(8, 8)
    losses = []
    for _ in range(4):
        loss = dcdm_loss(net, sampler.sample(3), fluid, op, (8, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert [r["train_loss"] for r in out["log"]] == losses


def _poisson(n):
    import scipy.sparse as sp

    T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1])
    return sp.csr_matrix(sp.kronsum(T, T) + 0.01 * sp.eye(n * n))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    X, y = regression_data()
    full = Trainer(Regression(X, y), rounds=6, seed=1, ema_decay=0.8, progress=False).fit()
    Trainer(Regression(X, y), rounds=3, seed=1, ema_decay=0.8, checkpoint=tmp_path / "c.pt", progress=False).fit()
    log = []
    rest = Trainer(Regression(X, y), rounds=6, seed=1, ema_decay=0.8, checkpoint=tmp_path / "c.pt", log=log.append,
                   progress=False).fit()
    assert rest.losses() == full.losses() and [r["epoch"] for r in log] == [4, 5, 6]
    assert rest.best_round == full.best_round and rest.best_val == full.best_val
    for a, b in zip(rest.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


def test_validation_keeps_the_best_weights_and_no_validation_keeps_the_last():
    X, y = regression_data()
    res = Trainer(Regression(X, y, lr=0.5), rounds=6, seed=0, progress=False).fit()
    vals = [h["val"] for h in res.history]
    assert res.best_val == min(vals) and res.best_round == vals.index(min(vals)) + 1
    with torch.no_grad():
        assert float(((res.model(X)[:, 0] - y) ** 2).mean()) == pytest.approx(res.best_val, rel=1e-6)
    last = Trainer(Regression(X, y, validate=False), rounds=3, seed=0, progress=False).fit()
    assert last.best_round == 3 and last.best_val is None and all(h["val"] is None for h in last.history)


def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(tmp_path):
    X, y = regression_data()
    ckpt = tmp_path / "c.pt"
    Trainer(Regression(X, y), rounds=2, seed=0, checkpoint=ckpt, progress=False).fit()
    X2, y2 = regression_data(seed=1)
    with pytest.raises(ValueError, match=r"different run \(differs in data\)"):
        Trainer(Regression(X2, y2), rounds=4, seed=0, checkpoint=ckpt, progress=False).fit()
    with pytest.raises(ValueError, match=r"differs in lr, seed"):
        Trainer(Regression(X, y, lr=0.01), rounds=4, seed=2, checkpoint=ckpt, progress=False).fit()
    more = Trainer(Regression(X, y), rounds=4, seed=0, checkpoint=ckpt, progress=False).fit()
    assert more.rounds == 4  # the same run may grow


def test_corrupt_truncated_or_code_carrying_checkpoints_are_format_errors(tmp_path):
    X, y = regression_data()
    ckpt = tmp_path / "run.ckpt"
    Trainer(Regression(X, y), rounds=1, seed=0, checkpoint=ckpt, progress=False).fit()
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"run\.ckpt: corrupt or truncated checkpoint") as e:
        Trainer(Regression(X, y), rounds=2, seed=0, checkpoint=ckpt, progress=False).fit()
    assert "weights_only" not in str(e.value)

    torch.save({"model": {}, "payload": _Exploit()}, ckpt)
    with pytest.raises(FormatError, match=r"run\.ckpt: not a krylearn checkpoint") as e:
        Trainer(Regression(X, y), rounds=2, seed=0, checkpoint=ckpt, progress=False).fit()
    assert not RAN and "weights_only" not in str(e.value)


RAN = []


def _record():
    RAN.append(True)


class _Exploit:
    """An object whose unpickling runs code (``_record``)."""

    def __reduce__(self):
        return (_record, ())


def test_an_unwritable_checkpoint_folder_fails_before_training(tmp_path):
    X, y = regression_data()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    task = Regression(X, y)
    with pytest.raises(OSError, match="checkpoint: cannot write to the folder"):
        Trainer(task, rounds=2, checkpoint=blocker / "sub" / "c.pt", progress=False).fit()
    assert task.setup_calls == 0


def test_time_budget_saves_and_stops_after_the_first_round_past_it(tmp_path):
    X, y = regression_data()
    full = Trainer(Regression(X, y), rounds=4, seed=0, progress=False).fit()
    cut = Trainer(Regression(X, y), rounds=4, seed=0, max_minutes=1e-12, checkpoint=tmp_path / "c.pt",
                  checkpoint_every=100, progress=False).fit()
    assert cut.stopped_early and cut.rounds == 1 and cut.history[0]["val"] is not None
    rest = Trainer(Regression(X, y), rounds=4, seed=0, checkpoint=tmp_path / "c.pt", progress=False).fit()
    assert rest.losses() == full.losses() and not rest.stopped_early
    with pytest.raises(ValueError, match="max_minutes"):
        Trainer(Regression(X, y), rounds=1, max_minutes=0)


def test_nonfinite_loss_stops_with_the_round(tmp_path):
    X, y = regression_data()
    y = y.clone()
    y[3] = math.inf
    with pytest.raises(FloatingPointError, match="epoch 1: the loss is"):
        Trainer(Regression(X, y), rounds=2, progress=False).fit()


def test_log_file_records_and_loss_plot(tmp_path):
    X, y = regression_data()
    res = Trainer(Regression(X, y), rounds=5, seed=0, log=tmp_path / "log.jsonl", log_every=2, progress=False).fit()
    lines = [json.loads(s) for s in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [2, 4, 5]  # every log_every rounds and at the end
    assert lines[0]["loss"] == pytest.approx(np.mean(res.losses()[:2]))
    plot_losses(res.history, tmp_path / "loss.png", title="toy", unit="epoch", best=res.best_round, smooth=2,
                lines={"start": 1.0})
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_everything_a_checkpoint_holds_reads_back_with_weights_only(tmp_path):
    X, y = regression_data()
    ckpt = tmp_path / "c.pt"
    Trainer(Regression(X, y), rounds=2, seed=0, ema_decay=0.5, checkpoint=ckpt, progress=False).fit()
    payload = torch.load(ckpt, weights_only=True)
    assert {"model", "optimizer", "scheduler", "ema", "fingerprint", "history", "best_state"} <= set(payload)


_DDP_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[2])
from test_trainer import Regression, regression_data
from krylearn.solvers.learned import Trainer
X, y = regression_data()
res = Trainer(Regression(X, y), rounds=4, seed=2, ema_decay=0.9, checkpoint=sys.argv[1] + ".ckpt",
              progress=False).fit()
if res.rank == 0:
    json.dump({"losses": res.losses(), "world": res.world_size,
               "ema": [p.tolist() for p in res.model.parameters()]}, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_ddp_under_two_gloo_processes_matches_one_process(tmp_path):
    """Every rank sees the same batches here, so DDP's gradient average changes nothing."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "run.py"
    script.write_text(_DDP_SCRIPT)
    tests = str(Path(__file__).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.json"), tests], check=True, env=env, timeout=300)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "two.json"), tests],
                              env={**env, "WORLD_SIZE": "2", "RANK": str(r), "LOCAL_RANK": str(r),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["world"] == 1 and two["world"] == 2
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([np.ravel(e) for e in two["ema"]]),
                               np.concatenate([np.ravel(e) for e in one["ema"]]), rtol=1e-6)
    assert (tmp_path / "two.json.ckpt").is_file()
