"""The broad training corpus of the DDS priors (krylearn.problems.broad_images) and ``train diffusion --corpus``."""

import json

import numpy as np
import pytest

from krylearn.cli.main import main
from krylearn.problems import broad_images as bi
from krylearn.problems.brain import BANDS
from krylearn.solvers.dds.recipe import train_prior

SMALL = {"contrast": 1, "orthogonal": 4, "natural": 1, "ellipses": 2}


@pytest.fixture
def few_images(monkeypatch):
    """Two training and one validation image instead of the full lists; records every image loaded."""
    loaded = []
    real = bi.natural_image

    def record(name):
        loaded.append(name)
        return real(name)

    monkeypatch.setattr(bi, "natural_image", record)
    monkeypatch.setattr(bi, "NATURAL_IMAGES", ("brick", "mpl:s1045"))
    monkeypatch.setattr(bi, "VAL_IMAGES", ("coffee",))
    return loaded


@pytest.mark.parametrize("kind", ["mri", "ct"])
def test_broad_images_shapes_ranges_and_sources(kind, few_images):
    x, src = bi.broad_images(kind, "train", 16, seed=3, counts=SMALL)
    n_template = int((src == "template").sum())
    expected = {"template": n_template, "contrast": n_template, "orthogonal": 4, "natural": 2, "ellipses": 2}
    assert {k: int((src == k).sum()) for k in expected} == expected
    assert len(x) == len(src) == sum(expected.values())
    if kind == "mri":
        assert x.dtype == np.complex64 and x.shape[1:] == (16, 16)
        assert np.abs(x).max() <= 1.0 and np.abs(np.angle(x[np.abs(x) > 0.1])).max() > 0.1  # a phase, not real
    else:
        assert x.dtype == np.float32 and x.shape[1:] == (1, 16, 16)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.isfinite(x).all()
    assert set(few_images) == {"brick", "mpl:s1045"}  # never a test or validation image in training
    x2, _ = bi.broad_images(kind, "train", 16, seed=3, counts=SMALL)
    np.testing.assert_array_equal(x, x2)  # seeded


def test_validation_split_holds_only_val_band_and_val_images(few_images):
    x, src = bi.broad_images("ct", "val", 16, seed=0)
    assert set(src) == {"template", "natural"}
    assert few_images == ["coffee"]
    assert int((src == "natural").sum()) == bi._VAL_CROPS
    assert not set(bi.TEST_IMAGES) & set(bi.NATURAL_IMAGES + bi.VAL_IMAGES)  # the shipped lists are disjoint


def test_orthogonal_squares_stay_inside_the_train_bands():
    # 1 everywhere except the train bands (0.5): a square with any row outside them would show a 1.
    v = np.ones((189, 70, 70), dtype=np.float32)
    for z0, z1 in BANDS["train"]:
        v[z0:z1] = 0.5
    out = bi._orthogonal(30, 16, np.random.default_rng(0), volume=v)
    assert len(out) == 30
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_contrast_keeps_background_and_unit_peak():
    img = np.zeros((1, 32, 32), dtype=np.float32)
    img[0, 8:24, 8:24] = np.linspace(0.2, 1.0, 16)[None]
    out = bi._contrast(img, 3, np.random.default_rng(1))
    assert out.shape == (3, 32, 32)
    assert (out[:, img[0] == 0] == 0).all()
    np.testing.assert_allclose(out.max(axis=(1, 2)), 1.0, rtol=1e-6)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="split"):
        bi.broad_images("mri", "test", 16)
    with pytest.raises(ValueError, match="kind"):
        bi.broad_images("pet", "train", 16)
    with pytest.raises(ValueError, match="counts"):
        bi.broad_images("mri", "train", 16, counts={"photos": 3})
    with pytest.raises(ValueError, match="no sample image"):
        bi.natural_image("not-an-image")
    with pytest.raises(ValueError, match="corpus"):
        train_prior("ct", corpus="everything", steps=1, size=16)
    with pytest.raises(ValueError, match="corpus='broad'"):
        train_prior("ct", corpus="broad", data=["x.nii"], steps=1, size=16)


def test_train_diffusion_cli_on_the_broad_corpus(tmp_path, few_images, monkeypatch):
    monkeypatch.setattr(bi, "BROAD_COUNTS", dict(SMALL))
    stem = tmp_path / "p"
    assert main(["train", "diffusion", "--corpus", "broad", "--kind", "ct", "--out", str(stem), "--steps", "2",
                 "--size", "16", "--channel-mult", "1,2", "--base", "4", "-q"]) == 0
    card = json.loads(stem.with_suffix(".json").read_text())
    assert card["data"]["counts"]["train"]["natural"] == 2
    assert card["data"]["counts"]["val"] == {"template": 10, "natural": bi._VAL_CROPS}
    assert "camera" in card["data"]["never_used"]["images"]
    assert card["metrics"]["val_loss"] is not None


