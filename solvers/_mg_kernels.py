"""Compiled (numba) CPU kernels of the geometric-multigrid V-cycle.

The smoother has a 2D and a 3D kernel; the transfers handle both in 3D
form, a 2D level ``(ny, nx)`` being ``(ny, 1, nx)`` (so the parallel loop
still runs over rows), with ``sz``, ``sy`` saying which axes are
coarsened.  Vectors are C-contiguous; face weights are the padded arrays
of :class:`~krylearn.operators.PoissonGrid` (``w[a]`` has axis ``a``
extended by one, zero on the domain sides and at non-unknowns).  The
stencil arrays may be float32 under float64 vectors: the kernels are
memory-bound and the weights are half their traffic.

Transfers are cell-centred (bi/tri)linear: fine cell ``2m`` takes
``3/4 e[m] + 1/4 e[m-1]``, fine cell ``2m+1`` takes ``3/4 e[m] + 1/4
e[m+1]`` along each coarsened axis (``e`` zero outside the grid), and the
restriction is its transpose, taps ``(1, 3, 3, 1) / 4`` on fine cells
``2c-1 .. 2c+2``.  Both are separable: a plane of partial sums per
outer index, so each fine value is touched a few times, not ``4^d``.
"""

from __future__ import annotations

import types

import numba
import numpy as np

from ..operators.stencil import _row2_at, _row3_at

_TAPS = np.array([0.25, 0.75, 0.75, 0.25])


@numba.njit(cache=True, inline="always")
def _update(o, xr, rr, dr, omega, nx):
    """``o = x + omega (rhs - o) / d`` (``o`` holds ``A x``), or the residual ``rhs - o`` when ``omega`` is 0.

    Cells with ``d == 0`` are not unknowns: ``x`` keeps its value there (0 in a V-cycle).
    """
    if omega == 0.0:
        for i in range(nx):
            o[i] = rr[i] - o[i]
    else:
        for i in range(nx):
            step = omega / dr[i] if dr[i] != 0 else 0.0
            o[i] = xr[i] + step * (rr[i] - o[i])


def jacobi2d(d, wy, wx, x, rhs, omega, out):
    """One damped-Jacobi sweep on ``(B, ny, nx)`` vectors, ``out = x + omega D^-1 (rhs - A x)``.

    ``out`` is not ``x``.  With ``omega = 0`` it is the residual, ``out = rhs - A x``.
    """
    nb = x.shape[0]
    for j in numba.prange(d.shape[0]):
        for b in range(nb):
            o = out[b, j]
            _row2_at(d, wy, wx, x, b, j, o)
            _update(o, x[b, j], rhs[b, j], d[j], omega, d.shape[1])


def jacobi3d(d, wz, wy, wx, x, rhs, omega, out):
    """:func:`jacobi2d` on ``(B, nz, ny, nx)`` vectors."""
    nb = x.shape[0]
    nz, ny, nx = d.shape
    for k in numba.prange(nz):
        for b in range(nb):
            for j in range(ny):
                o = out[b, k, j]
                _row3_at(d, wz, wy, wx, x, b, k, j, o)
                _update(o, x[b, k, j], rhs[b, k, j], d[k, j], omega, nx)


@numba.njit(cache=True, inline="always")
def _update_w(o, xr, rr, wr, nx):
    """``o = x + w (rhs - o)`` with a weight per cell (``o`` holds ``A x``)."""
    for i in range(nx):
        o[i] = xr[i] + wr[i] * (rr[i] - o[i])


def jacobi2d_w(d, wy, wx, x, rhs, wd, out):
    """One weighted-Jacobi sweep on ``(B, ny, nx)`` vectors, ``out = x + W (rhs - A x)``, ``W = diag(wd)``.

    ``wd`` (``(ny, nx)``) is zero where a cell is not an unknown.
    """
    nb = x.shape[0]
    for j in numba.prange(d.shape[0]):
        for b in range(nb):
            o = out[b, j]
            _row2_at(d, wy, wx, x, b, j, o)
            _update_w(o, x[b, j], rhs[b, j], wd[j], d.shape[1])


