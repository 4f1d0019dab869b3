"""Matrix-free MAC-grid pressure Laplacians on 2D and 3D cell grids.

:class:`PoissonGrid` (alias :data:`Laplacian`) is the 5-point (2D) or
7-point (3D) pressure-projection operator of a fluid solver on a staggered
(MAC) grid with cell flags:

* ``FLUID`` (0): an unknown pressure;
* ``SOLID`` (1): a wall, no flux through its faces (Neumann);
* ``EMPTY`` (2): air, pressure 0 (Dirichlet).

It uses the *full-grid* convention of the DCDM paper (Kaneda et al., ICML
2023): vectors have one entry per grid cell (``n = prod(grid_shape)``, C
order) and the rows *and* columns of non-fluid cells are identically zero.

On CPU the product is one fused, row-parallel numba pass over precomputed
per-cell diagonals and per-axis face weights; on other devices, or when
autograd is needed, the same arithmetic runs as torch slicing ops.
:meth:`PoissonGrid.to_sparse` builds the CSR matrix from the very same
diagonal and weight arrays, so it is exactly the matrix that ``apply``
applies.
"""

from __future__ import annotations

import math
import numbers

import numba
import numpy as np
import scipy.sparse
import torch

from .base import Operator, _numpy_dtype

FLUID, SOLID, EMPTY = 0, 1, 2

_BOUNDARY_FLAG = {"solid": SOLID, "empty": EMPTY}


# ------------------------------------------------------------ numba kernels
# Weights are stored *padded*: ``w[a]`` has the grid's shape with axis ``a``
# extended by one, entry ``k`` along ``a`` being the face between cells
# ``k-1`` and ``k``.  Faces on the domain boundary, and faces with a
# non-fluid cell on either side, hold 0, so the kernels need no flag tests:
# the outer-axis neighbours are clamped to the row itself (times a zero
# weight) and only the first and last cell of the innermost axis are peeled.


@numba.njit(cache=True, inline="always")
def _row(d, wx, wlo, whi, xc, xlo, xhi, y, nx):
    """One innermost row: ``y = d*xc - (x-neighbours) - wlo*xlo - whi*xhi``."""
    if nx == 1:
        y[0] = d[0] * xc[0] - wlo[0] * xlo[0] - whi[0] * xhi[0]
        return
    y[0] = d[0] * xc[0] - wx[1] * xc[1] - wlo[0] * xlo[0] - whi[0] * xhi[0]
    for i in range(1, nx - 1):
        y[i] = (
            d[i] * xc[i]
            - wx[i] * xc[i - 1]
            - wx[i + 1] * xc[i + 1]
            - wlo[i] * xlo[i]
            - whi[i] * xhi[i]
        )
    m = nx - 1
    y[m] = d[m] * xc[m] - wx[m] * xc[m - 1] - wlo[m] * xlo[m] - whi[m] * xhi[m]


@numba.njit(cache=True, inline="always")
def _row3(d, wx, wylo, wyhi, wzlo, wzhi, xc, xylo, xyhi, xzlo, xzhi, y, nx):
    """One innermost row of the 7-point stencil."""
    if nx == 1:
        y[0] = (
            d[0] * xc[0]
            - wylo[0] * xylo[0]
            - wyhi[0] * xyhi[0]
            - wzlo[0] * xzlo[0]
            - wzhi[0] * xzhi[0]
        )
        return
    y[0] = (
        d[0] * xc[0]
        - wx[1] * xc[1]
        - wylo[0] * xylo[0]
        - wyhi[0] * xyhi[0]
        - wzlo[0] * xzlo[0]
        - wzhi[0] * xzhi[0]
    )
    for i in range(1, nx - 1):
        y[i] = (
            d[i] * xc[i]
            - wx[i] * xc[i - 1]
            - wx[i + 1] * xc[i + 1]
            - wylo[i] * xylo[i]
            - wyhi[i] * xyhi[i]
            - wzlo[i] * xzlo[i]
            - wzhi[i] * xzhi[i]
        )
    m = nx - 1
    y[m] = (
        d[m] * xc[m]
        - wx[m] * xc[m - 1]
        - wylo[m] * xylo[m]
        - wyhi[m] * xyhi[m]
        - wzlo[m] * xzlo[m]
        - wzhi[m] * xzhi[m]
    )