def test_per_scan_choice_picks_the_prior_that_predicts_held_out_lines():
    """Two priors as candidates: the held-out score picks the one centred on the truth, and with_options loads it."""
    from krylearn.operators.mri import SenseOperator
    from krylearn.pipelines.parameter_choice import choose_options
    from krylearn.problems.phantoms import shepp_logan
    from krylearn.problems.simulate import simulate_mri
    from krylearn.solvers.dds import GaussianDenoiser
    from krylearn.solvers.imaging import psnr
    from krylearn.solvers.reconstructors import setup

    n = 24
    sim = simulate_mri(shepp_logan((2 * n, 2 * n)).astype(np.complex128), 4, mask="uniform1d", accel=4,
                       snr_db=30, seed=0, downsample=2)
    A, y, truth = SenseOperator(sim.maps[0], sim.mask.astype(np.float32)), sim.kspace[0], sim.image[0]
    peak = np.abs(truth).max()
    good = GaussianDenoiser(np.stack([truth.real, truth.imag]) / peak, var=1e-3)
    wrong = GaussianDenoiser(np.stack([truth.real, truth.imag])[:, ::-1] / peak, var=1e-3)  # upside down
    rec = setup("dds", "mri", prior=wrong, nfe=4)
    assert rec.with_options(nfe=5).denoiser is wrong  # same prior: nothing reloaded
    switched = rec.with_options(prior=good)
    assert switched.denoiser is good and rec.denoiser is wrong
    ch = choose_options(setup("dds", "mri", nfe=4), A, y, grid=[{"prior": wrong}, {"prior": good}], seed=0)
    assert ch.options["prior"] is good and ch.reconstructor.denoiser is good
    scores = [s for _, s in ch.scores]
    assert scores[1] < scores[0]
    x_good = switched.run(A, y, seed=0, scale=peak, progress=False)
    x_wrong = rec.run(A, y, seed=0, scale=peak, progress=False)
    assert psnr(np.abs(x_good), np.abs(truth)) > psnr(np.abs(x_wrong), np.abs(truth))  # as the score said


@pytest.mark.parametrize("name", ["dds-mri-broad", "dds-ct-broad"])
def test_shipped_broad_prior_card_documents_its_data(name):
    from krylearn.solvers.learned import available, load_pretrained
    assert name in available("dds")
    _, card = load_pretrained(name)
    d, m = card["data"], card["metrics"]
    assert d["counts"]["train"]["natural"] > 100 and d["counts"]["train"]["template"] > 50
    assert set(d["never_used"]["images"]) == set(bi.TEST_IMAGES)
    assert not set(d["natural_train"]) & set(bi.TEST_IMAGES + bi.VAL_IMAGES)
    assert m["val_loss"] < 0.05 * m["val_loss_untrained"], m


def test_broad_mri_prior_beats_the_template_prior_on_held_out_pictures():
    """DDS with its defaults on the centre squares of the two validation pictures, 64^2, x4, 8 coils."""
    from krylearn.benchmarks.imaging import image_metrics
    from krylearn.operators.mri import SenseOperator
    from krylearn.pipelines.reconstruct import run_method
    from krylearn.problems.simulate import simulate_mri
    x, src = bi.broad_images("mri", "val", 128, seed=7)
    x = x[src == "natural"][::bi._VAL_CROPS]  # the centre square of each picture
    sim = simulate_mri(x, 8, mask="uniform1d", accel=4, snr_db=30, seed=0, downsample=2)
    ref = np.abs(sim.image)
    psnr = {}
    for prior in ("dds-mri", "dds-mri-broad"):
        vals = []
        for i in range(len(ref)):
            A = SenseOperator(sim.maps[i], np.asarray(sim.mask, np.float32))
            img, _ = run_method("mri", "dds", A, sim.kspace[i], prior=prior, nfe=19, seed=i)
            vals.append(image_metrics(np.abs(img), ref[i], magnitude=True)["psnr"])
        psnr[prior] = float(np.mean(vals))
    assert psnr["dds-mri-broad"] > psnr["dds-mri"] + 0.5, psnr


@pytest.mark.parametrize("kind", ["mri", "ct"])
def test_auto_tries_every_shipped_prior_unless_one_is_given(kind):
    from krylearn.pipelines.parameter_choice import DDS_PRIORS, _candidates, default_grid
    from krylearn.solvers.dds import GaussianDenoiser
    from krylearn.solvers.learned import available
    from krylearn.solvers.reconstructors import setup
    grid = default_grid(kind, "dds")
    assert set(DDS_PRIORS[kind]) <= set(available("dds"))
    assert {c["prior"] for c in grid} == set(DDS_PRIORS[kind])
    per_prior = [[{k: v for k, v in c.items() if k != "prior"} for c in grid if c["prior"] == p]
                 for p in DDS_PRIORS[kind]]
    assert all(settings == per_prior[0] for settings in per_prior)  # the same settings for each prior
    den = GaussianDenoiser(np.zeros((2 if kind == "mri" else 1, 8, 8)), var=1.0)
    given = _candidates(setup("dds", kind, prior=den), None)
    assert len(given) == len(per_prior[0]) and all("prior" not in c for c in given)  # the user's prior stays


def test_bench_prior_auto_lets_dds_choose_among_the_shipped_priors(monkeypatch, capsys):
    """``krylearn bench mri --prior auto --auto``: the DDS grid holds every shipped prior; without --auto, refused."""
    pytest.importorskip("nilearn")
    from krylearn.pipelines import parameter_choice
    from krylearn.solvers.dds.bench_mri import format_mri_table, run_mri_benchmark
    seen = []
    choose = parameter_choice.choose_options

    def spy(rec, *a, **kw):
        ch = choose(rec, *a, **kw)
        seen.append((rec.name, {o.get("prior") for o, _ in ch.scores}))
        return ch

    monkeypatch.setattr("krylearn.pipelines.reconstruct.choose_options", spy)
    report = run_mri_benchmark(n_slices=1, size=64, cases=("uniform1d:4",), methods=("dds",), dds_nfe=(2,),
                               prior="auto", auto=True, warmup=False, progress=False, save_images=False)
    assert ("dds", set(parameter_choice.DDS_PRIORS["mri"])) in seen
    assert [c["label"] for c in report["prior"]["candidates"]] and "chosen per scan" in format_mri_table(report)
    assert np.isfinite(report["cases"][0]["rows"][0]["psnr_mean"])
    assert main(["bench", "mri", "--prior", "auto", "--methods", "dds", "--slices", "1", "-q"]) == 2
    assert "add --auto" in capsys.readouterr().err