def jacobi3d_w(d, wz, wy, wx, x, rhs, wd, out):
    """:func:`jacobi2d_w` on ``(B, nz, ny, nx)`` vectors."""
    nb = x.shape[0]
    nz, ny, nx = d.shape
    for k in numba.prange(nz):
        for b in range(nb):
            for j in range(ny):
                o = out[b, k, j]
                _row3_at(d, wz, wy, wx, x, b, k, j, o)
                _update_w(o, x[b, k, j], rhs[b, k, j], wd[k, j], nx)


@numba.njit(cache=True, inline="always")
def _table_at(tables, t, rho, delta):
    k1, k2 = tables.shape[1], tables.shape[2]
    u, v = rho * (k1 - 1), delta * (k2 - 1)
    i, j = min(int(u), k1 - 2), min(int(v), k2 - 2)
    a, c = u - i, v - j
    return ((1 - a) * (1 - c) * tables[t, i, j] + a * (1 - c) * tables[t, i + 1, j]
            + (1 - a) * c * tables[t, i, j + 1] + a * c * tables[t, i + 1, j + 1])


def learned_weights3d(d, wz, wy, wx, dmax, tables, divide, out):
    """Per-cell values of bilinear ``tables`` (T, K1, K2) at ``(rho, delta)``, the stencil features.

    ``rho`` = off-diagonal row sum / diagonal, ``delta`` = diagonal / ``dmax``;
    ``out[t]`` is the value over the diagonal where ``divide[t]``, else its
    square root; zero where the diagonal is.  ``out`` is (T, nz, ny, nx) float32.
    """
    nz, ny, nx = d.shape
    for k in numba.prange(nz):
        for j in range(ny):
            for i in range(nx):
                dd = d[k, j, i]
                if dd <= 0:
                    for t in range(tables.shape[0]):
                        out[t, k, j, i] = 0.0
                    continue
                off = (wz[k, j, i] + wz[k + 1, j, i] + wy[k, j, i] + wy[k, j + 1, i] + wx[k, j, i]
                       + wx[k, j, i + 1])
                rho = min(max(off / dd, 0.0), 1.0)
                delta = min(max(dd / dmax, 0.0), 1.0)
                for t in range(tables.shape[0]):
                    val = _table_at(tables, t, rho, delta)
                    out[t, k, j, i] = val / dd if divide[t] else np.sqrt(val)


def learned_weights2d(d, wy, wx, dmax, tables, divide, out):
    """:func:`learned_weights3d` on a 2D level; ``out`` is (T, ny, nx)."""
    ny, nx = d.shape
    for j in numba.prange(ny):
        for i in range(nx):
            dd = d[j, i]
            if dd <= 0:
                for t in range(tables.shape[0]):
                    out[t, j, i] = 0.0
                continue
            off = wy[j, i] + wy[j + 1, i] + wx[j, i] + wx[j, i + 1]
            rho = min(max(off / dd, 0.0), 1.0)
            delta = min(max(dd / dmax, 0.0), 1.0)
            for t in range(tables.shape[0]):
                val = _table_at(tables, t, rho, delta)
                out[t, j, i] = val / dd if divide[t] else np.sqrt(val)


def restrict(r, norm, mask_c, sz, sy, scale, out):
    """``out = scale * mask_c * K^T (norm * r)``: the full-weighting transpose of :func:`prolong_add`."""
    nb, nzf, nyf, nxf = r.shape
    nzc, nyc, nxc = out.shape[1:]
    for kc_ in numba.prange(nzc):
        kc = np.int64(kc_)
        t = np.empty((nyf, nxc))
        rn = np.zeros(2 * nxc + 2)
        for b in range(nb):
            t[:] = 0.0
            for tz in range(4 if sz else 1):
                z = 2 * kc - 1 + tz if sz else kc
                if z < 0 or z >= nzf:
                    continue
                wz = _TAPS[tz] if sz else 1.0
                for y in range(nyf):
                    rr, nr, tr = r[b, z, y], norm[z, y], t[y]
                    for xf in range(nxf):
                        rn[xf + 1] = nr[xf] * rr[xf]
                    for ic in range(nxc):  # rn is zero-padded: 0, r_0 .. r_{nxf-1}, 0 (, 0)
                        tr[ic] += wz * (0.25 * (rn[2 * ic] + rn[2 * ic + 3]) + 0.75 * (rn[2 * ic + 1] + rn[2 * ic + 2]))
            for jc in range(nyc):
                o, m = out[b, kc, jc], mask_c[kc, jc]
                if not sy:
                    for ic in range(nxc):
                        o[ic] = scale * m[ic] * t[jc, ic]
                    continue
                for ic in range(nxc):
                    s = 0.0
                    for ty in range(4):
                        y = 2 * jc - 1 + ty
                        if 0 <= y < nyf:
                            s += _TAPS[ty] * t[y, ic]
                    o[ic] = scale * m[ic] * s


