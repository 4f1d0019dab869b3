"""Parallel-beam projector, FBP and phantoms (krylearn.operators.ct, krylearn.problems.phantoms)."""

import numpy as np
import pytest
import scipy.sparse
import torch
from krylearn.problems.phantoms import (
    SHEPP_LOGAN_MODIFIED,
    ellipse_image,
    ellipse_sinogram,
    random_ellipses,
    random_phantom,
    shepp_logan,
)
from krylearn.operators.ct import (
    FILTERS,
    ParallelBeamProjector,
    angle_weights,
    default_n_det,
    fbp,
    ramp_filter,
    system_matrix,
)

import krylearn

EQUI = lambda n: np.linspace(0, np.pi, n, endpoint=False)


def psnr(x, ref):
    return 10 * np.log10(ref.max() ** 2 / np.mean((x - ref) ** 2))


def reference_matrix(shape, angles, n_det, ds):
    """An independent, vectorised-numpy construction of the same footprint model."""
    ny, nx = shape
    px = np.tile(np.arange(nx) - (nx - 1) / 2.0, ny)
    py = np.repeat((ny - 1) / 2.0 - np.arange(ny), nx)
    th = np.asarray(angles)[:, None]
    c, s = np.cos(th), np.sin(th)
    a, b = np.maximum(abs(c), abs(s)), np.minimum(abs(c), abs(s))
    b = np.where(b < 1e-12, 0.0, b)
    h, g = (a + b) / 2, (a - b) / 2

    def cdf(t):  # the trapezoid's CDF as a difference of ramps squared
        r2 = lambda u: np.maximum(u, 0.0) ** 2
        quad = (r2(t + h) - r2(t + g) - r2(t - g) + r2(t - h)) / (2 * a * np.where(b > 0, b, 1.0))
        box = np.clip((t + h) / a, 0, 1)
        return np.where(b > 0, quad, box)

    sp = px * c + py * s
    rows, cols, vals = [], [], []
    for k in range(n_det):  # one bin at a time: simple, not fast
        lo = (k - 0.5 - (n_det - 1) / 2) * ds - sp
        w = (cdf(lo + ds) - cdf(lo)) / ds
        v, p = np.nonzero(w > 1e-13)
        rows.append(v * n_det + k)
        cols.append(p)
        vals.append(w[v, p])
    return scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                   shape=(len(angles) * n_det, ny * nx))


# ---------------------------------------------------------------- matrix
@pytest.mark.parametrize("shape,n_ang,ds,n_det", [((13, 17), 11, 1.0, None), ((16, 16), 9, 0.7, None),
                                                  ((10, 21), 5, 1.6, 9)])
def test_matrix_matches_reference(shape, n_ang, ds, n_det):
    angles = np.random.default_rng(0).uniform(-4, 7, n_ang)
    angles[:3] = [0.0, np.pi / 2, 3 * np.pi / 4]
    A = system_matrix(shape, angles, n_det, ds)
    nd = default_n_det(shape, ds) if n_det is None else n_det
    assert A.shape == (n_ang * nd, shape[0] * shape[1])
    R = reference_matrix(shape, angles, nd, ds)
    # the reference's difference of squared ramps loses ~eps/min(|cos|, |sin|) near the axes
    assert abs(A - R).max() < 1e-9


def test_each_pixel_deposits_unit_area_per_view():
    """Inside the detector, sum_k A[(v, k), p] = 1 / det_spacing (the footprint has area 1)."""
    for ds in (1.0, 0.6):
        P = ParallelBeamProjector((20, 24), EQUI(17), det_spacing=ds)
        A = P.to_sparse()
        per_view = np.asarray(A.sum(axis=0)).ravel() / 17
        np.testing.assert_allclose(per_view, 1 / ds, rtol=1e-12)


def test_geometry_convention():
    ny, nx = 15, 21
    P = ParallelBeamProjector((ny, nx), [0.0, np.pi / 2, np.pi])
    nd = P.n_det
    x = np.zeros((ny, nx))
    i, j = 3, 16  # a pixel right of centre, in the upper half
    x[i, j] = 1.0
    sino = P @ x
    xc, yc = j - (nx - 1) / 2, (ny - 1) / 2 - i
    centre = (nd - 1) / 2
    assert np.argmax(sino[0]) == centre + xc  # theta = 0: s = x
    assert np.argmax(sino[1]) == round(centre + yc)  # theta = pi/2: s = y
    assert np.argmax(sino[2]) == centre - xc  # theta = pi: s = -x
    # theta = 0 integrates columns: a uniform image gives ny per column exactly
    col = (P @ np.ones((ny, nx)))[0]
    np.testing.assert_allclose(col[int(centre - (nx - 1) / 2): int(centre + (nx - 1) / 2) + 1], ny, rtol=1e-13)


