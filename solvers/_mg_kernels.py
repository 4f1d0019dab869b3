"""Compiled (numba) CPU kernels of the geometric-multigrid V-cycle.

The smoother (a weighted-Jacobi sweep) and the residual are one pass, with a
2D and a 3D kernel, written row by row with the row ends peeled so that the interior
loops vectorise; the transfers handle both in 3D
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
``2c-1 .. 2c+2``.  Both are separable: the outer axes are combined first
on contiguous rows, the strided innermost axis once per row.  The residual
pass applies the restriction's renormalisation weights as it writes.
"""

from __future__ import annotations

import types

import numba
import numpy as np

_TAPS = np.array([0.25, 0.75, 0.75, 0.25])
_CHUNKS = 64  # parallel chunks of the transfers (scratch arrays are allocated once per chunk)


@numba.njit(cache=True, inline="always")
def _row2_into(d, wx, wlo, whi, xc, xlo, xhi, rr, wr, o, nx, keep):
    """``o = keep * xc + wr (rr - A x)`` along one innermost row; ``wlo, whi`` weigh the outer-axis neighbour rows.

    Branch-free in the interior (so it vectorises); the row ends are peeled.
    """
    if nx == 1:
        o[0] = keep * xc[0] + wr[0] * (rr[0] - (d[0] * xc[0] - wlo[0] * xlo[0] - whi[0] * xhi[0]))
        return
    o[0] = keep * xc[0] + wr[0] * (rr[0] - (d[0] * xc[0] - wx[1] * xc[1] - wlo[0] * xlo[0] - whi[0] * xhi[0]))
    for i in range(1, nx - 1):
        ax = d[i] * xc[i] - wx[i] * xc[i - 1] - wx[i + 1] * xc[i + 1] - wlo[i] * xlo[i] - whi[i] * xhi[i]
        o[i] = keep * xc[i] + wr[i] * (rr[i] - ax)
    m = nx - 1
    o[m] = keep * xc[m] + wr[m] * (rr[m] - (d[m] * xc[m] - wx[m] * xc[m - 1] - wlo[m] * xlo[m] - whi[m] * xhi[m]))


@numba.njit(cache=True, inline="always")
def _row3_into(d, wx, wylo, wyhi, wzlo, wzhi, xc, xylo, xyhi, xzlo, xzhi, rr, wr, o, nx, keep):
    """One innermost row of the 7-point stencil: ``o = keep * xc + wr (rr - A x)``."""
    for i in range(nx):  # the y- and z-neighbours
        o[i] = rr[i] - d[i] * xc[i] + wylo[i] * xylo[i] + wyhi[i] * xyhi[i] + wzlo[i] * xzlo[i] + wzhi[i] * xzhi[i]
    for i in range(1, nx - 1):  # the x-neighbours (zero-weight faces at the row ends)
        o[i] += wx[i] * xc[i - 1] + wx[i + 1] * xc[i + 1]
    if nx > 1:
        o[0] += wx[1] * xc[1]
        o[nx - 1] += wx[nx - 1] * xc[nx - 2]
    for i in range(nx):
        o[i] = keep * xc[i] + wr[i] * o[i]


@numba.njit(cache=True, inline="always")
def _clamp(j, n):
    return max(j - 1, 0), min(j + 1, n - 1)


def pass2d(d, wy, wx, wr, x, rhs, sweep, out):
    """One pass over ``(B, ny, nx)`` vectors: ``out = x + W (rhs - A x)`` (``sweep``) or ``W (rhs - A x)``.

    ``W = diag(wr)``, ``wr`` of shape ``(ny, nx)``.  As a sweep it is weighted
    Jacobi (damped Jacobi for ``wr = omega / diag``, zero where a cell is not
    an unknown, so ``x`` keeps its value there); as a residual, ``wr`` is the
    restriction's renormalisation.  ``out`` is not ``x``.
    """
    ny, nx = d.shape
    keep = 1.0 if sweep else 0.0
    for j in numba.prange(ny):
        jm, jp = _clamp(j, ny)
        for b in range(x.shape[0]):
            _row2_into(d[j], wx[j], wy[j], wy[j + 1], x[b, j], x[b, jm], x[b, jp], rhs[b, j], wr[j], out[b, j], nx,
                       keep)