@numba.njit(cache=True, inline="always")
def _row2_at(d, wy, wx, x, b, j, y):
    """Row ``j`` of ``A x[b]`` into ``y``; neighbours across the domain side are clamped (zero weight)."""
    ny, nx = d.shape
    jm = j - 1 if j > 0 else 0
    jp = j + 1 if j < ny - 1 else ny - 1
    _row(d[j], wx[j], wy[j], wy[j + 1], x[b, j], x[b, jm], x[b, jp], y, nx)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _apply2d(d, wy, wx, x, y):
    """``y[b] = A x[b]`` on an ``(ny, nx)`` grid; ``x``, ``y``: ``(B, ny, nx)``."""
    nb = x.shape[0]
    for j in numba.prange(d.shape[0]):
        for b in range(nb):
            _row2_at(d, wy, wx, x, b, j, y[b, j])


@numba.njit(cache=True, inline="always")
def _row3_at(d, wz, wy, wx, x, b, k, j, y):
    """Row ``(k, j)`` of ``A x[b]`` into ``y``; neighbours across the domain side are clamped (zero weight)."""
    nz, ny, nx = d.shape
    km = k - 1 if k > 0 else 0
    kp = k + 1 if k < nz - 1 else nz - 1
    jm = j - 1 if j > 0 else 0
    jp = j + 1 if j < ny - 1 else ny - 1
    _row3(d[k, j], wx[k, j], wy[k, j], wy[k, j + 1], wz[k, j], wz[k + 1, j],
          x[b, k, j], x[b, k, jm], x[b, k, jp], x[b, km, j], x[b, kp, j], y, nx)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _apply3d(d, wz, wy, wx, x, y):
    """``y[b] = A x[b]`` on an ``(nz, ny, nx)`` grid; ``x``, ``y``: ``(B, nz, ny, nx)``."""
    nb = x.shape[0]
    nz, ny = d.shape[:2]
    for k in numba.prange(nz):
        for b in range(nb):
            for j in range(ny):
                _row3_at(d, wz, wy, wx, x, b, k, j, y[b, k, j])


# ------------------------------------------------------------- torch path
def _apply_torch(x: torch.Tensor, d: torch.Tensor, w) -> torch.Tensor:
    """The stencil product with torch slicing ops (any device, autograd-safe).

    Parameters
    ----------
    x : tensor, shape ``(B, *grid_shape)``
    d : tensor, shape ``grid_shape``
        Per-cell diagonal.
    w : sequence of tensors
        Padded face weights; ``w[a]`` has ``grid_shape`` with axis ``a``
        extended by one.

    Returns
    -------
    tensor, shape ``(B, *grid_shape)``
    """
    y = d * x
    for a, wa in enumerate(w):
        n = d.shape[a]
        if n < 2:
            continue
        ax = a + 1  # batch axis first
        wi = wa.narrow(a, 1, n - 1)  # interior faces: between cell k and k+1
        y.narrow(ax, 0, n - 1).sub_(wi * x.narrow(ax, 1, n - 1))
        y.narrow(ax, 1, n - 1).sub_(wi * x.narrow(ax, 0, n - 1))
    return y


