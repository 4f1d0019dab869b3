"""Small problems shared by the DDS tests: a Gaussian prior with closed-form posteriors, toy images, a tiny UNet."""

import numpy as np
import torch
from krylearn.solvers.dds import UNet

N = 8  # image side of the closed-form problems


def smooth_cov(n, length=2.0, var=0.2, nugget=1e-3):
    """Squared-exponential covariance of an ``n x n`` image, ``(n*n, n*n)``."""
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    p = np.stack([yy.ravel(), xx.ravel()], 1)
    d2 = ((p[:, None] - p[None]) ** 2).sum(-1)
    return var * np.exp(-d2 / (2 * length**2)) + nugget * np.eye(n * n)


def disc(n, radius=3.0):
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return (np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) < radius).astype(float)


def real_rep(M):
    """Real matrix of the complex M acting on [Re x; Im x] -> [Re y; Im y]."""
    return np.block([[M.real, -M.imag], [M.imag, M.real]])


def posterior_mean(R, cov, mu, yr):
    """Noiseless Gaussian conditioning E[x | R x = y] = mu + S R^T (R S R^T)^+ (y - R mu)."""
    G = R @ cov @ R.T
    return mu + cov @ R.T @ np.linalg.pinv(G, rcond=1e-10) @ (yr - R @ mu)


def toy_images(count, n=8, seed=0):
    """``(count, 1, n, n)`` float32 discs of random centre, radius and intensity."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    out = np.empty((count, 1, n, n), dtype=np.float32)
    for i in range(count):
        cy, cx, r = rng.uniform(2, n - 2), rng.uniform(2, n - 2), rng.uniform(1.5, 3)
        out[i, 0] = (np.hypot(yy - cy, xx - cx) < r) * rng.uniform(0.5, 1.0)
    return out


def tiny_unet(in_channels=1, channel_mult=(1, 2)):
    """A seeded UNet of width 8 (a few thousand parameters)."""
    torch.manual_seed(0)
    return UNet(in_channels=in_channels, base_channels=8, channel_mult=channel_mult, num_heads=2)


def gaussian_mri():
    """8x8 complex image with a Gaussian prior, 2 birdcage coils, 4x column mask: 32 complex data, 64 unknowns.

    Returns a dict: ``den`` (the exact Gaussian denoiser), ``A``, ``M`` (A dense), ``y`` (noiseless),
    ``x_true``, and complex images ``pm`` (E[x | y], closed form), ``mean`` (prior mean), ``minnorm``.
    """
    from krylearn.operators.mri import SenseOperator, birdcage_maps, uniform1d_mask
    from krylearn.solvers.dds import GaussianDenoiser

    K = smooth_cov(N)
    cov = np.block([[K, 0 * K], [0 * K, 0.5 * K]])
    mean = np.stack([0.5 * disc(N), 0.1 * disc(N)])
    den = GaussianDenoiser(mean, cov=cov)
    A = SenseOperator(birdcage_maps(2, (N, N), dtype=np.complex128), uniform1d_mask(N, 4, acs=0.125, seed=0))
    xt = den.sample(1, seed=1)[0]
    x_true = xt[0] + 1j * xt[1]
    y = A(x_true)
    M = A.to_dense().numpy()
    R = real_rep(M)
    yr = np.concatenate([y.real.ravel(), y.imag.ravel()])
    pm = posterior_mean(R, cov, mean.ravel(), yr)

    def to_c(v):
        return v[: N * N].reshape(N, N) + 1j * v[N * N:].reshape(N, N)

    return {"den": den, "A": A, "M": M, "y": y, "x_true": x_true, "pm": to_c(pm), "mean": to_c(mean.ravel()),
            "minnorm": to_c(np.linalg.pinv(R, rcond=1e-10) @ yr)}