def pass3d(d, wz, wy, wx, wr, x, rhs, sweep, out):
    """:func:`pass2d` on ``(B, nz, ny, nx)`` vectors."""
    nz, ny, nx = d.shape
    keep = 1.0 if sweep else 0.0
    for k in numba.prange(nz):
        km, kp = _clamp(k, nz)
        for b in range(x.shape[0]):
            for j in range(ny):
                jm, jp = _clamp(j, ny)
                _row3_into(d[k, j], wx[k, j], wy[k, j], wy[k, j + 1], wz[k, j], wz[k + 1, j], x[b, k, j],
                           x[b, k, jm], x[b, k, jp], x[b, km, j], x[b, kp, j], rhs[b, k, j], wr[k, j], out[b, k, j],
                           nx, keep)


@numba.njit(cache=True, inline="always")
def _half2(d, wy, wx, wr, x, rhs, b, j, colour, zero, t):
    """Row ``j`` of a colour half-sweep: its cells of ``colour`` get ``x += wr (rhs - A x)`` in place.

    Cell ``(j, i)`` has colour ``(i + j) % 2``.  The row's update is formed
    for all cells into ``t`` (the vectorising loop of :func:`pass2d`) and
    added at the cells of the colour.  ``zero``: ``x`` is zero on entry, so
    the row becomes ``wr rhs`` at the colour and 0 elsewhere, unread.
    """
    ny, nx = d.shape
    xc = x[b, j]
    first = (colour + j) % 2
    if zero:
        for i in range(nx):
            xc[i] = 0.0
        for i in range(first, nx, 2):
            xc[i] = wr[j, i] * rhs[b, j, i]
        return
    jm, jp = _clamp(j, ny)
    _row2_into(d[j], wx[j], wy[j], wy[j + 1], xc, x[b, jm], x[b, jp], rhs[b, j], wr[j], t, nx, 0.0)
    for i in range(first, nx, 2):
        xc[i] += t[i]


@numba.njit(cache=True, inline="always")
def _half3(d, wz, wy, wx, wr, x, rhs, b, k, j, colour, zero, t):
    """:func:`_half2` on row ``(k, j)`` of a 3D level; cell ``(k, j, i)`` has colour ``(i + j + k) % 2``."""
    nz, ny, nx = d.shape
    xc = x[b, k, j]
    first = (colour + j + k) % 2
    if zero:
        for i in range(nx):
            xc[i] = 0.0
        for i in range(first, nx, 2):
            xc[i] = wr[k, j, i] * rhs[b, k, j, i]
        return
    km, kp = _clamp(k, nz)
    jm, jp = _clamp(j, ny)
    _row3_into(d[k, j], wx[k, j], wy[k, j], wy[k, j + 1], wz[k, j], wz[k + 1, j], xc, x[b, k, jm], x[b, k, jp],
               x[b, km, j], x[b, kp, j], rhs[b, k, j], wr[k, j], t, nx, 0.0)
    for i in range(first, nx, 2):
        xc[i] += t[i]


def rbgs2d(d, wy, wx, wr, x, rhs, colour, zero, nchunk):
    """One red-black Gauss-Seidel sweep on ``x`` in place: the cells of ``colour`` first, then the others.

    ``x += W (rhs - A x)`` at each cell of a colour in turn (``W = diag(wr)``;
    Gauss-Seidel for ``wr = 1 / diag``, SOR for ``omega / diag``); ``zero``
    says ``x`` is zero on entry.  Both colours in one pass over memory: row
    ``j`` of the first colour, then row ``j - 1`` of the second, whose
    first-colour neighbours are all new by then.  ``nchunk`` blocks of rows
    run in parallel; the first and last rows of each block take their second
    colour in a second loop, once the neighbouring blocks are done.
    """
    ny, nx = d.shape
    nchunk = max(1, min(nchunk, ny))
    other = 1 - colour
    for c in numba.prange(nchunk):
        lo, hi = _chunk(c, nchunk, ny)
        t = np.empty(nx)
        for b in range(x.shape[0]):
            for j in range(lo, hi):
                _half2(d, wy, wx, wr, x, rhs, b, j, colour, zero, t)
                if j - 1 > lo:
                    _half2(d, wy, wx, wr, x, rhs, b, j - 1, other, False, t)
    for c in numba.prange(nchunk):
        lo, hi = _chunk(c, nchunk, ny)
        t = np.empty(nx)
        for b in range(x.shape[0]):
            _half2(d, wy, wx, wr, x, rhs, b, lo, other, False, t)
            if hi - 1 > lo:
                _half2(d, wy, wx, wr, x, rhs, b, hi - 1, other, False, t)