# --------------------------------------------------------------- operator
class PoissonGrid(Operator):
    """Matrix-free MAC-grid pressure Laplacian with cell flags.

    Row ``i`` of a FLUID cell: ``A[i, i]`` is the sum of the coefficients of
    its faces whose neighbour is FLUID or EMPTY (or an ``"empty"`` domain
    side), and ``A[i, j] = -c`` for each FLUID neighbour ``j`` across a face
    of coefficient ``c``; every coefficient is divided by ``spacing**2``.
    Rows **and** columns of SOLID and EMPTY cells are identically zero (the
    DCDM paper's full-grid convention). A FLUID cell whose faces all lead to
    SOLID cells (or all have zero coefficients) also gets a zero row and
    column. The matrix is symmetric positive semi-definite; it is definite on
    the fluid cells iff every connected fluid region touches an EMPTY cell or
    an ``"empty"`` side through a face of positive coefficient.

    Parameters
    ----------
    shape : tuple of int
        Grid shape ``(ny, nx)`` or ``(nz, ny, nx)``, all sizes positive.
    flags : array-like of int, shape ``shape``, optional
        Cell flags with values in ``{FLUID, SOLID, EMPTY} = {0, 1, 2}``
        (default: all FLUID).
    coeffs : tuple of ``dim`` array-likes, optional
        Face coefficients (e.g. ``1/density`` times the face's fluid
        fraction); ``coeffs[a]`` has ``shape`` with axis ``a`` extended by one,
        entry ``k`` along ``a`` being the face between cells ``k-1`` and ``k``
        (entries 0 and ``shape[a]`` are the domain-boundary faces). Finite and
        ``>= 0``. Default: all faces 1. Treated as constants (no gradients).
    boundary : str or sequence of str
        ``"solid"`` or ``"empty"`` for every domain side, or ``2*dim`` entries
        ``(axis0-low, axis0-high, axis1-low, axis1-high, ...)``. An
        ``"empty"`` side acts like an EMPTY neighbour cell (Dirichlet 0), a
        ``"solid"`` side like a SOLID one (no flux).
    spacing : float
        Grid spacing ``h > 0``; every coefficient is divided by ``h**2``.
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32``.
    device : torch.device or str

    Attributes
    ----------
    grid_shape : tuple of int
    flags : torch.Tensor, uint8, shape ``grid_shape``
    fluid_mask : torch.Tensor, bool, shape ``grid_shape``
    boundary : tuple of str, length ``2*dim``
    spacing : float

    Notes
    -----
    ``ishape == oshape == (prod(grid_shape),)``. On CPU (inputs without
    ``requires_grad``) the product is a fused numba kernel, parallel over the
    outermost grid axis; otherwise torch slicing ops. Entries of ``x`` at
    non-fluid cells are multiplied by zero weights, so they must be finite
    (an Inf there gives NaN, where the CSR product would ignore it).

    Examples
    --------
    >>> import numpy as np
    >>> from krylearn.operators.stencil import PoissonGrid
    >>> A = PoissonGrid((3, 4), boundary="empty")
    >>> A.to_sparse().diagonal()[:4]
    array([4., 4., 4., 4.])
    >>> float(abs(PoissonGrid((3, 4)) @ np.ones(12)).max())  # Neumann: constant null space
    0.0
    """

    def __init__(
        self,
        shape,
        flags=None,
        coeffs=None,
        boundary="solid",
        spacing=1.0,
        dtype=torch.float64,
        device="cpu",
    ):
        grid_shape = _check_shape(shape)
        dim = len(grid_shape)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        flags_np = _check_flags(flags, grid_shape)
        coeffs_np = _check_coeffs(coeffs, grid_shape)
        bnd = _check_boundary(boundary, dim)
        h = _check_spacing(spacing)

        d, w = _assemble(grid_shape, flags_np, coeffs_np, bnd, h)

        n = math.prod(grid_shape)
        super().__init__((n,), (n,), dtype, device)
        self.grid_shape = grid_shape
        self.boundary = bnd
        self.spacing = h
        self.flags = torch.from_numpy(flags_np).to(self.device)
        self.fluid_mask = self.flags == FLUID
        self._diag = torch.from_numpy(d).to(device=self.device, dtype=dtype)
        self._w = tuple(torch.from_numpy(wa).to(device=self.device, dtype=dtype) for wa in w)
        self._cast_cache = {}
        self._use_numba = True  # tests switch this off to exercise the torch path

    # ---------------------------------------------------------------- apply
    def _weights(self, dtype):
        """``(d, w)`` in ``dtype`` (cached; the stored ones if it matches)."""
        if dtype == self.dtype:
            return self._diag, self._w
        if dtype not in self._cast_cache:
            self._cast_cache[dtype] = (self._diag.to(dtype), tuple(wa.to(dtype) for wa in self._w))
        return self._cast_cache[dtype]

    def _apply(self, x):
        B = x.shape[0]
        xg = x.reshape((B,) + self.grid_shape)
        d, w = self._weights(x.dtype)
        use_numba = (
            self._use_numba
            and x.device.type == "cpu"
            and not x.requires_grad
            and x.dtype in (torch.float32, torch.float64)
        )
        if not use_numba:
            return _apply_torch(xg, d, w).reshape(B, -1)
        xn = xg.detach().contiguous().numpy()
        yn = np.empty_like(xn)
        if len(self.grid_shape) == 2:
            _apply2d(d.numpy(), w[0].numpy(), w[1].numpy(), xn, yn)
        else:
            _apply3d(d.numpy(), w[0].numpy(), w[1].numpy(), w[2].numpy(), xn, yn)
        return torch.from_numpy(yn).reshape(B, -1)

    def _adjoint(self):
        return self

    # ------------------------------------------------------------ structure
    def diagonal(self) -> torch.Tensor:
        """The main diagonal, shape ``(n,)`` (0 at non-fluid cells)."""
        return self._diag.reshape(-1).clone()

    def to_sparse(self) -> scipy.sparse.csr_matrix:
        """The operator as a scipy CSR matrix of shape ``(n, n)`` in :attr:`dtype`.

        Built from the same diagonal and face-weight arrays the product uses;
        entries that are exactly 0 are not stored.
        """
        grid = self.grid_shape
        n = math.prod(grid)
        idx = np.arange(n, dtype=np.int64).reshape(grid)
        d = self._diag.cpu().numpy().reshape(-1)
        rows = [np.flatnonzero(d)]
        cols = [rows[0]]
        vals = [d[rows[0]]]
        for a, wa in enumerate(self._w):
            na = grid[a]
            if na < 2:
                continue
            wi = wa.cpu().numpy().take(np.arange(1, na), axis=a).reshape(-1)
            lo = idx.take(np.arange(0, na - 1), axis=a).reshape(-1)
            hi = idx.take(np.arange(1, na), axis=a).reshape(-1)
            nz = np.flatnonzero(wi)
            rows += [lo[nz], hi[nz]]
            cols += [hi[nz], lo[nz]]
            vals += [-wi[nz], -wi[nz]]
        A = scipy.sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
            dtype=_numpy_dtype(self.dtype),
        )
        A.sum_duplicates()  # no duplicates exist; this sorts the indices
        A.sort_indices()
        return A

    @classmethod
    def from_weights(cls, diag, weights, *, dtype=torch.float64, device="cpu") -> "PoissonGrid":
        """The stencil operator of a given per-cell diagonal and per-axis face weights.

        Parameters
        ----------
        diag : array, shape ``grid_shape``
            ``A_ii``; a cell with ``diag == 0`` is not an unknown (its row and
            column are zero; its faces must have zero weight).
        weights : sequence of ``dim`` arrays
            ``weights[a]`` has ``grid_shape`` with axis ``a`` extended by one:
            entry ``k`` is ``-A_ij`` between cells ``k-1`` and ``k`` (entries 0
            and ``grid_shape[a]``, the domain sides, are 0).

        The Dirichlet and Neumann conditions live in ``diag`` (a face to air
        adds its coefficient there, a wall adds nothing), so this builds the
        coarse levels of a multigrid hierarchy from any fine stencil.
        ``boundary`` is None and ``flags`` is FLUID where ``diag > 0``.
        """
        d = np.ascontiguousarray(_to_numpy(diag), dtype=np.float64)
        grid = _check_shape(d.shape)
        w = [np.ascontiguousarray(_to_numpy(wa), dtype=np.float64) for wa in weights]
        if len(w) != len(grid) or any(wa.shape != _face_shape(grid, a) for a, wa in enumerate(w)):
            raise ValueError(f"weights must be {len(grid)} arrays of the grid {grid} with one axis extended by one")
        out = PoissonGrid.__new__(PoissonGrid)
        n = math.prod(grid)
        Operator.__init__(out, (n,), (n,), dtype, device)
        out.grid_shape = grid
        out.boundary = None
        out.spacing = 1.0
        out.flags = torch.from_numpy(np.where(d > 0, FLUID, SOLID).astype(np.uint8)).to(out.device)
        out.fluid_mask = out.flags == FLUID
        out._diag = torch.from_numpy(d).to(device=out.device, dtype=dtype)
        out._w = tuple(torch.from_numpy(wa).to(device=out.device, dtype=dtype) for wa in w)
        out._cast_cache = {}
        out._use_numba = True
        return out

    def weights(self) -> tuple[np.ndarray, tuple]:
        """``(diag, face_weights)`` as float64 numpy arrays (see :meth:`from_weights`)."""
        return self._diag.cpu().double().numpy(), tuple(wa.cpu().double().numpy() for wa in self._w)

    def _to(self, device, dtype):
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        out = PoissonGrid.__new__(PoissonGrid)
        Operator.__init__(out, self.ishape, self.oshape, dtype, device)
        out.grid_shape = self.grid_shape
        out.boundary = self.boundary
        out.spacing = self.spacing
        out.flags = self.flags.to(out.device)
        out.fluid_mask = out.flags == FLUID
        out._diag = self._diag.to(device=out.device, dtype=dtype)
        out._w = tuple(wa.to(device=out.device, dtype=dtype) for wa in self._w)
        out._cast_cache = {}
        out._use_numba = self._use_numba
        return out

    def __repr__(self) -> str:
        return (
            f"<PoissonGrid grid={self.grid_shape} fluid={int(self.fluid_mask.sum())} "
            f"boundary={self.boundary} dtype={self.dtype} device={self.device}>"
        )


