"""Diffusion priors: an exact Gaussian denoiser (for tests) and trained UNets by name.

A *denoiser* is any callable ``eps = denoiser(x_t, t)`` on real tensors
``x_t`` of shape ``(B, C, H, W)`` and integer steps ``t`` of shape ``(B,)``,
returning the predicted noise ``E[eps | x_t]`` with the shape of ``x_t``.
Complex images are 2 channels (real, imaginary).

:class:`GaussianDenoiser` is that expectation in closed form for a Gaussian
prior ``x_0 ~ N(mu, Sigma)``: with ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``
(``a = abar_t``), ``x_t ~ N(sqrt(a) mu, a Sigma + (1 - a) I)`` and
``Cov(eps, x_t) = sqrt(1 - a) I``, so

    E[eps | x_t] = sqrt(1 - a) (a Sigma + (1 - a) I)^-1 (x_t - sqrt(a) mu).

Trained priors are :class:`~krylearn.solvers.dds.unet.UNet` weights in
``solvers/dds/weights/NAME.safetensors`` with a JSON card ``NAME.json``
holding ``config`` (the UNet's constructor arguments) and provenance; they
load like every learned method's weights,
``net, card = krylearn.solvers.learned.load_pretrained("dds-mri")``.
:func:`load_prior`, :func:`save_prior` and :func:`available_priors` are
thin spellings of that convention kept for existing callers.
"""

from __future__ import annotations

import numpy as np
import torch

from ..learned import available, load_pretrained, save_pretrained
from .schedule import VPSchedule
from .unet import UNet

__all__ = ["GaussianDenoiser", "available_priors", "load_prior", "save_prior"]


def _np(a, name):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


class GaussianDenoiser:
    """Exact ``E[eps | x_t]`` for a Gaussian prior under the VP forward process.

    Parameters
    ----------
    mean : array, (C, H, W)
        Prior mean in the network representation (real; complex images as
        2 channels real, imaginary).
    cov : array, (n, n), optional
        Prior covariance of the flattened image (``n = C * H * W``),
        symmetric positive semidefinite.
    var : float or array (C, H, W), optional
        Diagonal covariance instead of ``cov`` (exactly one of the two).
    schedule : VPSchedule, optional
        Default: the linear 1e-4..0.02, T = 1000 schedule.

    Notes
    -----
    ``cov`` is eigendecomposed once (``n <= ~4000`` is practical); each call
    costs two ``(n, n)`` products per batch in float64.  The output has the
    dtype and device of ``x_t``.

    Examples
    --------
    >>> d = GaussianDenoiser(np.zeros((1, 2, 2)), var=1.0)
    >>> d(torch.ones(1, 1, 2, 2), torch.tensor([999])).shape  # unit prior: eps_hat = sqrt(1 - a) x_t
    torch.Size([1, 1, 2, 2])
    """

    size_multiple = 1

    def __init__(self, mean, cov=None, var=None, schedule: VPSchedule | None = None):
        mean = _np(mean, "mean")
        if mean.ndim != 3:
            raise ValueError(f"mean must have shape (C, H, W), got {mean.shape}")
        self.mean = mean
        self.shape = mean.shape
        self.in_channels = mean.shape[0]
        n = mean.size
        if (cov is None) == (var is None):
            raise ValueError("give exactly one of cov (dense) and var (diagonal)")
        self.schedule = schedule or VPSchedule()
        self._cache = {}
        if cov is not None:
            cov = _np(cov, "cov")
            if cov.shape != (n, n):
                raise ValueError(f"cov must have shape ({n}, {n}) for mean of shape {mean.shape}, got {cov.shape}")
            if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(cov).max())):
                raise ValueError("cov must be symmetric")
            lam, V = np.linalg.eigh(0.5 * (cov + cov.T))
            if lam.min() < -1e-8 * max(1.0, lam.max()):
                raise ValueError(f"cov must be positive semidefinite (smallest eigenvalue {lam.min():.3g})")
            self.eigvals, self.eigvecs = np.clip(lam, 0, None), V
            self.var = None
            self.cov = cov
        else:
            var = _np(var, "var")
            var = np.broadcast_to(var, mean.shape).copy() if var.ndim == 0 or var.shape == mean.shape else None
            if var is None:
                raise ValueError(f"var must be a scalar or have the shape of mean {mean.shape}")
            if var.min() < 0:
                raise ValueError("var must be non-negative")
            self.var = var
            self.cov = np.diag(var.reshape(-1))
            self.eigvals = self.eigvecs = None

    def _tensors(self, device):
        key = str(device)
        if key not in self._cache:
            f = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64, device=device)
            self._cache[key] = (f(self.mean.reshape(-1)), f(None if self.var is None else self.var.reshape(-1)),
                                f(self.eigvals), f(self.eigvecs))
        return self._cache[key]

    def __call__(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """``E[eps | x_t]``, differentiable in ``x_t`` (torch ops in float64)."""
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != self.shape:
            raise ValueError(f"x_t must have shape (B, *{self.shape}), got {tuple(x_t.shape)}")
        t = torch.as_tensor(t).reshape(-1).cpu().numpy()
        if t.size == 1:
            t = np.repeat(t, x_t.shape[0])
        if t.size != x_t.shape[0]:
            raise ValueError(f"t must be a scalar or have shape ({x_t.shape[0]},), got {t.shape}")
        mean, var, lam, V = self._tensors(x_t.device)
        a = torch.as_tensor(self.schedule.alpha_bar(t.astype(np.int64)), device=x_t.device)[:, None]  # (B, 1)
        x = x_t.to(torch.float64).reshape(x_t.shape[0], -1)
        d = x - torch.sqrt(a) * mean
        if var is not None:
            eps = torch.sqrt(1 - a) * d / (a * var + (1 - a))
        else:
            eps = torch.sqrt(1 - a) * (((d @ V) / (a * lam + (1 - a))) @ V.T)
        return eps.reshape(x_t.shape).to(x_t.dtype)

    def sample(self, count: int, seed=None) -> np.ndarray:
        """``count`` draws from the prior, ``(count, C, H, W)`` float64."""
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((count, self.mean.size))
        if self.var is not None:
            x = z * np.sqrt(self.var.reshape(1, -1))
        else:
            x = (z * np.sqrt(self.eigvals)[None]) @ self.eigvecs.T
        return (x + self.mean.reshape(1, -1)).reshape((count,) + self.shape)


# ---------------------------------------------------------------- trained priors (thin spellings)
def available_priors() -> list[str]:
    """Names of the shipped priors: ``available("dds")``."""
    return available("dds")


def load_prior(name_or_path, device="cpu", *, return_card: bool = False):
    """A trained UNet prior: ``load_pretrained(name_or_path, method="dds")``'s network (and card).

    Returns the UNet (eval mode, float32, gradients off; shared between
    calls: do not train it), or ``(UNet, card)`` with ``return_card``.
    """
    net, card = load_pretrained(name_or_path, method="dds", device=device)
    return (net, card) if return_card else net


def save_prior(model: UNet, card: dict, path, *, half: bool = False):
    """``save_pretrained(model, card, path)`` for a dds :class:`UNet`; returns the two file paths."""
    module = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    if not isinstance(module, UNet):
        raise TypeError(f"model must be a dds UNet, got {type(module).__name__}")
    return save_pretrained(module, card, path, half=half)