def prolong_add(e, norm, sz, sy, x):
    """``x += norm * K e``: cell-centred linear interpolation of the coarse ``e`` onto the fine ``x``."""
    nb, nzf, nyf, nxf = x.shape
    nzc, nyc, nxc = e.shape[1:]
    for z_ in numba.prange(nzf):
        z = np.int64(z_)
        t = np.zeros((nyc + 2, nxc + 2))  # the z-interpolated coarse plane, zero-padded
        pz = z // 2 if sz else z
        qz = (pz - 1 if z % 2 == 0 else pz + 1) if sz else -1
        wp = 0.75 if sz else 1.0
        for b in range(nb):
            for jc in range(nyc):
                for ic in range(nxc):
                    v = wp * e[b, pz, jc, ic]
                    if 0 <= qz < nzc:
                        v += 0.25 * e[b, qz, jc, ic]
                    t[jc + 1, ic + 1] = v
            for y in range(nyf):
                if sy:
                    py = y // 2 + 1
                    qy = py - 1 if y % 2 == 0 else py + 1
                    wpy, wqy = 0.75, 0.25
                else:
                    py, qy, wpy, wqy = y + 1, 0, 1.0, 0.0
                tp, tq, xr, nr = t[py], t[qy], x[b, z, y], norm[z, y]
                for xf in range(nxf):
                    px = xf // 2 + 1
                    qx = px - 1 if xf % 2 == 0 else px + 1
                    v = wpy * (0.75 * tp[px] + 0.25 * tp[qx]) + wqy * (0.75 * tq[px] + 0.25 * tq[qx])
                    xr[xf] += nr[xf] * v


@numba.njit(cache=True)
def csr_stencil(indptr, indices, data, nz, ny, nx, d, wz, wy, wx, wz_lo, wy_lo, wx_lo):
    """Scatter a CSR grid Laplacian into its diagonal and face weights; returns the entries that fit no face.

    Cells are C-ordered on ``(nz, ny, nx)`` (``nz = 1`` in 2D).  Upper
    entries (column above the row) fill ``wz, wy, wx``, lower ones the
    ``*_lo`` mirrors, so the caller can check symmetry.  All arrays are
    zero on entry; weights are ``-A_ij``.
    """
    plane = ny * nx
    stray = 0
    for i in range(indptr.shape[0] - 1):
        k, j, m = i // plane, (i // nx) % ny, i % nx
        for p in range(indptr[i], indptr[i + 1]):
            off = indices[p] - i
            v = data[p]
            if off == 0:
                d[k, j, m] = v
            elif off == 1 and m < nx - 1:
                wx[k, j, m + 1] = -v
            elif off == -1 and m > 0:
                wx_lo[k, j, m] = -v
            elif off == nx and j < ny - 1:
                wy[k, j + 1, m] = -v
            elif off == -nx and j > 0:
                wy_lo[k, j, m] = -v
            elif off == plane and k < nz - 1:
                wz[k + 1, j, m] = -v
            elif off == -plane and k > 0:
                wz_lo[k, j, m] = -v
            else:
                stray += 1
    return stray


def _builds(fn):
    serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial")
    serial.__qualname__ = serial.__name__  # its own on-disk cache entry
    return numba.njit(parallel=True, cache=True)(fn), numba.njit(cache=True)(serial)


#: ``name: (parallel, serial)`` compiled builds; levels below ``SERIAL_BELOW`` cells take the serial one
#: (a parallel launch costs tens of microseconds, more than a small level's work).
KERNELS = {f.__name__: _builds(f) for f in (jacobi2d, jacobi3d, jacobi2d_w, jacobi3d_w, learned_weights2d,
                                             learned_weights3d, restrict, prolong_add)}
SERIAL_BELOW = 1 << 15
