"""A broad training corpus for the DDS priors, built from what ships with the dependencies: :func:`broad_images`.

The default priors learn the train band of one T1 template brain.  The
*broad* corpus keeps that band and adds images that make a prior less
narrow, none of which touch the template's val and test bands or the
images the benchmarks test on:

``template``
    the axial train-band slices, as the default priors see them;
``contrast``
    the same slices through a random tissue-contrast curve (a piecewise
    linear map of the T1 intensity with random knots: CSF may turn bright
    and white matter dark, as in T2- or PD-weighted images);
``orthogonal``
    coronal and sagittal squares of the template whose rows all lie in the
    train bands' z ranges (so a close-up of cortex or cerebellum at a
    larger scale than the axial slices);
``natural``
    random square crops, of random side, of scikit-image's sample images
    and matplotlib's two sample pictures (one of them an MR head slice),
    grey level, without the images in :data:`TEST_IMAGES`;
``ellipses``
    random-ellipse phantoms (:func:`~krylearn.problems.phantoms.random_phantom`).

The validation split is the template's val band plus crops of the images in
:data:`VAL_IMAGES`.  Every image is normalised to ``[0, 1]`` (its 99.9th
percentile maps to 1).  MRI priors get a smooth random phase per image
(:func:`~krylearn.problems.phase.smooth_phase`), as
:func:`~krylearn.problems.brain.complex_brain_slices` gives the template.
"""

from __future__ import annotations

import gzip

import numpy as np

from ..utils.checks import check_int
from .brain import BANDS, _resample, brain_slices, mni152_volume
from .phantoms import random_phantom
from .phase import smooth_phase

__all__ = ["BROAD_COUNTS", "NATURAL_IMAGES", "TEST_IMAGES", "VAL_IMAGES", "broad_images", "natural_image"]

#: scikit-image samples the DDS benchmarks test on (``benchmarks/scripts/dds_auto.py``): never trained on.
TEST_IMAGES = ("camera", "moon", "coins", "astronaut")
#: Held out for validation.
VAL_IMAGES = ("coffee", "chelsea")
#: Training images: scikit-image samples (``skimage.data``) and, prefixed ``mpl:``, matplotlib's sample data.
NATURAL_IMAGES = ("brick", "grass", "gravel", "cell", "clock", "hubble_deep_field", "immunohistochemistry",
                  "microaneurysms", "stereo_motorcycle", "page", "retina", "rocket", "text", "horse",
                  "shepp_logan_phantom", "mpl:grace_hopper", "mpl:s1045")
#: Training images per source (the template's axial slices are all used once; ``contrast`` is per slice).
BROAD_COUNTS = {"contrast": 2, "orthogonal": 160, "natural": 16, "ellipses": 60}
_VAL_CROPS = 4


def _grey(im) -> np.ndarray:
    im = np.asarray(im)
    if im.ndim == 3:
        from skimage.color import rgb2gray
        im = rgb2gray(im[..., :3])
    im = im.astype(np.float64)
    im -= im.min()
    return im / max(im.max(), 1e-12)


