"""``krylearn solve``: ``A x = b`` from a Matrix Market file or a krylearn HDF5 systems file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.sparse

from ..datasets.matrix_market import read_mtx
from ..datasets.systems import SystemsFile
from ..solvers.api import solve
from ..utils.atomic import atomic_path
from .args import add_stopping, floats, grid_shape, needs_grid, writable_file

__all__ = ["add_solve"]


def add_solve(sub) -> None:
    """``krylearn solve``."""
    s = sub.add_parser("solve", help="solve a system from a Matrix Market or krylearn HDF5 file",
                       description="Solve A x = b. A from a .mtx file or a krylearn HDF5 systems file (--index). "
                                   "mgpcg, DCDM and fcg-lsm need the grid behind the rows of A: HDF5 files store "
                                   "it, a .mtx file needs --grid-shape.")
    s.add_argument("matrix", help="A.mtx or systems.h5")
    s.add_argument("--rhs", default=None,
                   help="b as .npy, .mtx or text (default: the HDF5 file's b, or ones on the nonzero rows of a .mtx)")
    s.add_argument("--index", type=int, default=0,
                   help="system index in an HDF5 file, negative counts from the end (default 0)")
    s.add_argument("--method", default="pcg-amg", help="solver method (default pcg-amg)")
    s.add_argument("--omega", type=floats, default=None,
                   help="relaxation factor for sor/ssor/pcg-ssor/jacobi, smoother weight for mgpcg "
                        "(default: the method's own)")
    s.add_argument("--grid-shape", type=grid_shape, default=None, metavar="SHAPE",
                   help="grid behind the rows of a .mtx matrix for mgpcg/dcdm/fcg-lsm: NY,NX or NZ,NY,NX in C order "
                        "(default: the grid an HDF5 file stores)")
    s.add_argument("--no-check-symmetry", dest="check_symmetry", action="store_false",
                   help="skip the symmetry check of CG and the PCG methods (default: check)")
    add_stopping(s)
    s.add_argument("-o", "--output", default=None, help="write x to this .npy file (default: not written)")
    s.set_defaults(func=cmd_solve)


def cmd_solve(args) -> int:
    path = Path(args.matrix)
    if not path.exists():
        raise FileNotFoundError(f"matrix file not found: {path}")
    if args.output:
        writable_file(args.output, "--output")
    A, b, grid, flags = _load(path, args.index)
    grid = _grid(args.grid_shape, grid, A.shape[0])
    if args.rhs:
        b = _read_vector(args.rhs, A.shape[0])
    elif b is None:
        b = np.ones(A.shape[0]) * (np.diff(A.indptr) > 0)
        print("no --rhs given: using b = 1 on nonzero rows")
    opts = _options(args, grid, flags)
    res = solve(A, b, method=args.method, rtol=args.rtol, atol=args.atol, maxiter=args.maxiter, **opts)
    if res.reason == "indefinite":
        raise ValueError(f"{path.name}: A is not symmetric positive definite ({args.method} found p.Ap <= 0 "
                         f"at iteration {res.iterations + 1}); CG-type methods need an SPD matrix")
    print(res)
    if args.output:
        with atomic_path(Path(args.output)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(res.x))
        print(f"wrote {args.output}")
    return 0 if res.converged else 1


def _load(path: Path, index: int):
    """``(A, b or None, grid_shape or None, flags or None)`` of a .mtx file or of system ``index`` of an HDF5 file."""
    if path.suffix == ".mtx":
        return scipy.sparse.csr_matrix(read_mtx(path)), None, None, None
    with SystemsFile(path) as f:
        s = f.system(index, allow_negative=True)  # out of range: IndexError naming the valid indices
    return s.A, np.asarray(s.b)[0], s.grid_shape, s.flags


def _grid(given, stored, n: int):
    """The grid behind the rows of A: ``--grid-shape`` (checked against the file's and A's size) or the stored one."""
    if given is None:
        return stored
    if stored is not None and tuple(stored) != tuple(given):
        raise ValueError(f"--grid-shape {','.join(map(str, given))} differs from the grid the file stores "
                         f"{tuple(stored)}")
    if math.prod(given) != n:
        raise ValueError(f"--grid-shape {','.join(map(str, given))} has {math.prod(given)} cells but A has {n} rows")
    return tuple(given)


def _options(args, grid, flags) -> dict:
    opts = {}
    if args.omega is not None:
        opts["omega"] = args.omega
    if not args.check_symmetry:
        opts["check_symmetry"] = False
    if needs_grid(args.method):
        if grid is None:
            raise ValueError(f"--method {args.method} needs the grid behind the rows of A, which "
                             f"{Path(args.matrix).name} does not store: give --grid-shape NY,NX or NZ,NY,NX")
        opts["grid_shape"] = tuple(grid)
        if flags is not None:
            opts["flags"] = flags
    return opts


def _read_vector(path, n: int) -> np.ndarray:
    """The right-hand side in ``path`` (.npy, .mtx or text) as a flat float64 (or complex128) vector of ``n``."""
    p = Path(path)
    if p.suffix == ".npy":
        v = np.load(p, allow_pickle=False)
    elif p.suffix == ".mtx":
        v = read_mtx(p)
        v = v.toarray() if hasattr(v, "toarray") else np.asarray(v)
    else:
        try:
            v = np.loadtxt(p)
        except ValueError:
            v = np.loadtxt(p, dtype=np.complex128)
    v = np.asarray(v).reshape(-1)
    if np.iscomplexobj(v) and np.any(v.imag != 0):
        v = v.astype(np.complex128)  # kept whole: x comes back complex (a real matrix acts on both parts)
    else:
        v = np.real(v).astype(np.float64)
    if v.shape[0] != n:
        raise ValueError(f"--rhs has {v.shape[0]} entries, the matrix has {n} rows")
    return v