Laplacian = PoissonGrid


# -------------------------------------------------------------- assembly
def _assemble(grid, flags, coeffs, boundary, h):
    """Per-cell diagonal and padded per-axis face weights (float64 numpy)."""
    dim = len(grid)
    fluid = flags == FLUID
    d = np.zeros(grid, dtype=np.float64)
    w = []
    inv_h2 = 1.0 / (h * h)
    for a in range(dim):
        c = coeffs[a] * inv_h2 if coeffs is not None else np.full(_face_shape(grid, a), inv_h2)
        # flags padded along axis a with the two domain sides' flag values
        fpad = np.concatenate(
            [
                np.full(_side_shape(grid, a), _BOUNDARY_FLAG[boundary[2 * a]], dtype=np.uint8),
                flags,
                np.full(_side_shape(grid, a), _BOUNDARY_FLAG[boundary[2 * a + 1]], dtype=np.uint8),
            ],
            axis=a,
        )
        na = grid[a]
        left = fpad.take(np.arange(0, na + 1), axis=a)  # cell on the low side of each face
        right = fpad.take(np.arange(1, na + 2), axis=a)  # cell on the high side
        # diagonal: faces of a fluid cell whose other side is not SOLID
        c_lo = c.take(np.arange(0, na), axis=a)
        c_hi = c.take(np.arange(1, na + 1), axis=a)
        open_lo = left.take(np.arange(0, na), axis=a) != SOLID
        open_hi = right.take(np.arange(1, na + 1), axis=a) != SOLID
        d += np.where(open_lo, c_lo, 0.0) + np.where(open_hi, c_hi, 0.0)
        # off-diagonal weight: both sides FLUID (never on a domain side)
        w.append(np.ascontiguousarray(np.where((left == FLUID) & (right == FLUID), c, 0.0)))
    d = np.where(fluid, d, 0.0)
    return np.ascontiguousarray(d), w


