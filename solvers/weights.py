"""Pretrained weights: safetensors files with a JSON card beside them.

Each learned method keeps its shipped weights in its own folder as package
data, e.g. ``solvers/dcdm/weights/dcdm-2d.safetensors`` with
``dcdm-2d.json``.  The card records how the weights were made (command,
data, seed, wall time, hardware, final metrics) and the ``config`` needed to
rebuild the network.  Weights never load through pickle.

Examples
--------
>>> import torch, tempfile, os
>>> from krylearn.solvers.weights import save_weights, load_weights
>>> d = tempfile.mkdtemp()
>>> _ = save_weights({"w": torch.ones(3)}, {"config": {"width": 3}}, os.path.join(d, "toy"))
>>> state, card = load_weights(os.path.join(d, "toy"))
>>> card["config"]["width"], state["w"].tolist()
(3, [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import torch

from ..utils.atomic import atomic_path, atomic_write_text
from ..utils.errors import FormatError

__all__ = ["save_weights", "load_weights", "load_network", "weights_path", "list_weights"]

_SUFFIX = ".safetensors"


def _stem(path) -> Path:
    p = Path(path)
    if p.suffix in (_SUFFIX, ".json"):
        p = p.with_suffix("")
    return p


def save_weights(state: dict, card: dict, path, *, half: bool = False) -> tuple[Path, Path]:
    """Write ``state`` to ``path.safetensors`` and ``card`` to ``path.json``, atomically.

    Parameters
    ----------
    state : dict[str, torch.Tensor]
        A model's ``state_dict()``; tensors are made contiguous and moved to CPU.
    card : dict
        JSON-serialisable description (command, data, seed, wall time,
        hardware, metrics, ``config``).
    path : str or Path
        Target without suffix (a ``.safetensors``/``.json`` suffix is dropped).
    half : bool
        Store floating-point tensors as float16 (halves the file; loaded back
        in the dtype the model asks for).

    Returns
    -------
    (Path, Path)
        The weights file and the card file.
    """
    from safetensors.torch import save_file

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError("state must be a dict of torch tensors (a state_dict)")
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in state.items():
        v = v.detach().to("cpu").contiguous()
        if half and v.is_floating_point():
            v = v.to(torch.float16)
        tensors[k] = v
    card = dict(card)
    card.setdefault("format", {"weights": "safetensors", "dtype": "float16" if half else "as trained"})
    wpath, cpath = stem.with_suffix(_SUFFIX), stem.with_suffix(".json")
    with atomic_path(wpath) as tmp:
        save_file(tensors, tmp, metadata={"card": cpath.name})
        os.chmod(tmp, 0o644)
    atomic_write_text(cpath, json.dumps(card, indent=1, sort_keys=False) + "\n")
    return wpath, cpath


def load_weights(path, *, device="cpu", dtype: torch.dtype | None = None) -> tuple[dict, dict]:
    """Read weights and card written by :func:`save_weights`.

    Parameters
    ----------
    path : str or Path
        File stem, or the ``.safetensors`` / ``.json`` file.
    device : str or torch.device
    dtype : torch.dtype, optional
        Cast floating-point tensors to this dtype (e.g. float32 for weights
        stored in float16).

    Raises
    ------
    FileNotFoundError
        When either file is missing.
    FormatError
        When the weights file is not valid safetensors or the card is not JSON.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    stem = _stem(path)
    wpath, cpath = stem.with_suffix(_SUFFIX), stem.with_suffix(".json")
    for p in (wpath, cpath):
        if not p.is_file():
            raise FileNotFoundError(f"pretrained weights: {p} does not exist")
    try:
        state = load_file(str(wpath), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise FormatError(f"{wpath}: not a valid safetensors file ({e})") from None
    try:
        card = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{cpath}: not a valid JSON card ({e})") from None
    if not isinstance(card, dict):
        raise FormatError(f"{cpath}: the card must be a JSON object")
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    return state, card


def weights_path(name_or_path, folder) -> Path:
    """Resolve a shipped weights name (``"dcdm-2d"``) in ``folder``, or pass a path through.

    Raises ``ValueError`` listing the shipped names when neither exists.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model must be a name or a path, got {type(name_or_path).__name__}")
    p = _stem(name_or_path)
    if p.with_suffix(_SUFFIX).is_file():
        return p
    shipped = Path(folder) / p.name
    if str(name_or_path) == p.name and shipped.with_suffix(_SUFFIX).is_file():
        return shipped
    raise ValueError(
        f"model {str(name_or_path)!r} is neither a shipped model ({', '.join(list_weights(folder)) or 'none'}) "
        "nor an existing weights file"
    )


def list_weights(folder) -> list[str]:
    """Names of the weights shipped in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*" + _SUFFIX) if p.with_suffix(".json").is_file())


@functools.lru_cache(maxsize=8)
def _load_network(path: str, cls, device: str):
    state, card = load_weights(path, device=device, dtype=torch.float32)
    config = card.get("config")
    if not isinstance(config, dict):
        raise FormatError(f"{path}.json: the card has no 'config' to rebuild the {cls.__name__}")
    net = cls(**config)
    net.load_state_dict(state)
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, card


def load_network(path, cls, device="cpu"):
    """Rebuild ``cls(**card["config"])`` from weights written by :func:`save_weights`, in eval mode.

    The result is cached per (path, class, device) and shared between calls:
    do not train it.  Returns ``(network, card)``.
    """
    return _load_network(str(_stem(path)), cls, str(torch.device(device)))
