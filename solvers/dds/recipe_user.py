"""``krylearn train diffusion --data PATH...``: a DDS prior's training images from the user's own files.

:func:`user_data` indexes fastMRI ``.h5`` k-space, DICOM series, NIfTI
volumes and HDF5 image stacks (files or folders, mixed;
:func:`krylearn.datasets.image_stacks.find_volumes`), holds out whole
volumes for validation and streams the training slices
(:class:`~krylearn.solvers.dds.user_images.UserImages`: the size and
normalisation policy is written there and in ``docs/dds-training-data.md``).
:func:`~krylearn.solvers.dds.recipe.train_prior` calls it when given
``data=``; the card's ``data`` entry is :meth:`UserData.card`.

``--kind mri`` trains on complex images: fastMRI files give their
coil-combined complex image; real sources (DICOM, NIfTI, real HDF5 stacks,
magnitude images) get a zero phase, and the training augmentation
(:class:`~krylearn.problems.brain.BrainAugment`) multiplies every image by a
smooth random phase, as for the shipped priors.  Validation images from real
sources get a smooth phase seeded by ``val_seed`` so that runs compare on
the same images.  ``--kind ct`` trains on real images (fastMRI: the
root-sum-of-squares magnitude).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch

from ...datasets.image_stacks import find_volumes
from ...problems.phase import phase_maps
from .user_images import NORMALISATION, SIZE_POLICY, STAT_SLICES, UserImages

__all__ = ["UserData", "single_nifti", "user_data"]

_KIND_TEXT = {
    "mri": ("complex, |x| <= 1; network channels (real, imaginary). fastMRI: coil-combined image sum_c conj(S_c) "
            "m_c / sum_c |S_c|^2 with the file's sensitivity_maps, else low-resolution maps from the Hann-windowed "
            "central 8% of k-space (at least 8 lines) over their root-sum-of-squares (single-coil: the image "
            "itself); real sources: zero phase (training adds a smooth random phase; validation images get a "
            "seeded one)"),
    "ct": ("real in [0, 1]; fastMRI: root-sum-of-squares magnitude; complex HDF5 stacks: magnitude; DICOM CT: "
           "HU + 1000 before the scale"),
}


def _as_list(data) -> list:
    return [data] if isinstance(data, (str, os.PathLike)) else list(data)


def single_nifti(data) -> str | None:
    """The path when ``data`` is exactly one 3-D NIfTI file: it trains as the single-volume route always did.

    (Axial bands of the volume split train and validation, as for the
    MNI152 template: :func:`krylearn.problems.brain.brain_slices`.)  A 4-D
    file with several frames takes the user-data route (a volume per frame).
    """
    items = _as_list(data)
    if len(items) == 1 and isinstance(items[0], (str, os.PathLike)):
        p = os.fspath(items[0])
        if os.path.isfile(p) and p.lower().endswith((".nii", ".nii.gz")):
            return None if any(v.frame is not None for v in find_volumes([p])) else p
    return None


@dataclass
class UserData:
    """The user's training data, indexed; validation images in memory (on rank 0).

    Attributes
    ----------
    train : UserImages
        The stream the trainer draws from.
    x_val : torch.Tensor or None
        float32 ``(n, C, size, size)`` on rank 0 (``None`` on other ranks and without validation).
    val_slices : list of [label, slice]
    inputs : list of str
        The paths as given.
    seconds : float
        Time spent indexing and reading the validation images.
    options : dict
    """

    train: UserImages
    x_val: torch.Tensor | None
    val_slices: list
    inputs: list
    seconds: float
    options: dict = field(default_factory=dict)

    def card(self, kind: str, aug) -> dict:
        """The card's ``data`` entry: inputs, formats and counts, the split, the policies, augmentation."""
        d = self.train.describe()
        return {
            "source": "user data (krylearn train diffusion --data)",
            "inputs": self.inputs,
            **d,
            "split": (f"by volume (a file; a DICOM series): round({d['val_fraction']} x groups), at least 1, picked "
                      f"by a permutation seeded with the run's seed; up to {self.train.val_limit} evenly spaced "
                      "non-background slices of them validate") if d["val_fraction"] else "none (val_fraction=0)",
            "val_images": 0 if self.x_val is None else int(self.x_val.shape[0]),
            "val_slices": self.val_slices,
            "size": [self.train.size, self.train.size],
            "size_policy": SIZE_POLICY,
            "normalisation": NORMALISATION,
            "statistics_slices_per_volume": STAT_SLICES,
            "background": (f"slices with < {self.train.min_foreground:.0%} of pixels above 0.1 are skipped when "
                           "first read (training draws again)"),
            "background_slices_seen_rank0": int(self.train.background_seen),
            "options": self.options,
            "augmentation": aug.config() if aug is not None else None,
            "range": _KIND_TEXT[kind],
        }


def _val_phase(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Smooth seeded phases on the images whose imaginary channel is all zero (real sources)."""
    real = (x[:, 1] == 0).all(dim=(1, 2))
    if not bool(real.any()):
        return x
    g = torch.Generator().manual_seed(int(seed))
    phi = phase_maps(int(real.sum()), x.shape[-2], x.shape[-1], g, torch.device("cpu"), torch.float32)
    m = x[real, 0]
    out = x.clone()
    out[real, 0], out[real, 1] = m * torch.cos(phi), m * torch.sin(phi)
    return out


def user_data(kind: str, data, *, size: int, seed: int, rank: int = 0, val_fraction: float = 0.1,
              h5_key: str | None = None, axes=("axial",), min_foreground: float = 0.1, val_seed: int = 12345,
              cache: int = 2048, val_limit: int = 64) -> UserData:
    """Index ``data`` and read the validation images (rank 0) for a ``kind`` prior at ``size``.

    Parameters
    ----------
    kind : {"mri", "ct"}
    data : path or list of paths
        Files or folders: fastMRI ``.h5``, DICOM series, ``.nii`` / ``.nii.gz``, HDF5 image stacks.
    size : int
    seed : int
        Picks the validation volumes.
    rank : int
        Only rank 0 reads the validation images.
    val_fraction, min_foreground, cache, val_limit
        See :class:`~krylearn.solvers.dds.user_images.UserImages`.
    h5_key, axes
        See :func:`~krylearn.datasets.image_stacks.find_volumes` (``key``, ``axes``).
    val_seed : int
        Phases of the validation images from real sources (``kind="mri"``).

    Raises
    ------
    FileNotFoundError, ValueError, FormatError, ImportError
        As :func:`~krylearn.datasets.image_stacks.find_volumes`, and a split
        that leaves no training volume.
    """
    t0 = time.perf_counter()
    inputs = [os.fspath(p) for p in _as_list(data)]
    volumes = find_volumes(inputs, key=h5_key, axes=axes)
    stream = UserImages(volumes, channels=2 if kind == "mri" else 1, size=size, seed=seed, val_fraction=val_fraction,
                        min_foreground=min_foreground, cache=cache, val_limit=val_limit)
    x_val, val_slices = (None, [])
    if rank == 0:
        x_val, val_slices = stream.val_images()
        if x_val is not None and kind == "mri":
            x_val = _val_phase(x_val, val_seed)
    options = {"h5_key": h5_key, "axes": list(axes) if not isinstance(axes, str) else axes.split(","),
               "min_foreground": min_foreground, "val_fraction": val_fraction}
    return UserData(train=stream, x_val=x_val, val_slices=val_slices, inputs=inputs,
                    seconds=time.perf_counter() - t0, options=options)
