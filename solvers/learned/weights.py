"""Weight files: safetensors tensors with a JSON card beside them, tied together by a hash.

``save_weights(state, card, "w/run")`` writes ``w/run.safetensors`` and
``w/run.json``; the card records how the weights were made (command, data,
seed, wall time, hardware, final metrics), the ``config`` that rebuilds the
network, and ``sha256``, the hash of the weights file.  :func:`load_weights`
checks that hash, so a flipped byte, a truncated file or tensors swapped in
from another model are reported (``FormatError`` naming the file) instead of
loaded.  Weights never load through pickle.

A path's suffix is dropped only when it is literally ``.safetensors`` or
``.json``: ``"w/run.a"`` and ``"w/run.b"`` are two models.

Examples
--------
>>> import torch, tempfile, os
>>> from krylearn.solvers.learned.weights import save_weights, load_weights
>>> d = tempfile.mkdtemp()
>>> _ = save_weights({"w": torch.ones(3)}, {"config": {"width": 3}}, os.path.join(d, "toy.v1"))
>>> state, card = load_weights(os.path.join(d, "toy.v1"))
>>> card["config"]["width"], state["w"].tolist(), sorted(os.listdir(d))
(3, [1.0, 1.0, 1.0], ['toy.v1.json', 'toy.v1.safetensors'])
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from ...utils.atomic import atomic_path, atomic_write_text
from ...utils.errors import FormatError

__all__ = ["save_weights", "load_weights", "read_weights", "check_sha256", "weight_files", "weights_stem",
           "weights_path", "list_weights", "sha256_file"]

SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"


def weights_stem(path) -> Path:
    """``path`` without a literal ``.safetensors`` / ``.json`` suffix (any other dot is part of the name)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"a weights path must be a str or path, got {type(path).__name__}")
    p = Path(path)
    for suffix in (SUFFIX, CARD_SUFFIX):
        if p.name.endswith(suffix) and len(p.name) > len(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def weight_files(path) -> tuple[Path, Path]:
    """``(weights file, card file)`` of a stem or of either file."""
    stem = weights_stem(path)
    return stem.with_name(stem.name + SUFFIX), stem.with_name(stem.name + CARD_SUFFIX)


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_weights(state: dict, card: dict, path, *, half: bool = False) -> tuple[Path, Path]:
    """Write ``state`` to ``path.safetensors`` and ``card`` (its ``sha256`` added) to ``path.json``, atomically.

    Parameters
    ----------
    state : dict[str, torch.Tensor]
        A model's ``state_dict()``; tensors are made contiguous and moved to CPU.
    card : dict
        JSON-serialisable description (command, data, seed, wall time,
        hardware, metrics, ``config``).
    path : str or Path
        Target stem (a literal ``.safetensors`` / ``.json`` suffix is dropped).
    half : bool
        Store floating-point tensors as float16 (halves the file; loaded back
        in float32).

    Returns
    -------
    (Path, Path)
        The weights file and the card file.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError("state must be a dict of torch tensors (a state_dict)")
    if not isinstance(card, dict):
        raise TypeError(f"card must be a dict, got {type(card).__name__}")
    wpath, cpath = weight_files(path)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in state.items():
        v = v.detach().to("cpu").contiguous()
        if half and v.is_floating_point():
            v = v.to(torch.float16)
        tensors[k] = v
    blob = save_safetensors_bytes(tensors, metadata={"card": cpath.name})
    card = dict(card)
    card.setdefault("format", {"weights": "safetensors", "dtype": "float16" if half else "as trained"})
    card["sha256"] = hashlib.sha256(blob).hexdigest()
    with atomic_path(wpath) as tmp:
        Path(tmp).write_bytes(blob)
        os.chmod(tmp, 0o644)
    atomic_write_text(cpath, json.dumps(card, indent=1, sort_keys=False) + "\n")
    return wpath, cpath


def _read_card(cpath: Path) -> dict:
    try:
        card = json.loads(cpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"not a valid JSON card ({e})", path=cpath) from None
    if not isinstance(card, dict):
        raise FormatError("the card must be a JSON object", path=cpath)
    return card


def read_weights(path, *, device="cpu", dtype: torch.dtype | None = None) -> tuple[dict, dict, str]:
    """``(state, card, sha256 of the weights file)``, without checking the hash (see :func:`check_sha256`).

    Raises ``FileNotFoundError`` for a missing file and ``FormatError`` for a
    file that is not valid safetensors or a card that is not a JSON object.
    """
    wpath, cpath = weight_files(path)
    for p in (wpath, cpath):
        if not p.is_file():
            raise FileNotFoundError(f"pretrained weights: {p} does not exist")
    card = _read_card(cpath)
    blob = wpath.read_bytes()
    try:
        state = load_safetensors_bytes(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise FormatError(f"not a valid safetensors file ({e})", path=wpath) from None
    out = {}
    for k, v in state.items():
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.to(device)
    return out, card, hashlib.sha256(blob).hexdigest()


def check_sha256(path, card: dict, sha256: str) -> None:
    """Raise ``FormatError`` naming the weights file when ``sha256`` is not the card's ``sha256``.

    Cards written before the hash was recorded have none and pass.
    """
    expected = card.get("sha256")
    if expected is not None and sha256 != expected:
        wpath, cpath = weight_files(path)
        raise FormatError(f"the file's sha256 differs from the one in its card {cpath.name}: the file is corrupt, "
                          "or these are not the weights the card describes", path=wpath)


def load_weights(path, *, device="cpu", dtype: torch.dtype | None = None) -> tuple[dict, dict]:
    """Read weights and card written by :func:`save_weights`, checking the card's ``sha256``.

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
        The weights file is not valid safetensors, does not match the card's
        ``sha256`` (corrupt, or not the weights this card describes), or the
        card is not a JSON object.
    """
    state, card, sha = read_weights(path, device=device, dtype=dtype)
    check_sha256(path, card, sha)
    return state, card


def weights_path(name_or_path, folder) -> Path:
    """The stem of a weights file: ``name_or_path`` itself when its ``.safetensors`` exists, else a name in ``folder``.

    Raises ``ValueError`` listing the names shipped in ``folder`` when neither exists.
    """
    stem = weights_stem(name_or_path)
    if weight_files(stem)[0].is_file():
        return stem
    if folder is not None and str(name_or_path) == stem.name:
        shipped = Path(folder) / stem.name
        if weight_files(shipped)[0].is_file():
            return shipped
    raise ValueError(
        f"model {str(name_or_path)!r} is neither a shipped model ({', '.join(list_weights(folder)) or 'none'}) "
        "nor an existing weights file")


def list_weights(folder) -> list[str]:
    """Names of the weights (with their cards) in ``folder``."""
    if folder is None or not Path(folder).is_dir():
        return []
    names = (p.name[: -len(SUFFIX)] for p in Path(folder).glob("*" + SUFFIX))
    return sorted(n for n in names if weight_files(Path(folder) / n)[1].is_file())
