"""DICOM series as stacks of 2-D slices: one series is one volume, one file is one slice.

Reading needs ``pydicom`` (``pip install krylearn[dicom]``); it is imported
only when a DICOM file is read, and its absence raises an ``ImportError``
naming that command.

Series
------
:func:`dicom_series` reads the headers of the given files (not their pixels:
values larger than 1 kB are left on disk) and groups them by folder and
``SeriesInstanceUID``; a folder of ``.dcm`` files from one acquisition is one
series.  The slices of a series are sorted by their position along the
slice normal (``ImagePositionPatient`` projected on the cross product of the
two ``ImageOrientationPatient`` directions) when every file has both tags,
else by ``InstanceNumber``, then by file name.  All slices of a series must
have the same ``Rows`` x ``Columns``.  Multi-frame files
(``NumberOfFrames > 1``) are refused.

Values
------
:func:`read_dicom_slice` returns the stored values through the modality
LUT's linear part, ``RescaleSlope * stored + RescaleIntercept`` (Hounsfield
units for CT), as float32 ``(Rows, Columns)``.

Errors
------
A file that is not DICOM, is truncated, has no pixel data, or whose pixel
data cannot be decoded (a compressed transfer syntax without its decoder
installed) raises :class:`~krylearn.utils.errors.FormatError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..utils.errors import FormatError
from .fileio import check_readable

__all__ = ["DICOM_HINT", "DicomSeries", "dicom_series", "is_dicom_file", "read_dicom_slice"]

#: How to install the optional DICOM reader.
DICOM_HINT = "pip install krylearn[dicom]"


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError(f"reading DICOM files needs pydicom, which is not installed: {DICOM_HINT}") from None
    return pydicom


def is_dicom_file(path) -> bool:
    """True when ``path`` holds the DICOM Part 10 signature (``DICM`` at byte 128); no pydicom needed."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series: its slice files in order and their common size.

    Attributes
    ----------
    folder : str
        The folder holding the files (the first file's folder).
    uid : str
        ``SeriesInstanceUID`` (``""`` when the files have none).
    files : tuple of str
        One file per slice, sorted as in the module notes.
    shape : (int, int)
        ``(Rows, Columns)`` of every slice.
    modality : str
        ``Modality`` (``"CT"``, ``"MR"``, ...; ``""`` when absent).
    sorted_by : str
        ``"position"``, ``"instance"`` or ``"name"``.
    """

    folder: str
    uid: str
    files: tuple
    shape: tuple
    modality: str
    sorted_by: str


def _header(path: str) -> dict:
    """The tags the series needs, from the header (pixel data left on disk)."""
    pydicom = _pydicom()
    check_readable(path)
    try:
        ds = pydicom.dcmread(path, defer_size="1 KB")
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise FormatError("DICOM file without pixel data (no PixelData element)", path=path)
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        pos = getattr(ds, "ImagePositionPatient", None)
        ori = getattr(ds, "ImageOrientationPatient", None)
        inst = getattr(ds, "InstanceNumber", None)
        out = {"uid": str(getattr(ds, "SeriesInstanceUID", "") or ""), "shape": (rows, cols),
               "modality": str(getattr(ds, "Modality", "") or ""),
               "instance": None if inst in (None, "") else int(inst), "position": None}
        if pos is not None and ori is not None and len(pos) == 3 and len(ori) == 6:
            ori = np.asarray([float(v) for v in ori])
            out["position"] = float(np.dot(np.cross(ori[:3], ori[3:]), [float(v) for v in pos]))
    except FormatError:
        raise
    except pydicom.errors.InvalidDicomError as e:
        raise FormatError(f"not a DICOM file ({e})", path=path) from None
    except (AttributeError, KeyError) as e:
        raise FormatError(f"DICOM file without the image tags Rows/Columns ({e})", path=path) from None
    except (OSError, EOFError, ValueError, TypeError, IndexError) as e:
        raise FormatError(f"corrupt or truncated DICOM file ({type(e).__name__}: {e})", path=path) from None
    if frames > 1:
        raise FormatError(f"multi-frame DICOM ({frames} frames) is not supported; give one file per slice",
                          path=path)
    if rows < 1 or cols < 1:
        raise FormatError(f"empty image (Rows={rows}, Columns={cols})", path=path)
    return out


def _sorted(files: list, heads: list) -> tuple[list, str]:
    names = [os.path.basename(f) for f in files]
    if all(h["position"] is not None for h in heads):
        key, how = (lambda i: (heads[i]["position"], heads[i]["instance"] or 0, names[i])), "position"
    elif all(h["instance"] is not None for h in heads):
        key, how = (lambda i: (heads[i]["instance"], names[i])), "instance"
    else:
        key, how = (lambda i: names[i]), "name"
    return sorted(range(len(files)), key=key), how


def dicom_series(files) -> list[DicomSeries]:
    """Group DICOM files into series and sort each series' slices (see the module notes).

    Parameters
    ----------
    files : iterable of str or PathLike
        DICOM files (any order, several folders and series allowed).

    Returns
    -------
    list of DicomSeries, sorted by (folder, uid).

    Raises
    ------
    ImportError
        pydicom is not installed (``pip install krylearn[dicom]``).
    FileNotFoundError, PermissionError
        A file is missing or unreadable.
    FormatError
        A file is not DICOM, is corrupt, has no pixel data or is multi-frame.
    ValueError
        The slices of one series differ in size.
    """
    groups: dict = {}
    for f in files:
        f = os.fspath(f)
        h = _header(f)
        groups.setdefault((os.path.dirname(os.path.abspath(f)), h["uid"]), []).append((f, h))
    out = []
    for (folder, uid), members in sorted(groups.items()):
        shapes = sorted({h["shape"] for _, h in members})
        if len(shapes) > 1:
            raise ValueError(f"DICOM series {uid or '(no SeriesInstanceUID)'} in {folder} mixes slice sizes "
                             f"{shapes}; put each size in its own folder")
        order, how = _sorted([f for f, _ in members], [h for _, h in members])
        modality = next((h["modality"] for _, h in members if h["modality"]), "")
        out.append(DicomSeries(folder=folder, uid=uid, files=tuple(members[i][0] for i in order),
                               shape=shapes[0], modality=modality, sorted_by=how))
    return out


def read_dicom_slice(path) -> np.ndarray:
    """One slice's values, ``RescaleSlope * stored + RescaleIntercept``, float32 ``(Rows, Columns)``.

    Raises
    ------
    ImportError
        pydicom is not installed.
    FormatError
        Not DICOM, corrupt, no pixel data, or pixel data that cannot be
        decoded (message names the file and pydicom's reason).
    """
    pydicom = _pydicom()
    path = os.fspath(path)
    check_readable(path)
    try:
        ds = pydicom.dcmread(path)
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise FormatError("DICOM file without pixel data (no PixelData element)", path=path)
        px = np.asarray(ds.pixel_array)
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    except FormatError:
        raise
    except pydicom.errors.InvalidDicomError as e:
        raise FormatError(f"not a DICOM file ({e})", path=path) from None
    except Exception as e:  # pydicom's decoders raise many types (RuntimeError, NotImplementedError, ...)
        raise FormatError(f"cannot decode the pixel data ({type(e).__name__}: {e})", path=path) from None
    if px.ndim != 2:
        raise FormatError(f"expected one 2-D grey-scale image, got pixel data of shape {px.shape}", path=path)
    out = px.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if not np.all(np.isfinite(out)):
        raise FormatError("pixel values are NaN or Inf after rescaling", path=path)
    return out