def _face_shape(grid, a):
    return tuple(s + 1 if i == a else s for i, s in enumerate(grid))


def _side_shape(grid, a):
    return tuple(1 if i == a else s for i, s in enumerate(grid))


# ------------------------------------------------------------- validation
def _to_numpy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _check_shape(shape):
    if isinstance(shape, numbers.Integral):
        raise ValueError(f"shape must be a 2-D or 3-D grid shape, got {shape!r}")
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a 2-D or 3-D grid shape, got {shape!r}") from None
    if len(shape) not in (2, 3) or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"shape must be a tuple of 2 or 3 ints, got {shape!r}")
    shape = tuple(int(s) for s in shape)
    if any(s <= 0 for s in shape):
        raise ValueError(f"shape must have positive sizes, got {shape}")
    return shape


def _check_flags(flags, grid):
    if flags is None:
        return np.full(grid, FLUID, dtype=np.uint8)
    f = _to_numpy(flags)
    if f.shape != grid:
        raise ValueError(f"flags must have the grid shape {grid}, got {f.shape}")
    if not (np.issubdtype(f.dtype, np.integer) or np.issubdtype(f.dtype, np.floating) or f.dtype == bool):
        raise ValueError(f"flags must hold the values FLUID=0, SOLID=1, EMPTY=2, got dtype {f.dtype}")
    ok = (f == FLUID) | (f == SOLID) | (f == EMPTY)
    if not ok.all():
        bad = np.unique(f[~ok])[:5]
        raise ValueError(f"flags must hold only FLUID=0, SOLID=1, EMPTY=2; found {bad.tolist()}")
    return np.ascontiguousarray(f.astype(np.uint8))


