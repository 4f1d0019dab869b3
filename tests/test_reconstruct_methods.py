"""One dispatcher for reconstruction methods (classical table + learned methods' declarations), their options
objects, and the reconstruction pipeline's defects: scale (issue 12), corrupt priors, all-zero coil maps."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from krylearn.cli.main import main
from krylearn.datasets.fastmri import read_reconstruction, write_ct, write_kspace
from krylearn.operators.ct import ParallelBeamProjector
from krylearn.operators.mri import SenseOperator, birdcage_maps, fft2c, uniform1d_mask
from krylearn.pipelines.reconstruct import reconstruct_ct, reconstruct_mri, run_method
from krylearn.problems.phantoms import shepp_logan
from krylearn.solvers import reconstructors as R
from krylearn.solvers.dds import GaussianDenoiser, UNet, save_prior
from krylearn.solvers.dds.reconstruct import DDS, DDSOptions
from krylearn.solvers.registry import methods
from krylearn.utils.errors import FormatError

SHAPE = (24, 20)


def _image():
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    phase = np.exp(1j * 0.4 * np.pi * (xx / SHAPE[1] - 0.5))
    return (np.clip(np.abs(shepp_logan(SHAPE)), 0, 1) * phase).astype(np.complex64)


def _mri_file(path, scale=1.0, *, maps_in_file=True, zero_maps_slice=None):
    x = np.stack([_image(), np.roll(_image(), 2, axis=1)])
    maps = np.broadcast_to(birdcage_maps(4, SHAPE).astype(np.complex64), (2, 4) + SHAPE).copy()
    k = fft2c(torch.as_tensor(maps * x[:, None])).numpy()
    if zero_maps_slice is not None:
        maps[zero_maps_slice] = 0
    write_kspace(path, (k * scale).astype(np.complex64), sensitivity_maps=maps if maps_in_file else None,
                 reconstruction_rss=(np.abs(x) * scale).astype(np.float32))
    return path


def _ct_file(path, scale=1.0):
    vol = np.stack([shepp_logan((16, 16)).real, np.roll(shepp_logan((16, 16)).real, 1, axis=0)])
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    write_ct(path, ParallelBeamProjector((16, 16), angles).apply(vol) * scale, angles, image_shape=(16, 16),
             reference=vol * scale)
    return path


# ------------------------------------------------------------------ the dispatcher
def test_learned_reconstructors_come_from_their_declaration():
    declared = {n for m in methods().values() for n in m.reconstructors}
    assert {"dds", "dps"} <= declared
    for kind in R.KINDS:
        names = R.method_names(kind)
        assert declared <= set(names)
        assert set(names) - declared == {n for n, c in R.CLASSICAL.items() if kind in c.kinds}
    assert R.method_class("ct", "dds") is DDS
    assert R.method_class("mri", "cg-sense") is R.CGSense and R.method_class("ct", "cg") is R.CGLeastSquares


def test_a_new_learned_method_needs_only_its_declaration(monkeypatch):
    """A method the registry declares is set up and run like any other: no case for it in the dispatcher."""

    class Doubling(R.Reconstructor):
        kinds = ("mri",)

        def run(self, A, y, *, seed, scale, progress):
            return 2 * A.H.apply(y)

    monkeypatch.setattr(R, "reconstructor_names", lambda: ["doubling"])
    monkeypatch.setattr(R, "reconstructor_entry", lambda name: Doubling if name == "doubling" else None)
    assert "doubling" in R.method_names("mri") and "doubling" not in R.method_names("ct")
    A = SenseOperator(birdcage_maps(3, SHAPE), uniform1d_mask(SHAPE[1], 2, acs=0.3, seed=0))
    y = A.apply(_image())
    x, _ = run_method("mri", "doubling", A, y)
    np.testing.assert_allclose(x, 2 * run_method("mri", "zero-filled", A, y)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        run_method("ct", "doubling", ParallelBeamProjector(SHAPE, [0.0]), np.zeros((1, 30)))


@dataclasses.dataclass(frozen=True)
class _GainOptions(R.Options):
    gain: float = R.option(2.0, "multiplies the zero-filled image (default 2)")


class _Gain(R.Reconstructor):
    """A toy learned method: its declaration is all the dispatcher and the CLI need."""

    kinds = ("mri",)
    Options = _GainOptions

    def run(self, A, y, *, seed, scale, progress):
        return self.options.gain * A.H.apply(y)


def test_a_declared_method_gets_its_cli_flags_from_its_options(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(R, "reconstructor_names", lambda: ["gain"])
    monkeypatch.setattr(R, "reconstructor_entry", lambda name: _Gain if name == "gain" else None)
    src = _mri_file(tmp_path / "k.h5")
    with pytest.raises(SystemExit):
        main(["reconstruct", "mri", "--help"])
    assert "--gain GAIN" in capsys.readouterr().out
    for args, name in ((["--gain", "3"], "g3"), ([], "g2"), (["--method", "zero-filled"], "zf")):
        method = [] if args[:1] == ["--method"] else ["--method", "gain"]
        assert main(["reconstruct", "mri", str(src), *method, *args, "-q", "--no-previews", "-o",
                     str(tmp_path / f"{name}.h5")]) == 0
    capsys.readouterr()
    zf = read_reconstruction(tmp_path / "zf.h5")[0]
    np.testing.assert_allclose(read_reconstruction(tmp_path / "g3.h5")[0], 3 * zf, rtol=1e-5)
    np.testing.assert_allclose(read_reconstruction(tmp_path / "g2.h5")[0], 2 * zf, rtol=1e-5)
    assert main(["reconstruct", "mri", str(src), "--method", "cg-sense", "--gain", "3", "-q", "-o",
                 str(tmp_path / "x.h5")]) == 2
    assert "--gain does not apply to --method cg-sense" in capsys.readouterr().err


def test_options_are_a_dataclass_per_method_checked_by_name():
    assert R.option_names("mri", "cg-sense") == ("iters", "rtol", "lam")
    assert R.option_names("ct", "fbp") == ("filter",)
    assert "gamma" in R.option_names("mri", "dds") and "gamma" not in R.option_names("mri", "dps")
    rec = R.setup("cg-sense", "mri", iters=7, lam=None, prior="ignored", nfe=3)  # shared keywords: ignored
    assert rec.options == R.CGOptions(iters=7) and rec.options.kwargs() == {"iters": 7} and not rec.scaled
    assert R.setup("cg-sense", "mri", lam=0.1).scaled  # Tikhonov: the weight assumes unit-peak images
    with pytest.raises(TypeError, match=r"'tv' takes no option\(s\) wavelet; it takes lam, iters, sigma"):
        R.setup("tv", "mri", wavelet="db4")
    with pytest.raises(TypeError, match="gamma"):
        R.setup("dps", "mri", gamma=1.0, prior=GaussianDenoiser(np.zeros((2, 4, 4)), var=1.0))
    with pytest.raises(ValueError, match="nfe must be a positive integer"):
        DDSOptions(nfe=0)
    dds = R.setup("dds", "ct", prior=UNet(in_channels=1, base_channels=8, channel_mult=(1, 2)), nfe=4)
    assert dds.record() == {"nfe": 4, "prior": "UNet", "gamma": None, "cg_steps": 5, "eta": 0.85, "volume": True}


def test_cli_refuses_a_flag_the_method_does_not_take(tmp_path, capsys):
    src = _ct_file(tmp_path / "ct.h5")
    assert main(["reconstruct", "ct", str(src), "--method", "fbp", "--cg-steps", "3", "-q", "-o",
                 str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "--cg-steps does not apply to --method fbp" in err and "--filter" in err
    assert not (tmp_path / "o.h5").exists()
    assert main(["reconstruct", "ct", str(src), "--method", "admm-tv", "--iters", "5", "--lam", "0.05", "-q",
                 "--no-previews", "-o", str(tmp_path / "o.h5")]) == 0
    _, attrs = read_reconstruction(tmp_path / "o.h5")
    assert attrs["options"] == "iters=5, lam=0.05"


# ------------------------------------------------------------------ issue 12: scale
@pytest.mark.parametrize("s", [1e-20, 1e20])
def test_mri_reconstruction_of_scaled_kspace_is_the_scaled_reconstruction(tmp_path, s):
    """The image of k-space x s is s x the image of k-space: linear, regularised (data normalised) and DDS."""
    one, big = _mri_file(tmp_path / "one.h5"), _mri_file(tmp_path / "s.h5", s)
    torch.manual_seed(0)
    unet = UNet(in_channels=2, base_channels=8, channel_mult=(1, 2)).eval()
    runs = [("cg-sense", {}), ("zero-filled", {}), ("l1-wavelet", {"iters": 20}), ("dds", {"prior": unet, "nfe": 2})]
    for method, opts in runs:
        reps = [reconstruct_mri(src, tmp_path / f"{method}-{i}.h5", method, accel=2, progress=False, **opts)
                for i, src in enumerate((one, big))]
        a, _ = read_reconstruction(tmp_path / f"{method}-0.h5")
        b, attrs = read_reconstruction(tmp_path / f"{method}-1.h5")
        assert np.abs(a).max() > 0.1, method
        np.testing.assert_allclose(b / s, a, rtol=0, atol=1e-4 * np.abs(a).max(), err_msg=method)
        assert reps[1]["psnr"] == pytest.approx(reps[0]["psnr"], abs=1e-3), method
        if reps[0]["scale"] is not None:
            assert reps[1]["scale"] == pytest.approx(s * reps[0]["scale"], rel=1e-4), method
    # the preview's grey scale follows the image: the same picture
    pa = imread(tmp_path / "cg-sense-0_preview.png")
    pb = imread(tmp_path / "cg-sense-1_preview.png")
    assert pa.shape == pb.shape and np.abs(pa - pb).max() <= 2 / 255


@pytest.mark.parametrize("s", [1e-20, 1e20])
def test_mri_espirit_and_ct_are_scale_equivariant(tmp_path, s):
    reps = [reconstruct_mri(_mri_file(tmp_path / f"e{i}.h5", scale, maps_in_file=False), tmp_path / f"re{i}.h5",
                            "cg-sense", mask="uniform1d", accel=2, acs=0.4, progress=False, previews=False)
            for i, scale in enumerate((1.0, s))]
    assert reps[0]["maps"].startswith("espirit") and reps[1]["maps"] == reps[0]["maps"]
    ra, rb = read_reconstruction(tmp_path / "re0.h5")[0], read_reconstruction(tmp_path / "re1.h5")[0]
    np.testing.assert_allclose(rb / s, ra, rtol=0, atol=1e-4 * ra.max())
    ct1, cts = _ct_file(tmp_path / "c1.h5"), _ct_file(tmp_path / "cs.h5", s)
    for method in ("fbp", "cg", "admm-tv"):
        reconstruct_ct(ct1, tmp_path / "o1.h5", method, progress=False, previews=False)
        reconstruct_ct(cts, tmp_path / "os.h5", method, progress=False, previews=False)
        r1, rs = read_reconstruction(tmp_path / "o1.h5")[0], read_reconstruction(tmp_path / "os.h5")[0]
        np.testing.assert_allclose(rs / s, r1, rtol=0, atol=1e-4 * np.abs(r1).max(), err_msg=method)


def test_cli_cg_sense_on_kspace_times_1e20_is_not_zero(tmp_path, capsys):
    """The issue's command: CG-SENSE on k-space x 1e20 writes 1e20 x the image, not zeros."""
    for name, s in (("one", 1.0), ("big", 1e20)):
        assert main(["reconstruct", "mri", str(_mri_file(tmp_path / f"{name}.h5", s)), "--method", "cg-sense",
                     "--accel", "2", "-q", "--no-previews", "-o", str(tmp_path / f"r-{name}.h5")]) == 0
        json.loads(capsys.readouterr().out)
    a, b = read_reconstruction(tmp_path / "r-one.h5")[0], read_reconstruction(tmp_path / "r-big.h5")[0]
    np.testing.assert_allclose(b / 1e20, a, rtol=0, atol=1e-4 * a.max())