def rbgs3d(d, wz, wy, wx, wr, x, rhs, colour, zero, nchunk):
    """:func:`rbgs2d` on a 3D level: row ``(k, j)`` of the first colour, then row ``(k - 1, j - 1)`` of the second.

    Blocks of planes run in parallel; their first and last planes take the second colour in a second loop.
    """
    nz, ny, nx = d.shape
    nchunk = max(1, min(nchunk, nz))
    other = 1 - colour
    for c in numba.prange(nchunk):
        lo, hi = _chunk(c, nchunk, nz)
        t = np.empty(nx)
        for b in range(x.shape[0]):
            for k in range(lo, hi):
                for j in range(ny):
                    _half3(d, wz, wy, wx, wr, x, rhs, b, k, j, colour, zero, t)
                    if k - 1 > lo and j > 0:
                        _half3(d, wz, wy, wx, wr, x, rhs, b, k - 1, j - 1, other, False, t)
                if k - 1 > lo:
                    _half3(d, wz, wy, wx, wr, x, rhs, b, k - 1, ny - 1, other, False, t)
    for c in numba.prange(nchunk):
        lo, hi = _chunk(c, nchunk, nz)
        t = np.empty(nx)
        for b in range(x.shape[0]):
            for j in range(ny):
                _half3(d, wz, wy, wx, wr, x, rhs, b, lo, j, other, False, t)
                if hi - 1 > lo:
                    _half3(d, wz, wy, wx, wr, x, rhs, b, hi - 1, j, other, False, t)


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


@numba.njit(cache=True, inline="always")
def _restrict_row(u, o, m, scale, nxf, nxc):
    """``o = scale * m * (taps (1, 3, 3, 1) / 4 along x of the fine row u)``; ``u`` is zero-padded: ``u[1:nxf+1]``."""
    for ic in range(nxc):
        o[ic] = scale * m[ic] * (0.25 * (u[2 * ic] + u[2 * ic + 3]) + 0.75 * (u[2 * ic + 1] + u[2 * ic + 2]))


@numba.njit(cache=True, inline="always")
def _chunk(c, nchunk, n):
    """Rows ``[lo, hi)`` of chunk ``c``: the parallel loops run over a few chunks, so scratch is allocated per chunk."""
    return c * n // nchunk, (c + 1) * n // nchunk


def restrict(r, mask_c, sz, sy, scale, out):
    """``out = scale * mask_c * K^T r``: the transpose of the interpolation ``K`` of :func:`prolong_add`.

    ``r`` already carries the renormalisation (``norm * residual``, from :func:`pass2d`).
    Fine rows are combined along z and y first (contiguous), then restricted along x once per coarse row.
    """
    nb, nzf, nyf, nxf = r.shape
    nzc, nyc, nxc = out.shape[1:]
    nchunk = min(nzc, _CHUNKS)
    for c in numba.prange(nchunk):
        lo, hi = _chunk(c, nchunk, nzc)
        plane = np.zeros((nyf, 2 * nxc + 2))  # rows zero-padded: plane[y, 1:nxf + 1] holds the fine row
        u = np.zeros(2 * nxc + 2)
        for kc in range(lo, hi):
            for b in range(nb):
                plane[:, 1:nxf + 1] = 0.0
                for tz in range(4 if sz else 1):
                    z = 2 * kc - 1 + tz if sz else kc
                    if z < 0 or z >= nzf:
                        continue
                    wz = _TAPS[tz] if sz else 1.0
                    for y in range(nyf):
                        pr, rr = plane[y, 1:nxf + 1], r[b, z, y]
                        for xf in range(nxf):
                            pr[xf] += wz * rr[xf]
                for jc in range(nyc):
                    if not sy:
                        _restrict_row(plane[jc], out[b, kc, jc], mask_c[kc, jc], scale, nxf, nxc)
                        continue
                    ur = u[1:nxf + 1]
                    ur[:] = 0.0
                    for ty in range(4):
                        y = 2 * jc - 1 + ty
                        if 0 <= y < nyf:
                            wy, pr = _TAPS[ty], plane[y, 1:nxf + 1]
                            for xf in range(nxf):
                                ur[xf] += wy * pr[xf]
                    _restrict_row(u, out[b, kc, jc], mask_c[kc, jc], scale, nxf, nxc)


