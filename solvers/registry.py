"""Where learned methods declare themselves: one :class:`Method` per method folder.

Each learned method lives in its own folder under ``solvers/`` (model,
training, solve/sample, shipped weights, its CLI subcommands and benchmark)
and declares all of it in one place, ``solvers/<name>/method.py``::

    METHOD = Method(
        name="dcdm",
        summary="deep conjugate direction method for SPD Poisson systems",
        solvers={"dcdm": "solve:DCDM", "dcdm-pure": "solve:DCDMPure"},
        network="model:DCDMNet",
        commands="commands:add_commands",
    )

References are ``"module:attribute"`` strings relative to the method's folder,
resolved only when used: the solver core finds ``method="dcdm"`` without
importing any method's training, CLI or benchmark code, and ``import
krylearn`` stays light.  Discovery scans the subpackages of
``krylearn.solvers`` for a ``method`` module (the mechanism of a plugin entry
point, kept inside the method's folder).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

__all__ = ["Method", "methods", "solver_entry", "solver_names", "reconstructor_entry", "reconstructor_names"]


@dataclass(frozen=True)
class Method:
    """A learned method's declaration.

    Attributes
    ----------
    name : str
        The method's name (its folder's name).
    summary : str
        One line for ``krylearn --help`` and the docs.
    solvers : dict[str, str]
        ``krylearn.solve`` method names -> ``"module:Class"`` of an
        :class:`~krylearn.solvers.base.IterativeMethod` subclass (set up once by
        :class:`~krylearn.solvers.Solver`, run by the shared driver), or
        ``"module:function"`` with the signature
        ``fn(A, b, x0=None, *, rtol, atol, maxiter, **options) -> SolveResult``.
    reconstructors : dict[str, str]
        Reconstruction method names (``krylearn reconstruct --method``) ->
        ``"module:Class"`` of a :class:`~krylearn.solvers.reconstructors.Reconstructor`
        subclass (``solvers/dds/reconstruct.py`` is the example).
    network : str, optional
        ``"module:Class"`` of the network its shipped weights load into.
    weights : str, optional
        Folder of its shipped weights and cards, relative to the method folder.
    commands : str, optional
        ``"module:function"``; ``function(verbs)`` adds the method's CLI
        subcommands, where ``verbs`` maps ``"train"``, ``"eval"``, ``"bench"``
        and ``"data"`` to the argparse subparsers of ``krylearn <verb>``.
    package : str
        Dotted package of the method folder (set by discovery).
    """

    name: str
    summary: str
    solvers: Mapping[str, str] = field(default_factory=dict)
    reconstructors: Mapping[str, str] = field(default_factory=dict)
    network: str | None = None
    weights: str | None = "weights"
    commands: str | None = None
    package: str = ""

    def resolve(self, ref: str):
        """The object a ``"module:attribute"`` reference names (imported on first use)."""
        module, _, attr = ref.partition(":")
        if not module or not attr:
            raise ValueError(f"{self.name}: a reference must read 'module:attribute', got {ref!r}")
        return getattr(importlib.import_module(f"{self.package}.{module}"), attr)

    @property
    def weights_dir(self) -> Path | None:
        """Folder of the shipped weights, or None."""
        if self.weights is None:
            return None
        spec = importlib.util.find_spec(self.package)
        return Path(spec.origin).parent / self.weights


@functools.lru_cache(maxsize=1)
def methods() -> dict[str, Method]:
    """Every learned method found under ``krylearn.solvers``, by name."""
    here = Path(__file__).parent
    found = {}
    for info in pkgutil.iter_modules([str(here)]):
        if not info.ispkg or not (here / info.name / "method.py").is_file():
            continue
        package = f"{__package__}.{info.name}"
        decl = importlib.import_module(f"{package}.method").METHOD
        if not isinstance(decl, Method):
            raise TypeError(f"{package}.method.METHOD must be a Method, got {type(decl).__name__}")
        found[decl.name] = Method(**{**decl.__dict__, "package": package})
    return found


def _entries(kind: str) -> dict[str, tuple[Method, str]]:
    return {name: (m, ref) for m in methods().values() for name, ref in getattr(m, kind).items()}


def solver_names() -> list[str]:
    """``krylearn.solve`` method names that learned methods provide."""
    return list(_entries("solvers"))


def solver_entry(name: str) -> Callable | None:
    """The solve function registered as ``name``, or None."""
    hit = _entries("solvers").get(name)
    return None if hit is None else hit[0].resolve(hit[1])


def reconstructor_names() -> list[str]:
    """Reconstruction method names that learned methods provide."""
    return list(_entries("reconstructors"))


def reconstructor_entry(name: str) -> Callable | None:
    """The reconstruction function registered as ``name``, or None."""
    hit = _entries("reconstructors").get(name)
    return None if hit is None else hit[0].resolve(hit[1])
