"""`krylearn bench mri|ct` (benchmarks/imaging.py, solvers/dds/bench_*.py): outputs, metrics, slices, targets, errors."""

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

pytest.importorskip("nilearn")  # the MNI152 template ships inside nilearn's wheel (krylearn[data])

from krylearn.solvers.dds import UNet, save_prior

from krylearn.benchmarks import imaging as bi
from krylearn.solvers.dds import bench_common as bdds
from krylearn.solvers.dds import bench_ct as bct
from krylearn.solvers.dds import bench_mri as bmri

FAST_MRI = {"l1-wavelet": {"iters": 30}, "tv": {"iters": 30}}


@pytest.fixture(scope="module")
def mri_run(tmp_path_factory):
    """One tiny MRI run with every method (untrained 2-channel UNet saved to a path)."""
    tmp = tmp_path_factory.mktemp("bench-mri")
    torch.manual_seed(0)
    save_prior(UNet(in_channels=2, base_channels=8, channel_mult=(1, 2)), {"data": "none (test)"}, tmp / "tiny")
    report = bmri.run_mri_benchmark(n_slices=3, size=32, cases=["uniform1d:4"], prior=str(tmp / "tiny"),
                                  dds_nfe=[3, 5], dps_nfe=3, dps_count=2, options=FAST_MRI, out_dir=tmp / "out",
                                  progress=False)
    return report, tmp / "out"


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    """One tiny CT run; the prior is passed as an object (no file)."""
    tmp = tmp_path_factory.mktemp("bench-ct")
    torch.manual_seed(0)
    net = UNet(in_channels=1, base_channels=8, channel_mult=(1, 2)).eval()
    report = bct.run_ct_benchmark(n_slices=3, size=32, views=[8], methods=bct.CT_BENCH_METHODS, prior=net,
                                 dds_nfe=[3], dps_nfe=3, dps_count=1, options={"admm-tv": {"iters": 20}},
                                 out_dir=tmp / "out", progress=False)
    return report, tmp / "out"


