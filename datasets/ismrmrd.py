"""The parts of an ISMRMRD XML header (the ``ismrmrd_header`` of fastMRI files) that krylearn reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET

__all__ = ["header_matrix_sizes", "recon_shape"]


def header_matrix_sizes(header) -> tuple:
    """``(encodedSpace (x, y), reconSpace (x, y))`` matrix sizes of an ISMRMRD XML header; None where absent."""
    if not header:
        return None, None
    try:
        root = ET.fromstring(header)
    except ET.ParseError:
        return None, None

    def local(el):
        return el.tag.rsplit("}", 1)[-1]

    def child(el, name):
        return None if el is None else next((c for c in el if local(c) == name), None)

    def size(space):
        m = child(child(enc, space), "matrixSize")
        try:
            xy = tuple(int(child(m, a).text) for a in ("x", "y"))
        except (AttributeError, TypeError, ValueError):
            return None
        return xy if min(xy) > 0 else None

    enc = next((e for e in root.iter() if local(e) == "encoding"), None)
    return size("encodedSpace"), size("reconSpace")


def recon_shape(header, image_shape) -> tuple | None:
    """``(ny, nx)`` of the header's ``reconSpace`` for images of ``image_shape``, or None.

    None without a header, when the header cannot be parsed or lacks the
    matrix sizes, or when ``reconSpace`` is not smaller than the image (an
    axis where it is larger keeps the image's size).  The header's ``x`` is
    the readout, the k-space axis ``-2`` in fastMRI files (e.g.
    ``encodedSpace`` 640 x 368 -> ``reconSpace`` 320 x 320); when
    ``encodedSpace`` matches the image the other way round, the axes follow it.
    """
    enc, rec = header_matrix_sizes(header)
    if rec is None:
        return None
    ky, kx = image_shape
    flipped = enc is not None and enc[1::-1] == (ky, kx) and enc[:2] != (ky, kx)
    shape = (rec[1], rec[0]) if flipped else rec[:2]
    shape = (min(shape[0], ky), min(shape[1], kx))
    return None if shape == (ky, kx) else shape