# -------------------------------------------------------------- adjoint
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
def test_dot_test(dtype, tol):
    rng = np.random.default_rng(1)
    angles = rng.uniform(-np.pi, 2 * np.pi, 23)
    P = ParallelBeamProjector((19, 26), angles, det_spacing=0.8, dtype=dtype)
    x = torch.as_tensor(rng.standard_normal((3, 19, 26)), dtype=dtype)
    y = torch.as_tensor(rng.standard_normal((3, *P.oshape)), dtype=dtype)
    Ax, ATy = P @ x, P.H @ y
    assert Ax.dtype == dtype and ATy.shape == (3, 19, 26)
    lhs, rhs = (Ax.double() * y.double()).sum(), (x.double() * ATy.double()).sum()
    assert abs(lhs - rhs) <= tol * abs(lhs)
    # the normal operator is P^T P, symmetric
    np.testing.assert_allclose(P.N @ x, P.H @ Ax, rtol=tol, atol=tol * Ax.abs().max().item())
    lhs, rhs = ((P.N @ x[0]).double() * x[1].double()).sum(), (x[0].double() * (P.N @ x[1]).double()).sum()
    assert abs(lhs - rhs) <= tol * abs(lhs)


def test_to_sparse_and_batches():
    rng = np.random.default_rng(2)
    P = ParallelBeamProjector((12, 12), EQUI(30))
    A = P.to_sparse()
    x = rng.standard_normal((4, 12, 12))
    y = P @ x
    for b in range(4):
        np.testing.assert_allclose(y[b], P @ x[b], atol=1e-12)  # batch == one at a time
        np.testing.assert_allclose(y[b].ravel(), A @ x[b].ravel(), atol=1e-12)
    np.testing.assert_allclose((P.H @ y)[2].ravel(), A.T @ y[2].ravel(), atol=1e-12)
    P32 = P.to(dtype=torch.float32)
    assert P32.dtype == torch.float32 and P32.H.dtype == torch.float32
    np.testing.assert_allclose(P32 @ torch.as_tensor(x, dtype=torch.float32), y, rtol=1e-5, atol=1e-4)


# -------------------------------------------------------------- accuracy
def test_disc_projection_matches_chord_lengths():
    n, R = 96, 30.0
    angles = EQUI(24)
    P = ParallelBeamProjector((n, n), angles)
    disc = ellipse_image([[1.0, R / (n / 2), R / (n / 2), 0, 0, 0]], n, oversample=8)
    sino = P @ disc
    s = np.arange(P.n_det) - (P.n_det - 1) / 2

    def G(t):  # antiderivative of the chord length 2 sqrt(R^2 - t^2)
        t = np.clip(t, -R, R)
        return t * np.sqrt(R * R - t * t) + R * R * np.arcsin(t / R)

    bin_avg = np.broadcast_to(G(s + 0.5) - G(s - 0.5), sino.shape)
    assert np.linalg.norm(sino - bin_avg) < 0.01 * np.linalg.norm(bin_avg)
    chord = 2 * np.sqrt(np.maximum(R * R - s * s, 0))
    inner = np.abs(s) < R - 3
    assert np.max(np.abs(sino - chord)[:, inner] / chord[inner]) < 0.02


def test_phantom_sinogram_matches_projector():
    """P applied to a rasterised phantom ~ the exact sinogram averaged over each bin."""
    n = 64
    angles = EQUI(40)
    P = ParallelBeamProjector((n, n), angles)
    for table, tol in ((random_ellipses(6, seed=3), 0.015), (SHEPP_LOGAN_MODIFIED, 0.05)):
        fine = ellipse_sinogram(table, n, angles, n_det=8 * P.n_det, det_spacing=1 / 8)
        exact = fine.reshape(len(angles), P.n_det, 8).mean(-1)  # midpoint rule over each bin
        disc = P @ ellipse_image(table, n, oversample=4)
        assert np.linalg.norm(disc - exact) < tol * np.linalg.norm(exact)


def test_fbp_scale_and_quality():
    n = 64
    angles = EQUI(90)
    P = ParallelBeamProjector((n, n), angles)
    # a uniform disc reconstructs to 1 in its interior (the filter's scale is right)
    disc_tab = [[1.0, 0.6, 0.6, 0, 0, 0]]
    rec = fbp(ellipse_sinogram(disc_tab, n, angles), projector=P)
    assert abs(rec[26:38, 26:38].mean() - 1.0) < 0.01
    # Shepp-Logan: FBP beats the best-scaled unfiltered back-projection by a wide margin
    img = shepp_logan(n, oversample=4)
    sino = ellipse_sinogram(SHEPP_LOGAN_MODIFIED, n, angles)
    bp = P.H @ sino
    bp = bp * (bp * img).sum() / (bp * bp).sum()
    for f in FILTERS:
        margin = 10 if f in ("ram-lak", "shepp-logan") else 5  # cosine/hann trade resolution for noise
        assert psnr(fbp(sino, angles, (n, n), filter=f), img) > psnr(bp, img) + margin