def test_an_image_beyond_float32_is_refused_by_name(tmp_path, monkeypatch):
    """The output layout is float32: an image it cannot hold is an error naming why, not Inf or a crash."""

    class Amplifier(R.Reconstructor):
        kinds = ("mri",)

        def run(self, A, y, *, seed, scale, progress):
            return 1e10 * A.H.apply(y.astype(np.complex128))

    monkeypatch.setattr(R, "reconstructor_entry", lambda name: Amplifier if name == "amplifier" else None)
    src = _mri_file(tmp_path / "k.h5", 1e30)
    with pytest.raises(ValueError, match="beyond float32's range"):
        reconstruct_mri(src, tmp_path / "o.h5", "amplifier", progress=False, previews=False)
    assert not (tmp_path / "o.h5").exists()


# ------------------------------------------------------------------ priors and coil maps
def test_a_corrupt_or_mismatched_prior_is_reported_as_such_not_as_missing(tmp_path, capsys):
    src = _mri_file(tmp_path / "k.h5")
    stem = tmp_path / "prior"
    save_prior(UNet(in_channels=2, base_channels=8, channel_mult=(1, 2)), {"data": "none (test)"}, stem)
    card = json.loads((tmp_path / "prior.json").read_text())
    card["method"] = "dcdm"  # a card of another method beside dds tensors
    (tmp_path / "prior.json").write_text(json.dumps(card))
    with pytest.raises(FormatError, match="prior.json") as e:
        reconstruct_mri(src, tmp_path / "o.h5", "dds", prior=str(stem), nfe=2, progress=False)
    assert "neither a shipped prior" not in str(e.value)
    assert main(["reconstruct", "mri", str(src), "--prior", str(stem), "-q", "-o", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "prior.json" in err and "neither a shipped prior" not in err
    (tmp_path / "prior.json").write_text(json.dumps({**card, "method": "dds"}))
    data = bytearray((tmp_path / "prior.safetensors").read_bytes())
    data[-1] ^= 0xFF  # a flipped byte in the tensors
    (tmp_path / "prior.safetensors").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="prior"):
        run_method("mri", "dds", SenseOperator(birdcage_maps(2, SHAPE), np.ones(SHAPE[1])),
                   np.zeros((2,) + SHAPE, np.complex64), prior=str(stem), nfe=2)


@pytest.mark.parametrize("method", ["dds", "cg-sense"])
def test_all_zero_coil_maps_are_refused(tmp_path, capsys, method):
    src = _mri_file(tmp_path / "k.h5", zero_maps_slice=1)
    opts = {"prior": GaussianDenoiser(np.zeros((2,) + SHAPE), var=0.25), "nfe": 2} if method == "dds" else {}
    with pytest.raises(ValueError, match=r"coil maps of slice\(s\) 1 are all zero"):
        reconstruct_mri(src, tmp_path / "o.h5", method, progress=False, **opts)
    assert not (tmp_path / "o.h5").exists()
    A = SenseOperator(np.zeros((3,) + SHAPE, np.complex64), np.ones(SHAPE[1]))
    with pytest.raises(ValueError, match="all zero"):
        run_method("mri", method, A, np.zeros((3,) + SHAPE, np.complex64), **opts)
    if method == "cg-sense":
        assert main(["reconstruct", "mri", str(src), "--method", method, "-q", "-o", str(tmp_path / "o.h5")]) == 2
        assert "all zero" in capsys.readouterr().err