def _check_coeffs(coeffs, grid):
    if coeffs is None:
        return None
    dim = len(grid)
    if isinstance(coeffs, (np.ndarray, torch.Tensor)) or not isinstance(coeffs, (tuple, list)):
        raise ValueError(f"coeffs must be a tuple of {dim} face arrays (one per axis), got {type(coeffs).__name__}")
    if len(coeffs) != dim:
        raise ValueError(f"coeffs must have {dim} arrays (one per axis), got {len(coeffs)}")
    out = []
    for a, c in enumerate(coeffs):
        c = _to_numpy(c)
        want = _face_shape(grid, a)
        if c.shape != want:
            raise ValueError(f"coeffs[{a}] must have shape {want} (grid with axis {a} extended by one), got {c.shape}")
        if not (np.issubdtype(c.dtype, np.integer) or np.issubdtype(c.dtype, np.floating)):
            raise ValueError(f"coeffs[{a}] must be real numbers, got dtype {c.dtype}")
        c = c.astype(np.float64)
        if not np.isfinite(c).all():
            raise ValueError(f"coeffs[{a}] contains NaN or Inf")
        if (c < 0).any():
            raise ValueError(f"coeffs[{a}] must be >= 0, min is {c.min()}")
        out.append(c)
    return out


def _check_boundary(boundary, dim):
    if isinstance(boundary, str):
        sides = (boundary,) * (2 * dim)
    else:
        try:
            sides = tuple(boundary)
        except TypeError:
            raise ValueError(f"boundary must be 'solid', 'empty' or a sequence of {2 * dim} of them, got {boundary!r}") from None
        if len(sides) != 2 * dim:
            raise ValueError(f"boundary must have 2*dim = {2 * dim} entries (axis0-low, axis0-high, ...), got {len(sides)}")
    out = []
    for s in sides:
        if not isinstance(s, str) or s.lower() not in _BOUNDARY_FLAG:
            raise ValueError(f"boundary entries must be 'solid' or 'empty', got {s!r}")
        out.append(s.lower())
    return tuple(out)


def _check_spacing(spacing):
    if isinstance(spacing, bool) or not isinstance(spacing, (numbers.Real, np.number)):
        raise ValueError(f"spacing must be a positive finite number, got {spacing!r}")
    h = float(spacing)
    if not (math.isfinite(h) and h > 0):
        raise ValueError(f"spacing must be a positive finite number, got {spacing!r}")
    return h


# ---------------------------------------------------------------- helpers
def flags_from_matrix(A, grid_shape) -> np.ndarray:
    """Cell flags recovered from a full-grid matrix.

    Parameters
    ----------
    A : scipy sparse matrix, krylearn Operator with ``to_sparse()``, or dense array
        Square, ``n = prod(grid_shape)``.
    grid_shape : tuple of int

    Returns
    -------
    numpy.ndarray, uint8, shape ``grid_shape``
        FLUID where row ``i`` of ``A`` has a nonzero entry, else SOLID. EMPTY
        and SOLID cells (and isolated fluid cells) cannot be told apart from
        the matrix, so ``PoissonGrid(grid_shape, flags_from_matrix(A, ...))``
        reproduces ``A``'s sparsity, not necessarily its diagonal.
    """
    grid = _check_shape(grid_shape)
    n = math.prod(grid)
    if isinstance(A, Operator):
        A = A.to_sparse()
    A = scipy.sparse.csr_matrix(A)
    if A.shape != (n, n):
        raise ValueError(f"A must be square of size prod(grid_shape) = {n}, got shape {A.shape}")
    rows = np.repeat(np.arange(n), np.diff(A.indptr))
    has = np.zeros(n, dtype=bool)
    has[rows[A.data != 0]] = True
    return np.where(has, FLUID, SOLID).astype(np.uint8).reshape(grid)


__all__ = ["FLUID", "SOLID", "EMPTY", "PoissonGrid", "Laplacian", "flags_from_matrix"]
