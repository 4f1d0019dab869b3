"""The pretrained-weights convention shared by every learned method: save, load, list, card.

A method declares its network class and its weights folder once, in its
:class:`~krylearn.solvers.registry.Method` (``solvers/<name>/method.py``);
everything here reads them from there.

* :func:`save_pretrained` ``(net, card, path)`` writes ``path.safetensors``
  and the card ``path.json``, filling in ``method``, ``config`` (and
  ``kind``, plus the network's ``card_fields()`` when it has them) and the
  file's ``sha256``.
* :func:`load_pretrained` ``(name_or_path)`` returns one shape for every
  method, :class:`Pretrained` ``(net, card)``: a shipped name (``"dcdm-2d"``,
  ``"lsm-darcy"``, ``"dds-mri"``) or a weights path.
* :func:`available` ``(method)`` lists the shipped names.

The network class rebuilds itself as ``cls(**card["config"])``, or through
a classmethod ``cls.from_card(card, state)`` when it has one (a network
with more than constructor arguments, e.g. LSM's normalisers).  Loading
checks, before anything is used, that the card names the expected method,
that the tensors fit the network the card describes (the error names the
missing and unexpected keys and the shapes that differ), and that the file
matches the card's ``sha256``; each failure is a ``FormatError`` naming the file.

Examples
--------
>>> from krylearn.solvers.learned import available, load_pretrained
>>> "dcdm-2d" in available("dcdm")
True
>>> net, card = load_pretrained("dcdm-2d")
>>> card["method"], type(net).__name__
('dcdm', 'DCDMNet')
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ...utils.errors import FormatError
from ..registry import Method, methods
from .weights import check_sha256, list_weights, read_weights, save_weights, weight_files, weights_stem

__all__ = ["Pretrained", "available", "find_weights", "load_pretrained", "save_pretrained", "method_named"]

_CACHE: "OrderedDict[tuple, tuple[nn.Module, dict]]" = OrderedDict()
_CACHE_SIZE = 8


class Pretrained(NamedTuple):
    """A loaded network and its card; unpacks as ``net, card = load_pretrained(...)``.

    Attributes
    ----------
    net : nn.Module
        In eval mode, float32, gradients off.  It also carries its card as
        ``net.card`` and its weights stem as ``net.source`` (for code that
        receives only the network).
    card : dict
        The JSON card (a copy: changing it changes nothing else).
    """

    net: nn.Module
    card: dict


def method_named(name: str) -> Method:
    """The :class:`Method` declared as ``name``; ``ValueError`` lists the declared ones."""
    found = methods()
    if name not in found:
        raise ValueError(f"method must be one of {sorted(found)}, got {name!r}")
    return found[name]


def _with_weights(method: str | None) -> list[Method]:
    found = [m for m in methods().values() if m.weights is not None and m.network is not None]
    if method is not None and method not in {m.name for m in found}:
        method_named(method)  # an undeclared name: the error lists every declared method
        raise ValueError(f"method must be one of {sorted(m.name for m in found)} (those with weights), "
                         f"got {method!r}")
    return found if method is None else [m for m in found if m.name == method]


def available(method: str | None = None) -> list[str]:
    """Names of the shipped weights of ``method`` (of every learned method when ``None``)."""
    return sorted(n for m in _with_weights(method) for n in list_weights(m.weights_dir))


def _locate(name_or_path, method: str | None) -> tuple[Path, str | None]:
    """``(weights stem, the method whose shipped folder holds it, or None for a path)``."""
    stem = weights_stem(name_or_path)
    if weight_files(stem)[0].is_file():
        return stem, None
    if str(name_or_path) == stem.name:
        for m in _with_weights(method):
            shipped = m.weights_dir / stem.name
            if weight_files(shipped)[0].is_file():
                return shipped, m.name
    raise ValueError(f"model {str(name_or_path)!r} is neither a shipped model ({', '.join(available(method)) or 'none'}) "
                     "nor an existing weights file")


def find_weights(name_or_path, method: str | None = None) -> Path:
    """The weights stem for a shipped name (of ``method``, or of any method) or a path to weights.

    Raises ``ValueError`` listing the shipped names when it is neither.
    """
    return _locate(name_or_path, method)[0]


def _card_method(card: dict, method: str | None, cpath: Path) -> Method:
    named = card.get("method")
    if named is None and method is None:
        raise FormatError("the card names no 'method'; load it through its method (method=...)", path=cpath,
                          key="method")
    if named is not None and method is not None and named != method:
        raise FormatError(f"the card describes {named!r} weights, not {method!r} ones", path=cpath, key="method")
    try:
        return method_named(named or method)
    except ValueError as e:
        raise FormatError(str(e), path=cpath, key="method") from None


def _build(cls, card: dict, state: dict, cpath: Path) -> nn.Module:
    if not isinstance(card.get("config"), dict):
        raise FormatError("missing or not an object", path=cpath, key="config")
    try:
        return cls.from_card(card, state) if hasattr(cls, "from_card") else cls(**card["config"])
    except FormatError:
        raise
    except (TypeError, ValueError) as e:
        raise FormatError(f"cannot rebuild the {cls.__name__} from the card ({e})", path=cpath, key="config") from None


def _names(keys, limit=4) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _check_fit(net: nn.Module, state: dict, wpath: Path) -> None:
    """``FormatError`` naming what differs between ``state`` and ``net``'s own state."""
    want = net.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shapes = [f"{k} is {tuple(state[k].shape)} in the file, {tuple(want[k].shape)} in the network"
              for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    problems = ([f"missing keys {_names(missing)}"] if missing else []) + (
        [f"unexpected keys {_names(unexpected)}"] if unexpected else []) + shapes[:3]
    if problems:
        raise FormatError(f"the tensors do not fit the {type(net).__name__} built from the card's config: "
                          + "; ".join(problems), path=wpath)


def _stat(path: Path) -> tuple:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _load(stem: Path, method: str | None, device: torch.device) -> tuple[nn.Module, dict]:
    wpath, cpath = weight_files(stem)
    state, card, sha = read_weights(stem, dtype=torch.float32)
    m = _card_method(card, method, cpath)
    net = _build(m.resolve(m.network), card, state, cpath)
    _check_fit(net, state, wpath)
    check_sha256(stem, card, sha)
    net.load_state_dict(state)
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    net.card, net.source = card, str(stem)
    return net, card


def load_pretrained(name_or_path, *, method: str | None = None, device="cpu", cache: bool = True) -> Pretrained:
    """Load a learned method's network and card: :class:`Pretrained` ``(net, card)``.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped name (see :func:`available`) or the stem / ``.safetensors``
        / ``.json`` path of weights written by :func:`save_pretrained`.
    method : str, optional
        Expect weights of this method (``"dcdm"``, ``"lsm"``, ``"dds"``): its
        folder is searched for names, and a card of another method is
        refused.  Needed only for cards written before cards named their method.
    device : str or torch.device
    cache : bool
        Share one network per (file version, device) between calls -- do not
        train or modify it; ``False`` returns a private copy.  A file
        replaced on disk is read again.

    Raises
    ------
    ValueError
        Neither a shipped name nor an existing weights file.
    FormatError
        A corrupt or mismatched file: not safetensors, a card that is not
        JSON or lacks ``config``, a card of another method, tensors that do
        not fit the card's network (missing/unexpected keys, shapes), or a
        file whose sha256 differs from the card's.
    """
    stem, shipped_by = _locate(name_or_path, method)
    method = method or shipped_by
    dev = torch.device(device)
    wpath, cpath = weight_files(stem)
    key = (str(wpath.resolve()), _stat(wpath), _stat(cpath), method, str(dev))
    if not cache:
        net, card = _load(stem, method, dev)
        return Pretrained(net, card)
    if key not in _CACHE:
        _CACHE[key] = _load(stem, method, dev)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    net, card = _CACHE[key]
    return Pretrained(net, copy.deepcopy(card))


def _method_of(net: nn.Module) -> Method:
    known = []
    for m in methods().values():
        if m.network is None:
            continue
        cls = m.resolve(m.network)
        if isinstance(net, cls):
            return m
        known.append(f"{m.name}: {cls.__name__}")
    raise TypeError(f"{type(net).__name__} is not the network of a learned method ({'; '.join(known)})")


def save_pretrained(net: nn.Module, card: dict, path, *, half: bool = False) -> tuple[Path, Path]:
    """Write ``net``'s weights to ``path.safetensors`` and ``card`` to ``path.json``.

    The card gets ``method`` (found from ``net``'s class), ``config``,
    ``kind`` (when the network has one), the network's ``card_fields()``
    (when it has them) and ``sha256``.

    Parameters
    ----------
    net : nn.Module
        The network class a :class:`Method` declares (DDP wrappers are unwrapped).
    card : dict
        Provenance: command, data, seed, wall time, hardware, metrics, ...
    path : str or Path
        Target stem.
    half : bool
        Store floating-point tensors in float16.

    Returns
    -------
    (Path, Path)
        The weights file and the card file.
    """
    if isinstance(net, nn.parallel.DistributedDataParallel):
        net = net.module
    m = _method_of(net)
    card = {**card, "method": m.name, "config": dict(net.config)}
    if getattr(net, "kind", None) is not None:
        card["kind"] = net.kind
    if hasattr(net, "card_fields"):
        card.update(net.card_fields())
    return save_weights(net.state_dict(), card, path, half=half)