def test_fbp_shepp_logan_128_180_views():
    n = 128
    angles = EQUI(180)
    P = ParallelBeamProjector((n, n), angles)
    img = shepp_logan(n, oversample=4)
    rec = fbp(ellipse_sinogram(SHEPP_LOGAN_MODIFIED, n, angles), projector=P)
    assert psnr(rec, img) > 28  # measured 31.6 dB (ram-lak)
    rec_sl = fbp(ellipse_sinogram(SHEPP_LOGAN_MODIFIED, n, angles), projector=P, filter="shepp-logan")
    assert psnr(rec_sl, img) > 27


def test_fbp_batched_and_torch():
    n = 32
    angles = EQUI(45)
    P = ParallelBeamProjector((n, n), angles)
    x = np.stack([random_phantom(n, 5, seed=s) for s in range(3)])
    sino = P @ x
    rec = fbp(sino, projector=P)
    assert rec.shape == (3, n, n)
    for b in range(3):
        np.testing.assert_allclose(rec[b], fbp(sino[b], angles, (n, n)), atol=1e-12)
    rec_t = fbp(torch.as_tensor(sino[:1]), projector=P)
    assert isinstance(rec_t, torch.Tensor)
    np.testing.assert_allclose(rec_t.numpy(), rec[:1], atol=1e-12)


def test_ramp_filter_and_angle_weights():
    H = ramp_filter(100)
    f = np.fft.rfftfreq(2 * (H.shape[0] - 1))
    assert H.shape[0] - 1 >= 100  # padded to >= 2 n_det
    assert abs(H[0]) < 1e-3 and abs(H[-1] - 0.5) < 2e-3  # |f|: DC ~ 0, Nyquist ~ 1/2
    np.testing.assert_allclose(H.numpy()[1:], f[1:], rtol=0.1, atol=2e-3)
    np.testing.assert_allclose(angle_weights(EQUI(30)), np.pi / 30)
    np.testing.assert_allclose(angle_weights(EQUI(30) + np.pi), np.pi / 30)  # modulo pi
    w = angle_weights(np.deg2rad(np.arange(120)))  # limited angle: the missing wedge gets no weight
    np.testing.assert_allclose(w, np.deg2rad(1.0))


def test_cg_on_normal_equations_converges():
    n = 32
    angles = EQUI(90)
    P = ParallelBeamProjector((n, n), angles)
    x = shepp_logan(n)
    sino = P @ x
    res = krylearn.solve(P.N, (P.H @ sino).reshape(-1), method="cg", rtol=1e-6, maxiter=2000)
    assert res.converged
    err_cg = np.linalg.norm(res.x.reshape(n, n) - x)
    err_fbp = np.linalg.norm(fbp(sino, projector=P) - x)
    assert err_cg < 0.5 * err_fbp
    # diag(P^T P) is cheap, so Jacobi-preconditioned CG works on the normal operator too
    np.testing.assert_allclose(P.N.diagonal().numpy(), np.diag(P.N.to_dense().numpy()), rtol=1e-12)
    res_j = krylearn.solve(P.N, (P.H @ sino).reshape(-1), method="pcg-jacobi", rtol=1e-4, maxiter=500)
    assert res_j.converged and np.linalg.norm(res_j.x.reshape(n, n) - x) < err_fbp


# ---------------------------------------------------------------- errors
def test_bad_inputs():
    with pytest.raises(ValueError, match="angles"):
        ParallelBeamProjector((8, 8), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="angles"):
        ParallelBeamProjector((8, 8), [])
    with pytest.raises(ValueError, match="angles"):
        ParallelBeamProjector((8, 8), [0.0, np.nan])
    with pytest.raises(ValueError, match="shape"):
        ParallelBeamProjector((8,), EQUI(4))
    with pytest.raises(ValueError, match="det_spacing"):
        ParallelBeamProjector((8, 8), EQUI(4), det_spacing=0)
    with pytest.raises(ValueError, match="n_det"):
        ParallelBeamProjector((8, 8), EQUI(4), n_det=0)
    with pytest.raises(TypeError, match="dtype"):
        ParallelBeamProjector((8, 8), EQUI(4), dtype=torch.complex64)
    P = ParallelBeamProjector((8, 8), EQUI(4))
    with pytest.raises(ValueError, match="sinogram"):
        fbp(np.zeros((5, P.n_det)), projector=P)
    with pytest.raises(ValueError, match="filter"):
        fbp(np.zeros(P.oshape), projector=P, filter="ramp")
    with pytest.raises(ValueError, match="x has shape"):
        P @ np.zeros((8, 9))
    with pytest.raises(ValueError, match="ellipses"):
        ellipse_image(np.zeros((2, 5)), 8)


def test_phantoms():
    sl = shepp_logan(64)
    assert sl.shape == (64, 64) and sl.min() > -1e-12 and abs(sl.max() - 1) < 1e-12
    np.testing.assert_array_equal(random_ellipses(5, seed=7), random_ellipses(5, seed=7))
    assert not np.array_equal(random_phantom(32, seed=1), random_phantom(32, seed=2))
    # y points up: the ellipse centred at y = +0.35 lies in the upper rows (row ~ 31.5 - 0.35 * 32)
    assert abs(sl[20, 32] - 0.3) < 1e-12 and abs(sl[43, 32] - 0.2) < 1e-12
