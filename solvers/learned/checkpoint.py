"""Resumable training checkpoints, the fingerprint that ties one to its run, and content digests.

A checkpoint is written atomically with ``torch.save`` and read back with
``torch.load(weights_only=True)``: tensors, numbers, strings and plain
containers only, never a pickle that executes code.  It stores the run's
*fingerprint* (network, hyper-parameters, seed, and a content digest of the
training data); resuming with any of those changed is refused with an error
naming what differs, so a checkpoint never silently continues another run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from ...utils.atomic import atomic_path
from ...utils.errors import FormatError

__all__ = ["save_checkpoint", "load_checkpoint", "digest", "check_writable", "json_clean"]


def json_clean(value):
    """``value`` after a JSON round trip (tuples become lists): how a fingerprint is compared."""
    return json.loads(json.dumps(value, default=str))


def _update(h, item) -> None:
    if isinstance(item, torch.Tensor):
        t = item.detach().to("cpu").contiguous()
        h.update(f"tensor{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(item, np.ndarray):
        if item.dtype == object:
            raise TypeError("digest: object arrays cannot be digested")
        a = np.ascontiguousarray(item)
        h.update(f"array{a.dtype.str}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8))
    elif scipy.sparse.issparse(item):
        m = scipy.sparse.csr_matrix(item)
        h.update(f"csr{m.shape}".encode())
        for part in (m.indptr, m.indices, m.data):
            _update(h, part)
    elif isinstance(item, (list, tuple)):
        h.update(f"seq{len(item)}".encode())
        for x in item:
            _update(h, x)
    else:
        h.update(json.dumps(item, sort_keys=True, default=str).encode())


def digest(*items) -> str:
    """SHA-256 (hex) of the contents of arrays, tensors, sparse matrices and JSON-able values.

    Dtypes and shapes are part of the digest; nested lists/tuples are walked.
    Used to fingerprint the training data of a run (a resumed run on other
    data is refused) -- the bytes the run trains on, whatever file they came from.
    """
    h = hashlib.sha256()
    for item in items:
        _update(h, item)
    return h.hexdigest()


def check_writable(folder, what: str) -> Path:
    """Create ``folder`` if needed and check that a file can be written there; return it.

    Called before training starts, so that an unwritable output fails at
    once instead of at the first checkpoint.  Raises the ``OSError`` subclass
    of the failure with a message naming ``what`` and the folder.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".krylearn-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise type(e)(f"{what}: cannot write to the folder {folder} ({e.strerror or e})") from None
    return folder


def save_checkpoint(path, *, model: torch.nn.Module, optimizer=None, scheduler=None, **extra) -> Path:
    """Atomically write model/optimizer/scheduler state, the torch RNG state and ``extra`` to ``path``.

    ``extra`` may hold tensors, numbers, strings, ``None`` and dicts/lists of
    those (what ``torch.load(weights_only=True)`` reads back).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    payload = {"model": module.state_dict(), **extra}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    payload["torch_rng"] = torch.get_rng_state()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _read(path: Path, map_location) -> dict:
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise FormatError("not a krylearn checkpoint: it holds objects other than tensors and plain containers "
                          "(refused: loading them could run code)", path=path) from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, zipfile.BadZipFile, OSError) as e:
        raise FormatError(f"corrupt or truncated checkpoint ({type(e).__name__})", path=path) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise FormatError("not a krylearn checkpoint (no 'model' state)", path=path)
    return payload


def _check_fingerprint(path: Path, old: dict, new: dict) -> None:
    if old == new:
        return
    diff = sorted(k for k in set(new) | set(old) if old.get(k) != new.get(k))
    raise ValueError(f"checkpoint {path} was written by a different run (differs in {', '.join(diff)}); "
                     "give another checkpoint path, or start over without resuming")


def load_checkpoint(path, *, model: torch.nn.Module, optimizer=None, scheduler=None,
                    map_location="cpu", fingerprint: dict | None = None) -> dict:
    """Restore a checkpoint written by :func:`save_checkpoint`; return its ``extra`` entries.

    Parameters
    ----------
    path : str or Path
    model, optimizer, scheduler
        Restored in place (the optimizer and scheduler when given and stored).
    map_location : str or torch.device
    fingerprint : dict, optional
        The current run's fingerprint: a checkpoint whose stored
        ``fingerprint`` differs raises ``ValueError`` naming the entries
        that differ, before anything is restored.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    FormatError
        A corrupt or truncated file, one holding objects other than tensors
        and plain containers, or a model state that does not fit ``model``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = _read(path, map_location)
    if fingerprint is not None:
        _check_fingerprint(path, payload.get("fingerprint") or {}, fingerprint)
    module = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    try:
        module.load_state_dict(payload.pop("model"))
        if optimizer is not None and "optimizer" in payload:
            optimizer.load_state_dict(payload.pop("optimizer"))
        if scheduler is not None and "scheduler" in payload:
            scheduler.load_state_dict(payload.pop("scheduler"))
    except (RuntimeError, ValueError, KeyError) as e:
        raise FormatError(f"the checkpoint does not fit this model ({str(e).splitlines()[0]})", path=path) from None
    rng = payload.pop("torch_rng", None)
    if rng is not None:
        torch.set_rng_state(rng.cpu() if isinstance(rng, torch.Tensor) else rng)
    return payload
