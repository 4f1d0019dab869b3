"""The shipped DDS priors ``dds-mri`` and ``dds-ct`` on held-out *val*-band brain slices.

Each must beat the same sampler run with an untrained network of the same
configuration, and the classical baseline it is meant to improve on.  The
slices are simulated on a 2x finer grid (no inverse crime) and come from the
val band, which neither prior trained on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("nilearn")

from krylearn.benchmarks.imaging import image_metrics  # noqa: E402
from krylearn.problems.brain import BANDS, brain_volume, complex_brain_slices  # noqa: E402
from krylearn.problems.simulate import simulate_ct, simulate_mri  # noqa: E402
from krylearn.operators.ct import ParallelBeamProjector  # noqa: E402
from krylearn.operators.mri import SenseOperator  # noqa: E402
from krylearn.pipelines.reconstruct import run_method  # noqa: E402
from krylearn.solvers.dds import UNet  # noqa: E402
from krylearn.solvers.learned import available, load_pretrained  # noqa: E402


def _untrained(card):
    torch.manual_seed(0)
    return UNet(**card["config"]).eval()


def _psnr(images, reference, magnitude):
    return float(np.mean([image_metrics(images[i], reference[i], magnitude=magnitude)["psnr"]
                          for i in range(len(reference))]))


@pytest.mark.parametrize("name", ["dds-mri", "dds-ct"])
def test_card_documents_the_run(name):
    assert name in available("dds")
    _, card = load_pretrained(name)
    for key in ("command", "seed", "seconds", "hardware", "parameters", "steps", "data", "metrics"):
        assert key in card, key
    m = card["metrics"]
    assert m["val_loss"] < 0.05 * m["val_loss_untrained"], m
    test_lo, test_hi = BANDS["test"][0]
    train = np.asarray(card["data"]["train_slices"])
    assert len(train) > 50 and not np.any((train >= test_lo) & (train < test_hi))  # test band never trained on
    assert not set(card["data"]["val_slices"]) & set(card["data"]["train_slices"])


def test_dds_mri_beats_an_untrained_prior_and_cg_sense():
    x = complex_brain_slices("val", 128, seed=3)[[2, 6]]
    sim = simulate_mri(x, 8, mask="uniform1d", accel=4, snr_db=30, seed=0, downsample=2)
    ref = np.abs(sim.image)
    _, card = load_pretrained("dds-mri")
    out = {}
    for label, method, prior in (("shipped", "dds", "dds-mri"), ("untrained", "dds", _untrained(card)),
                                 ("cg-sense", "cg-sense", None)):
        imgs = []
        for i in range(len(ref)):
            A = SenseOperator(sim.maps[i], np.asarray(sim.mask, np.float32))
            img, _ = run_method("mri", method, A, sim.kspace[i], prior=prior, nfe=19, seed=i)
            imgs.append(np.abs(img))
        out[label] = _psnr(imgs, ref, True)
    assert out["shipped"] > out["untrained"] + 3, out
    assert out["shipped"] > out["cg-sense"] + 1, out


def test_dds_ct_beats_an_untrained_prior_and_fbp():
    vol = brain_volume("val", 256)[2:4]
    sim = simulate_ct(vol, 8, seed=0, downsample=2)
    ref = sim.reference
    P = ParallelBeamProjector(ref.shape[1:], sim.angles, n_det=sim.n_det, det_spacing=1.0, dtype=torch.float64)
    _, card = load_pretrained("dds-ct")
    out = {}
    for label, method, prior in (("shipped", "dds", "dds-ct"), ("untrained", "dds", _untrained(card)),
                                 ("fbp", "fbp", None)):
        img, _ = run_method("ct", method, P, sim.sinogram, prior=prior, nfe=19, seed=0)
        out[label] = _psnr(np.asarray(img).reshape(ref.shape), ref, False)
    assert out["shipped"] > out["untrained"] + 3, out
    assert out["shipped"] > out["fbp"] + 5, out