def _strict_json(path):
    def no_constants(name):
        raise AssertionError(f"{path} holds the non-JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=no_constants)


# ------------------------------------------------------------------ files and metrics
@pytest.mark.parametrize("which", ["mri", "ct"])
def test_files_written_and_json_matches_report(which, mri_run, ct_run):
    report, out = mri_run if which == "mri" else ct_run
    for name in (f"{which}.json", f"{which}.md", f"{which}-images.h5"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    for f in report["files"]["figures"]:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(report["files"]["figures"]) == len(report["cases"])
    saved = _strict_json(out / f"{which}.json")
    assert [r["label"] for r in saved["cases"][0]["rows"]] == [r["label"] for r in report["cases"][0]["rows"]]
    md = (out / f"{which}.md").read_text()
    for r in report["cases"][0]["rows"]:
        assert f"| {r['label']} |" in md
        assert f"{r['psnr_mean']:.2f}" in md
    assert "TARGET" in md and "data_range = 1" in md


@pytest.mark.parametrize("which", ["mri", "ct"])
def test_metrics_equal_a_direct_skimage_call_on_the_saved_images(which, mri_run, ct_run):
    report, out = mri_run if which == "mri" else ct_run
    checked = 0
    with h5py.File(out / f"{which}-images.h5", "r") as f:
        for case in report["cases"]:
            g = f[case["case"]]
            ref = g["reference"][()].astype(np.float64)
            assert list(g["slice_z"][()]) == case["slice_z"]
            for r in case["rows"]:
                imgs = g["images"][r["label"]][()].astype(np.float64)
                assert list(g["images"][r["label"]].attrs["slices"]) == r["slices"]
                for j, q in enumerate(r["per_slice"]):
                    b = ref[q["index"]]
                    peak = b.max()
                    a = np.abs(imgs[j]) if which == "mri" else imgs[j]
                    p = peak_signal_noise_ratio(b / peak, a / peak, data_range=1.0)
                    s = structural_similarity(b / peak, a / peak, data_range=1.0)
                    assert q["psnr"] == pytest.approx(p, rel=1e-12, abs=1e-12)
                    assert q["ssim"] == pytest.approx(s, rel=1e-12, abs=1e-12)
                    checked += 1
                assert r["psnr_mean"] == pytest.approx(np.mean([q["psnr"] for q in r["per_slice"]]))
                assert r["ssim_std"] == pytest.approx(np.std([q["ssim"] for q in r["per_slice"]]))
    assert checked >= 10
    if which == "ct":  # CT compares real values: FBP's negative pixels must not be folded by abs()
        with h5py.File(out / "ct-images.h5", "r") as f:
            assert (f["views-8/images/fbp"][()] < 0).any()


def test_reference_against_itself_is_inf_and_serialised():
    rng = np.random.default_rng(0)
    ref = rng.random((16, 16)) + 0.1
    m = bi.image_metrics(ref, ref)
    assert m["psnr"] == math.inf and m["ssim"] == pytest.approx(1.0)
    m2 = bi.image_metrics(ref * np.exp(1j * 0.3), ref)  # magnitude: a global phase is no error (up to rounding)
    assert m2["psnr"] > 250
    assert bi._stats([m["psnr"], 30.0])[0] == math.inf
    assert json.loads(json.dumps(bi._jsonable({"psnr": m["psnr"], "std": math.nan}), allow_nan=False)) == {
        "psnr": "inf", "std": "nan"}
    assert bi._f(math.inf, ".2f") == "inf"
    with pytest.raises(ValueError, match="reference"):
        bi.image_metrics(ref, np.zeros_like(ref))
    with pytest.raises(ValueError, match="shape"):
        bi.image_metrics(ref, ref[:8])


# ------------------------------------------------------------------ slice bookkeeping
@pytest.mark.parametrize("which", ["mri", "ct"])
def test_rows_cover_the_same_slices_and_dps_is_compared_on_its_own(which, mri_run, ct_run):
    report, _ = mri_run if which == "mri" else ct_run
    n = report["data"]["n_slices"]
    case = report["cases"][0]
    for r in case["rows"]:
        assert [q["index"] for q in r["per_slice"]] == r["slices"]
        assert [q["z"] for q in r["per_slice"]] == r["slice_z"]
        if r["method"] == "dps":
            assert r["slices"] == report["dps_slices"]
            assert set(r["slices"]) < set(range(n))
        else:
            assert r["slices"] == list(range(n))
            assert r["slice_z"] == report["data"]["slice_z"]
    dds = [r for r in case["rows"] if r["method"] == "dds"]
    dps = next(r for r in case["rows"] if r["method"] == "dps")
    assert len(case["same_slices"]) == len(dds)
    for s, d in zip(case["same_slices"], dds):
        assert s["dps"] == dps["label"] and s["slices"] == dps["slices"]
        on = [q for q in d["per_slice"] if q["index"] in dps["slices"]]
        assert s["dds_psnr"] == pytest.approx(np.mean([q["psnr"] for q in on]))
        ratio = dps["seconds_per_slice"] / np.mean([q["seconds"] for q in on])  # the same slices, the same run
        assert s["speedup"] == pytest.approx(ratio)
    md = Path(report["files"]["table"]).read_text()
    assert f"{len(dps['slices'])}: z " in md  # the table says which slices DPS ran on


def test_mri_cases_are_simulated_as_stated(mri_run):
    report, _ = mri_run
    case = report["cases"][0]
    assert case["acceleration"] == pytest.approx(4.0, rel=0.15)
    assert case["sigma"] > 0 and case["snr_db"] == 30.0
    assert [r["label"] for r in case["rows"]] == ["zero-filled", "cg-sense", "l1-wavelet", "tv", "dds-3", "dds-5",
                                                   "dps-3"]
    z = report["data"]["slice_z"]
    from krylearn.problems.brain import BANDS

    (lo, hi), = BANDS["test"]
    assert all(lo <= v < hi for v in z)


def test_classical_methods_beat_the_naive_baseline(mri_run, ct_run):
    rows = {r["label"]: r for r in mri_run[0]["cases"][0]["rows"]}
    for m in ("cg-sense", "l1-wavelet", "tv"):
        assert rows[m]["psnr_mean"] > rows["zero-filled"]["psnr_mean"] + 3, m
        assert rows[m]["ssim_mean"] > rows["zero-filled"]["ssim_mean"], m
    rows = {r["label"]: r for r in ct_run[0]["cases"][0]["rows"]}
    assert rows["admm-tv"]["psnr_mean"] > rows["fbp"]["psnr_mean"] + 2


# ------------------------------------------------------------------ missing prior
def test_missing_prior_is_reported_and_classical_rows_still_appear(tmp_path):
    with pytest.warns(UserWarning, match="no-such-prior"):
        report = bmri.run_mri_benchmark(n_slices=2, size=32, cases=["poisson2d:4"], prior="no-such-prior",
                                      dps_count=1, options=FAST_MRI, out_dir=tmp_path, progress=False,
                                      warmup=False, save_images=False)
    assert set(report["skipped"]) == {"dds", "dps"}
    assert "no-such-prior" in report["notes"][0] and "not found" in report["notes"][0]
    assert "krylearn train diffusion" in report["notes"][0]
    labels = [r["label"] for r in report["cases"][0]["rows"]]
    assert labels == ["zero-filled", "cg-sense", "l1-wavelet", "tv"]
    md = (tmp_path / "mri.md").read_text()
    assert "Note: prior 'no-such-prior' not found" in md
    assert not (tmp_path / "mri-images.h5").exists() and report["files"]["images"] is None
    assert all(t["status"] == "not run" for t in report["targets"])
    assert any("skipped (prior missing)" in t["detail"] for t in report["targets"])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="methods"):
        bct.run_ct_benchmark(n_slices=2, size=32, views=8, methods=["dds"], prior="no-such-prior", progress=False)


def test_a_prior_with_the_wrong_channels_is_an_error_not_a_skip():
    net = UNet(in_channels=1, base_channels=8, channel_mult=(1, 2))
    with pytest.raises(ValueError, match="channel"):
        bmri.run_mri_benchmark(n_slices=1, size=32, cases=["uniform1d:4"], methods=["dds"], prior=net,
                             progress=False)


# ------------------------------------------------------------------ tuning on validation slices
def test_tuning_uses_validation_slices_and_picks_the_best(tmp_path, monkeypatch):
    monkeypatch.setitem(bi.TUNE_GRIDS, "mri", {"cg-sense": ("iters", (1, 10)), "l1-wavelet": ("lam", (1e-3, 1.0))})
    report = bmri.run_mri_benchmark(n_slices=2, size=32, cases=["uniform1d:4"], methods=["cg-sense", "l1-wavelet"],
                                  options={"l1-wavelet": {"iters": 20}}, tune=True, tune_slices=2, progress=False,
                                  warmup=False)
    case = report["cases"][0]
    tu = case["tuning"]
    assert tu["split"] == "val" and not set(tu["slice_z"]) & set(case["slice_z"])
    rows = {r["label"]: r for r in case["rows"]}
    for label, option in (("cg-sense", "iters"), ("l1-wavelet", "lam")):
        c = tu["choices"][label]
        scores = {v: sc for v, sc in c["scores_psnr"]}
        assert c["option"] == option and c["value"] == max(scores, key=scores.get)
        assert rows[label]["options"][option] == c["value"]
    assert tu["choices"]["cg-sense"]["value"] == 10  # one CG step is the zero-filled image up to scale
    assert tu["choices"]["l1-wavelet"]["value"] == 1e-3  # lam = 1 wipes the image out


def test_tuning_a_joint_grid_sets_both_options(monkeypatch):
    grid = (("iters", "lam"), ((1, None), (10, None), (10, 1e3)))
    monkeypatch.setitem(bi.TUNE_GRIDS, "mri", {"cg-sense": grid})
    report = bmri.run_mri_benchmark(n_slices=1, size=32, cases=["uniform1d:4"], methods=["cg-sense"], tune=True,
                                  tune_slices=1, progress=False, warmup=False)
    case = report["cases"][0]
    c = case["tuning"]["choices"]["cg-sense"]
    assert c["option"] == ["iters", "lam"] and len(c["scores_psnr"]) == 3
    best = max(c["scores_psnr"], key=lambda vs: vs[1])[0]
    assert c["value"] == best == [10, None]  # lam = 1e3 pulls the image to zero; one step is zero-filled
    opts = case["rows"][0]["options"]
    assert opts["iters"] == 10 and "lam" not in opts
    assert "iters=10, lam=default" in bmri.format_mri_table(report)


# ------------------------------------------------------------------ targets
def _case(rows, **kw):
    out = {"case": kw.pop("case", "uniform1d-x4"), "rows": [], "same_slices": kw.pop("same", []), **kw}
    for label, psnrs in rows.items():
        out["rows"].append({"label": label, "method": label.split("-")[0] if label[:3] in ("dds", "dps") else label,
                            "slices": list(range(len(psnrs))),
                            "per_slice": [{"index": i, "psnr": p} for i, p in enumerate(psnrs)]})
    return out


def test_targets_met_missed_and_not_run():
    c = _case({"dds-49": [30.0, 32.0], "cg-sense": [27.5, 28.0], "l1-wavelet": [30.5, 30.5]}, mask="uniform1d",
              accel_requested=4.0, same=[{"dds": "dds-49", "dps": "dps-1000", "speedup": 20.0, "dds_psnr": 31.0,
                                          "dps_psnr": 29.0, "dds_seconds_per_slice": 1.0,
                                          "dps_seconds_per_slice": 20.0, "slices": [0], "slice_z": [82]}])
    t = bdds.check_targets({"benchmark": "mri", "cases": [c], "skipped": {}})
    assert [x["status"] for x in t] == ["met", "missed", "met"]  # +3.25 dB >= 3; +0.5 dB < 1; 20x and higher PSNR
    assert t[0]["value_db"] == pytest.approx(3.25) and t[1]["value_db"] == pytest.approx(0.5)
    c["same_slices"][0].update(speedup=10.0)
    assert bdds.check_targets({"benchmark": "mri", "cases": [c], "skipped": {}})[2]["status"] == "missed"
    c["same_slices"][0].update(speedup=30.0, dps_psnr=31.5)
    assert bdds.check_targets({"benchmark": "mri", "cases": [c], "skipped": {}})[2]["status"] == "missed"
    c["same_slices"][0].update(dps="dps-50", dps_psnr=20.0)
    t = bdds.check_targets({"benchmark": "mri", "cases": [c], "skipped": {}})
    assert t[2]["status"] == "not run" and "DPS-1000" in t[2]["detail"]
    lines = bi.target_lines({"benchmark": "mri", "cases": [c], "skipped": {}, "targets": t})
    assert lines[0].startswith("TARGET met: DDS-49 >= CG-SENSE + 3 dB") and "+3.25 dB" in lines[0]
    ct = _case({"dds-49": [30.0], "fbp": [21.0], "admm-tv": [29.5]}, case="views-8", views=8)
    t = bdds.check_targets({"benchmark": "ct", "cases": [ct], "skipped": {}})
    assert [x["status"] for x in t] == ["met", "missed"]
    t = bdds.check_targets({"benchmark": "ct", "cases": [_case({"fbp": [1.0]}, case="views-16", views=16)],
                          "skipped": {}})
    assert [x["status"] for x in t] == ["not run", "not run"]


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize("kwargs, exc, name", [
    ({"cases": ["radial:4"]}, ValueError, "cases"),
    ({"cases": ["uniform1d:fast"]}, ValueError, "cases"),
    ({"cases": ["uniform1d:0.5"]}, ValueError, "cases"),
    ({"methods": ["dds", "unet"]}, ValueError, "methods"),
    ({"methods": []}, ValueError, "methods"),
    ({"n_slices": 0}, ValueError, "n_slices"),
    ({"n_slices": 500}, ValueError, "n_slices"),
    ({"size": 8}, ValueError, "size"),
    ({"dps_count": 0}, ValueError, "dps_count"),
    ({"dps_nfe": 2.5}, TypeError, "dps_nfe"),
    ({"dds_nfe": [49, 0]}, ValueError, "dds_nfe"),
    ({"snr_db": "high"}, TypeError, "snr_db"),
    ({"options": {"tv": 3}}, TypeError, "options"),
    ({"tune_slices": 0}, ValueError, "tune_slices"),
])
def test_bad_mri_arguments_name_themselves(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        bmri.run_mri_benchmark(**{"size": 32, "progress": False, "methods": ["zero-filled"], **kwargs})


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"views": [8, 0]}, ValueError, "views"),
    ({"views": "eight"}, TypeError, "views"),
    ({"noise": -0.1}, ValueError, "noise"),
    ({"methods": ["cg-sense"]}, ValueError, "methods"),
    ({"n_slices": 99}, ValueError, "n_slices"),
])
def test_bad_ct_arguments_name_themselves(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        bct.run_ct_benchmark(**{"size": 32, "progress": False, "methods": ["fbp"], **kwargs})


def test_unknown_method_option_is_named(tmp_path):
    with pytest.raises(TypeError, match="wavelet"):
        bmri.run_mri_benchmark(n_slices=1, size=32, cases=["uniform1d:4"], methods=["tv"], options={"tv": {"wavelet": 1}},
                             progress=False)
