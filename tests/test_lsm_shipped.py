"""The shipped ``lsm-darcy`` weights on fresh Darcy samples (seed 7: neither its training, validation nor test file)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from krylearn.problems.darcy import darcy_sample
from krylearn.operators.darcy import darcy_system
from krylearn.solvers.lsm import load_pretrained, predict
from krylearn.solvers.lsm import build_network
from krylearn.solvers.lsm.warm import warm_start

import krylearn


@pytest.fixture(scope="module")
def fresh():
    """Three benchmark-recipe samples (421^2 direct solve, sub-sampled by 5 to 85^2)."""
    pairs = [darcy_sample(7, i)[:2] for i in range(3)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _rel(pred, u):
    return np.linalg.norm((pred - u).reshape(len(u), -1), axis=1) / np.linalg.norm(u.reshape(len(u), -1), axis=1)


def test_card_documents_the_run():
    card = load_pretrained("lsm-darcy").card
    assert card["kind"] == "lsm" and card["resolution"] == [85, 85]
    for key in ("command", "seed", "seconds", "hardware", "parameters", "data", "metrics"):
        assert key in card, key
    assert card["data"]["test"]["name"] != card["data"]["train"]["name"]  # a separate test file


def test_shipped_model_is_accurate_on_fresh_samples_and_beats_an_untrained_one(fresh):
    a, u = fresh
    rel = _rel(predict(a, model="lsm-darcy"), u)
    assert rel.max() < 0.05, rel
    untrained, card = load_pretrained("lsm-darcy", cache=False)  # a fresh copy: same normalisers, re-initialised network
    torch.manual_seed(0)
    untrained.net = build_network(card["kind"], card["config"]).eval()
    assert _rel(predict(a, model=untrained), u).min() > 3 * rel.max()


def test_warm_start_with_the_shipped_model_saves_cg_iterations(fresh):
    a, _ = fresh
    A, b = darcy_system(a[0])
    cold = krylearn.solve(A, b, method="cg", rtol=1e-8)
    warm = krylearn.solve(A, b, method="cg", rtol=1e-8, x0=warm_start(a[0], "lsm-darcy"))
    assert cold.converged and warm.converged
    assert warm.iterations < cold.iterations