def natural_image(name: str) -> np.ndarray:
    """A sample image by name, grey level float64 ``(h, w)`` in [0, 1] (see :data:`NATURAL_IMAGES`)."""
    if name == "mpl:s1045":  # 256 x 256 big-endian uint16 MR slice
        import matplotlib.cbook
        with gzip.open(matplotlib.cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as f:
            return _grey(np.frombuffer(f.read(), ">u2").reshape(256, 256))
    if name.startswith("mpl:"):
        import matplotlib.cbook
        import matplotlib.image
        return _grey(matplotlib.image.imread(matplotlib.cbook.get_sample_data(name[4:] + ".jpg", asfileobj=False)))
    from skimage import data
    if not hasattr(data, name):
        raise ValueError(f"no sample image {name!r} in skimage.data")
    im = getattr(data, name)()
    return _grey(im[0] if isinstance(im, tuple) else im)  # stereo pairs: the left image


def _unit(img: np.ndarray) -> np.ndarray:
    """Scale so the 99.9th percentile is 1, clip to [0, 1]."""
    p = np.percentile(img, 99.9, axis=(-2, -1), keepdims=True)
    return np.clip(img / np.maximum(p, 1e-6), 0.0, 1.0).astype(np.float32)


def _crops(im: np.ndarray, count: int, size: int, rng, *, centre: bool = False) -> np.ndarray:
    """``count`` random square crops (side 1/4 to all of the short side) resampled to ``size``."""
    h, w = im.shape
    short = min(h, w)
    out = []
    for k in range(count):
        s = short if centre and k == 0 else int(rng.integers(max(short // 4, 8), short + 1))
        y = (h - s) // 2 if centre and k == 0 else int(rng.integers(0, h - s + 1))
        x = (w - s) // 2 if centre and k == 0 else int(rng.integers(0, w - s + 1))
        out.append(im[y:y + s, x:x + s].astype(np.float32))
    return np.concatenate([_resample(c[None], size) for c in out])


def _contrast(slices: np.ndarray, variants: int, rng) -> np.ndarray:
    """Each slice through ``variants`` random piecewise-linear intensity curves (background stays 0)."""
    knots = np.linspace(0.0, 1.0, 5)
    out = []
    for img in slices:
        for _ in range(variants):
            curve = rng.uniform(0.05, 1.0, size=knots.size)
            y = np.interp(img, knots, curve) * np.clip(img / 0.1, 0.0, 1.0)
            out.append(y / max(y.max(), 1e-6))
    return np.stack(out).astype(np.float32)


def _orthogonal(count: int, size: int, rng, volume=None) -> np.ndarray:
    """Coronal and sagittal squares inside the train bands' z ranges, ``(count, size, size)``."""
    v = mni152_volume() if volume is None else volume
    squares = []
    for z0, z1 in BANDS["train"]:
        side = z1 - z0
        for axis in (1, 2):  # coronal (fixed y), sagittal (fixed x)
            for j in range(0, v.shape[axis], 6):
                sl = (v[z0:z1, j, :] if axis == 1 else v[z0:z1, :, j])[::-1]  # superior up
                for x0 in range(0, sl.shape[1] - side + 1, side // 2):
                    sq = sl[:, x0:x0 + side]
                    if (sq > 0.1).mean() >= 0.3:
                        squares.append(np.ascontiguousarray(sq, dtype=np.float32))
    pick = rng.choice(len(squares), size=min(count, len(squares)), replace=False)
    return np.concatenate([_resample(squares[i][None], size) for i in sorted(pick)])


def _with_phase(kind: str, mag: np.ndarray, seed: int) -> np.ndarray:
    if kind == "ct":
        return mag[:, None]
    mag = np.minimum(mag, np.float32(1 - 2**-20))
    return (mag * np.exp(1j * smooth_phase(len(mag), mag.shape[1:], seed=seed))).astype(np.complex64)


def broad_images(kind: str, split: str = "train", size: int = 64, *, seed: int = 0, counts: dict | None = None):
    """The broad corpus of a split (see the module notes).

    Parameters
    ----------
    kind : {"mri", "ct"}
    split : {"train", "val"}
    size : int
        Image side in pixels.
    seed : int
        Crops, contrast curves, orthogonal picks, ellipses and phases.
    counts : dict, optional
        Overrides :data:`BROAD_COUNTS` entries (``natural`` is crops per image).

    Returns
    -------
    (images, sources)
        ``mri``: complex64 ``(n, size, size)``, ``|x| <= 1``; ``ct``: float32
        ``(n, 1, size, size)`` in [0, 1].  ``sources``: str array ``(n,)``,
        one of ``template``, ``contrast``, ``orthogonal``, ``natural``,
        ``ellipses``.
    """
    if kind not in ("mri", "ct"):
        raise ValueError(f"kind must be 'mri' or 'ct', got {kind!r}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val' (the test band is never in the corpus), got {split!r}")
    size = check_int("size", size, 8)
    n = dict(BROAD_COUNTS, **(counts or {}))
    unknown = set(n) - set(BROAD_COUNTS)
    if unknown:
        raise ValueError(f"counts has unknown sources {sorted(unknown)}; known: {sorted(BROAD_COUNTS)}")
    for k, v in n.items():
        check_int(f"counts[{k!r}]", v, 0)
    rng = np.random.default_rng(seed)
    template = brain_slices(split, size)
    parts = {"template": template}
    if split == "train":
        parts["contrast"] = _contrast(template, n["contrast"], rng)
        parts["orthogonal"] = _orthogonal(n["orthogonal"], size, rng) if n["orthogonal"] else None
        parts["natural"] = np.concatenate([_unit(_crops(natural_image(m), n["natural"], size, rng))
                                           for m in NATURAL_IMAGES]) if n["natural"] else None
        parts["ellipses"] = np.stack([np.clip(np.abs(random_phantom(size, count=10, seed=rng, oversample=2)), 0, 1)
                                      for _ in range(n["ellipses"])]).astype(np.float32) if n["ellipses"] else None
    else:
        parts["natural"] = np.concatenate([_unit(_crops(natural_image(m), _VAL_CROPS, size, rng, centre=True))
                                           for m in VAL_IMAGES])
    parts = {k: v for k, v in parts.items() if v is not None and len(v)}
    mag = np.concatenate(list(parts.values()))
    sources = np.concatenate([np.full(len(v), k) for k, v in parts.items()])
    return _with_phase(kind, mag, seed), sources


def corpus_card(kind: str, split_sources: dict, size: int, aug) -> dict:
    """The card's ``data`` entry for the broad corpus: ``split_sources`` maps split -> sources array."""
    return {
        "source": "broad corpus (krylearn.problems.broad_images): MNI152 T1 template train band (axial, random "
                  "contrast curves, coronal/sagittal squares inside the train bands), scikit-image and matplotlib "
                  "sample images, random ellipses",
        "counts": {s: {k: int((src == k).sum()) for k in dict.fromkeys(src)} for s, src in split_sources.items()},
        "bands": {k: [list(r) for r in v] for k, v in BANDS.items()},
        "natural_train": list(NATURAL_IMAGES),
        "natural_val": list(VAL_IMAGES),
        "never_used": {"images": list(TEST_IMAGES), "template": "val band (validation only) and test band",
                       "nibabel": "example4d.nii.gz (the EPI test set)"},
        "size": [size, size],
        "augmentation": aug.config() if aug is not None else None,
        "normalisation": "per image: 99.9th percentile -> 1, clipped to [0, 1]; template as the default priors",
        "range": ("complex, |x| <= 1, smooth random phase; network channels (real, imaginary)"
                  if kind == "mri" else "real in [0, 1]"),
        "env": {"skimage": _version("skimage"), "matplotlib": _version("matplotlib")},
    }


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:  # noqa: BLE001 -- a card entry, never fatal
        return "unknown"