def prolong_add(e, norm, sz, sy, x):
    """``x += norm * K e``: cell-centred linear interpolation of the coarse ``e`` onto the fine ``x``.

    Along each coarsened axis fine cell ``2m`` takes ``3/4 e[m] + 1/4 e[m-1]`` and
    ``2m+1`` takes ``3/4 e[m] + 1/4 e[m+1]`` (``e`` zero outside the grid).
    """
    nb, nzf, nyf, nxf = x.shape
    nzc, nyc, nxc = e.shape[1:]
    nchunk = min(nzf, _CHUNKS)
    for c in numba.prange(nchunk):
        lo, hi = _chunk(c, nchunk, nzf)
        t = np.empty((nyc, nxc + 2))  # the z-combined coarse plane, rows zero-padded: t[:, 1:nxc + 1]
        t[:, 0] = 0.0
        t[:, nxc + 1] = 0.0
        u = np.zeros(nxc + 2)
        for z in range(lo, hi):
            pz = z // 2 if sz else z
            qz = (pz - 1 if z % 2 == 0 else pz + 1) if sz else -1
            wp = 0.75 if sz else 1.0
            for b in range(nb):
                for jc in range(nyc):
                    tr, ep = t[jc, 1:nxc + 1], e[b, pz, jc]
                    if 0 <= qz < nzc:
                        eq = e[b, qz, jc]
                        for ic in range(nxc):
                            tr[ic] = wp * ep[ic] + 0.25 * eq[ic]
                    else:
                        for ic in range(nxc):
                            tr[ic] = wp * ep[ic]
                for y in range(nyf):
                    if sy:
                        py = y // 2
                        qy = py - 1 if y % 2 == 0 else py + 1
                        ur, tp = u[1:nxc + 1], t[py, 1:nxc + 1]
                        if 0 <= qy < nyc:
                            tq = t[qy, 1:nxc + 1]
                            for ic in range(nxc):
                                ur[ic] = 0.75 * tp[ic] + 0.25 * tq[ic]
                        else:
                            for ic in range(nxc):
                                ur[ic] = 0.75 * tp[ic]
                        _interp_row(u, x[b, z, y], norm[z, y], nxf)
                    else:
                        _interp_row(t[y], x[b, z, y], norm[z, y], nxf)


