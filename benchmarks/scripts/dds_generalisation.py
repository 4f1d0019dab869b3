"""The shipped DDS priors' generalisation gap: denoising loss on their validation band against images from elsewhere.

The loss is the training objective, ``E ||eps_hat(x_t, t) - eps||^2`` with
``t`` uniform and seeded draws (:func:`krylearn.solvers.dds.evaluate_loss`,
4 draws per image, the same seed for every set); an untrained network
scores about 1.  Sets: the template's validation and test bands, the real
EPI slices and the photographs of ``dds_auto.py`` (MRI images get a smooth
random phase as the training images do).

Run: ``OMP_NUM_THREADS=1 python benchmarks/scripts/dds_generalisation.py [PRIOR ...]`` (about a minute
per prior; default the shipped ``dds-mri`` and ``dds-ct``; a prior is a shipped name or a weights path,
its kind read from its card).  The validation crops of the broad corpus
(:mod:`krylearn.problems.broad_images`) are a fifth set.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import dds_auto  # noqa: E402  (the image sets)

from krylearn.problems.phase import smooth_phase  # noqa: E402
from krylearn.solvers.dds import evaluate_loss, load_prior  # noqa: E402
from krylearn.problems.broad_images import broad_images  # noqa: E402
from krylearn.solvers.dds.recipe import VAL_SEED, prior_data  # noqa: E402


def sets(kind, size):
    out = {"template val band": prior_data(kind, "val", size, seed=1)[0],
           "template test band": prior_data(kind, "test", size, seed=2)[0]}
    for name, make in (("real EPI slices", dds_auto.epi_slices), ("photographs", dds_auto.photo_slices)):
        x = np.clip(make(size), 0, 1)
        if kind == "mri":
            out[name] = (x * np.exp(1j * smooth_phase(len(x), x.shape[1:], seed=3))).astype(np.complex64)
        else:
            out[name] = x[:, None].astype(np.float32)
    x, src = broad_images(kind, "val", size, seed=VAL_SEED)
    out["held-out sample-image crops"] = x[src == "natural"]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("priors", nargs="*", default=["dds-mri", "dds-ct"])
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| prior | images | count | denoising loss |\n|---|---|---:|---:|")
    for prior in args.priors:
        model, card = load_prior(prior, return_card=True)
        kind = card["modality"]
        size = card["data"]["size"][0]
        for name, x in sets(kind, size).items():
            print(f"| {card['name']} | {name} | {len(x)} | {evaluate_loss(model, x, seed=0):.4f} |", flush=True)


if __name__ == "__main__":
    main()