@numba.njit(cache=True, inline="always")
def _interp_row(u, xr, nr, nxf):
    """``xr += nr * (linear interpolation along x of the coarse row u)``; ``u`` zero-padded at both ends."""
    for ic in range(nxf // 2):
        xr[2 * ic] += nr[2 * ic] * (0.75 * u[ic + 1] + 0.25 * u[ic])
        xr[2 * ic + 1] += nr[2 * ic + 1] * (0.75 * u[ic + 1] + 0.25 * u[ic + 2])
    if nxf % 2:
        m = nxf // 2
        xr[2 * m] += nr[2 * m] * (0.75 * u[m + 1] + 0.25 * u[m])


@numba.njit(cache=True, inline="always")
def _get2(a, j, i):
    """``a[j, i]``, or 0 outside the array."""
    return a[j, i] if j < a.shape[0] and i < a.shape[1] else 0.0


@numba.njit(cache=True, inline="always")
def _get3(a, k, j, i):
    """``a[k, j, i]``, or 0 outside the array."""
    return a[k, j, i] if k < a.shape[0] and j < a.shape[1] and i < a.shape[2] else 0.0


@numba.njit(cache=True)
def _keep_unknowns(dc):
    """Zero the coarse diagonals without a row sum (below ``1e-12`` of the largest): not unknowns."""
    top = max(dc.max(), 0.0) * 1e-12
    flat = dc.reshape(-1)
    for i in range(flat.size):
        if not flat[i] > top:
            flat[i] = 0.0


@numba.njit(cache=True)
def coarsen2d(d, wy, wx):
    """The next coarser 2D stencil (``multigrid.coarsen``): 2x2 aggregates, faces summed, all scaled by 1/8."""
    ny, nx = d.shape
    Y, X = (ny + 1) // 2, (nx + 1) // 2
    dc = np.zeros((Y, X))
    wyc, wxc = np.zeros((Y + 1, X)), np.zeros((Y, X + 1))
    for J in range(Y):
        for I in range(X):
            s = 0.0
            for j in range(2 * J, min(2 * J + 2, ny)):
                for i in range(2 * I, min(2 * I + 2, nx)):
                    s += d[j, i]
            for i in range(2 * I, min(2 * I + 2, nx)):
                s -= 2.0 * _get2(wy, 2 * J + 1, i)
            for j in range(2 * J, min(2 * J + 2, ny)):
                s -= 2.0 * _get2(wx, j, 2 * I + 1)
            dc[J, I] = s * 0.125
    _keep_unknowns(dc)
    for J in range(1, Y):  # faces between unknowns only (the domain sides stay 0)
        for I in range(X):
            if dc[J - 1, I] > 0 and dc[J, I] > 0:
                wyc[J, I] = 0.125 * (_get2(wy, 2 * J, 2 * I) + _get2(wy, 2 * J, 2 * I + 1))
    for J in range(Y):
        for I in range(1, X):
            if dc[J, I - 1] > 0 and dc[J, I] > 0:
                wxc[J, I] = 0.125 * (_get2(wx, 2 * J, 2 * I) + _get2(wx, 2 * J + 1, 2 * I))
    return dc, wyc, wxc


@numba.njit(cache=True)
def coarsen3d(d, wz, wy, wx):
    """:func:`coarsen2d` in 3D: 2x2x2 aggregates, all scaled by 1/16."""
    nz, ny, nx = d.shape
    Z, Y, X = (nz + 1) // 2, (ny + 1) // 2, (nx + 1) // 2
    dc = np.zeros((Z, Y, X))
    wzc, wyc, wxc = np.zeros((Z + 1, Y, X)), np.zeros((Z, Y + 1, X)), np.zeros((Z, Y, X + 1))
    for K in range(Z):
        for J in range(Y):
            for I in range(X):
                s = 0.0
                for k in range(2 * K, min(2 * K + 2, nz)):
                    for j in range(2 * J, min(2 * J + 2, ny)):
                        for i in range(2 * I, min(2 * I + 2, nx)):
                            s += d[k, j, i] - 2.0 * (_get3(wz, k + 1, j, i) * (k == 2 * K)
                                                     + _get3(wy, k, j + 1, i) * (j == 2 * J)
                                                     + _get3(wx, k, j, i + 1) * (i == 2 * I))
                dc[K, J, I] = s * 0.0625
    _keep_unknowns(dc)
    for K in range(Z + 1):
        for J in range(Y + 1):
            for I in range(X + 1):
                inside = K < Z and J < Y and I < X and dc[K, J, I] > 0
                if not inside:
                    continue
                if K > 0 and dc[K - 1, J, I] > 0:
                    wzc[K, J, I] = 0.0625 * (_get3(wz, 2 * K, 2 * J, 2 * I) + _get3(wz, 2 * K, 2 * J, 2 * I + 1)
                                             + _get3(wz, 2 * K, 2 * J + 1, 2 * I)
                                             + _get3(wz, 2 * K, 2 * J + 1, 2 * I + 1))
                if J > 0 and dc[K, J - 1, I] > 0:
                    wyc[K, J, I] = 0.0625 * (_get3(wy, 2 * K, 2 * J, 2 * I) + _get3(wy, 2 * K, 2 * J, 2 * I + 1)
                                             + _get3(wy, 2 * K + 1, 2 * J, 2 * I)
                                             + _get3(wy, 2 * K + 1, 2 * J, 2 * I + 1))
                if I > 0 and dc[K, J, I - 1] > 0:
                    wxc[K, J, I] = 0.0625 * (_get3(wx, 2 * K, 2 * J, 2 * I) + _get3(wx, 2 * K, 2 * J + 1, 2 * I)
                                             + _get3(wx, 2 * K + 1, 2 * J, 2 * I)
                                             + _get3(wx, 2 * K + 1, 2 * J + 1, 2 * I))
    return dc, wzc, wyc, wxc


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
    # no loop fusion: the red-black sweeps' second parallel loop must wait for the whole first one
    parallel = {"fusion": False} if fn.__name__.startswith("rbgs") else True
    return numba.njit(parallel=parallel, cache=True)(fn), numba.njit(cache=True)(serial)


#: ``name: (parallel, serial)`` compiled builds; levels below ``SERIAL_BELOW`` cells take the serial one
#: (a parallel launch costs tens of microseconds, more than a small level's work).
KERNELS = {f.__name__: _builds(f) for f in (pass2d, pass3d, rbgs2d, rbgs3d, learned_weights2d,
                                             learned_weights3d, restrict, prolong_add)}
SERIAL_BELOW = 1 << 15
