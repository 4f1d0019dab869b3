"""DICOM series as stacks of 2-D slices: one series (or one multi-frame file) is one volume.

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
have the same ``Rows`` x ``Columns``.  (Single-frame files of the enhanced
IODs, which keep these tags in the functional groups, are read there when
the top level lacks them.)

Multi-frame files
-----------------
A file with ``NumberOfFrames > 1`` (Enhanced MR/CT Image Storage, or any
IOD with several frames) is a series of its own: one volume whose slices
are its frames, in the order stored (frame ``k`` of the file is slice
``k``; frames are not re-sorted by their ``PlanePositionSequence``, since a
file may hold several stacks, echoes or time points and stored order keeps
them apart).  Its ``SeriesInstanceUID`` still names it, so the split keeps
it with the other files of that series.  Frames are read one at a time:
with pydicom >= 3 through :func:`pydicom.pixels.pixel_array` with
``index=`` (only that frame is read and decoded); with pydicom 2 the whole
pixel data of the file is decoded and the last two files' frames are kept
in memory (``frames x Rows x Columns`` values each), so the frames of a
volume are decoded once, not once per slice.

Values
------
:func:`read_dicom_slice` returns the stored values through the modality
LUT's linear part, ``RescaleSlope * stored + RescaleIntercept`` (Hounsfield
units for CT), as float32 ``(Rows, Columns)``.  The slope and intercept are
the frame's ``PixelValueTransformationSequence`` in
``PerFrameFunctionalGroupsSequence`` when it has one, else that of
``SharedFunctionalGroupsSequence``, else the file's top-level tags (each of
the two taken where it is first found; absent: 1 and 0).

Errors
------
A file that is not DICOM, is truncated, has no pixel data, or whose pixel
data cannot be decoded (a compressed transfer syntax without its decoder
installed) raises :class:`~krylearn.utils.errors.FormatError` naming the file;
a frame index outside a file's frames raises ``IndexError`` naming both.
"""

from __future__ import annotations

import functools
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
    """One DICOM series (or one multi-frame file): its slice files in order and their common size.

    Attributes
    ----------
    folder : str
        The folder holding the files (the first file's folder).
    uid : str
        ``SeriesInstanceUID`` (``""`` when the files have none).
    files : tuple of str
        One file per slice, sorted as in the module notes; a multi-frame
        file: that file alone.
    shape : (int, int)
        ``(Rows, Columns)`` of every slice.
    modality : str
        ``Modality`` (``"CT"``, ``"MR"``, ...; ``""`` when absent).
    sorted_by : str
        ``"position"``, ``"instance"`` or ``"name"``; ``"frames"`` for a
        multi-frame file (stored frame order).
    frames : int
        A multi-frame file: its ``NumberOfFrames`` (the slices of the
        volume); 0 for a series of single-frame files.
    """

    folder: str
    uid: str
    files: tuple
    shape: tuple
    modality: str
    sorted_by: str
    frames: int = 0

    @property
    def slices(self) -> int:
        """Number of 2-D slices: the frames of a multi-frame file, else the files."""
        return self.frames or len(self.files)


def _has_pixels(ds) -> bool:
    return "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds


def _group_value(ds, frame: int, seq: str, keyword: str):
    """``keyword`` of ``seq`` in frame ``frame``'s functional group, else in the shared one; else ``None``."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = getattr(ds, groups, None)
        if items is None or len(items) <= i:
            continue
        inner = getattr(items[i], seq, None)
        if inner is not None and len(inner) and keyword in inner[0]:
            value = inner[0][keyword].value
            if value not in (None, ""):
                return value
    return None


def _rescale(ds, frame: int) -> tuple[float, float]:
    """``(slope, intercept)`` of ``frame``: its functional groups, else the top level (module notes)."""
    out = []
    for keyword, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        v = _group_value(ds, frame, "PixelValueTransformationSequence", keyword)
        if v is None:
            v = getattr(ds, keyword, default)
        out.append(float(v or default))
    return out[0], out[1]


def _position(ds):
    """The position along the slice normal, from the top level or frame 0's functional groups; else ``None``."""
    pos = getattr(ds, "ImagePositionPatient", None)
    if pos is None:
        pos = _group_value(ds, 0, "PlanePositionSequence", "ImagePositionPatient")
    ori = getattr(ds, "ImageOrientationPatient", None)
    if ori is None:
        ori = _group_value(ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient")
    if pos is None or ori is None or len(pos) != 3 or len(ori) != 6:
        return None
    ori = np.asarray([float(v) for v in ori])
    return float(np.dot(np.cross(ori[:3], ori[3:]), [float(v) for v in pos]))


def _header(path: str) -> dict:
    """The tags the series needs, from the header (pixel data left on disk)."""
    pydicom = _pydicom()
    check_readable(path)
    try:
        ds = pydicom.dcmread(path, defer_size="1 KB")
        if not _has_pixels(ds):
            raise FormatError("DICOM file without pixel data (no PixelData element)", path=path)
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        inst = getattr(ds, "InstanceNumber", None)
        out = {"uid": str(getattr(ds, "SeriesInstanceUID", "") or ""), "shape": (rows, cols),
               "modality": str(getattr(ds, "Modality", "") or ""), "frames": frames,
               "instance": None if inst in (None, "") else int(inst), "position": _position(ds)}
    except FormatError:
        raise
    except pydicom.errors.InvalidDicomError as e:
        raise FormatError(f"not a DICOM file ({e})", path=path) from None
    except (AttributeError, KeyError) as e:
        raise FormatError(f"DICOM file without the image tags Rows/Columns ({e})", path=path) from None
    except (OSError, EOFError, ValueError, TypeError, IndexError) as e:
        raise FormatError(f"corrupt or truncated DICOM file ({type(e).__name__}: {e})", path=path) from None
    if frames < 1:
        raise FormatError(f"NumberOfFrames is {frames}; expected at least 1", path=path)
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
        DICOM files (any order, several folders and series allowed; a
        multi-frame file is a series of its own).

    Returns
    -------
    list of DicomSeries, sorted by (folder, uid, multi-frame file: its path).

    Raises
    ------
    ImportError
        pydicom is not installed (``pip install krylearn[dicom]``).
    FileNotFoundError, PermissionError
        A file is missing or unreadable.
    FormatError
        A file is not DICOM, is corrupt or has no pixel data.
    ValueError
        The slices of one series differ in size.
    """
    groups: dict = {}
    for f in files:
        f = os.fspath(f)
        h = _header(f)
        own = os.path.abspath(f) if h["frames"] > 1 else ""  # a multi-frame file is a series of its own
        groups.setdefault((os.path.dirname(os.path.abspath(f)), h["uid"], own), []).append((f, h))
    out = []
    for (folder, uid, own), members in sorted(groups.items()):
        if own:
            (f, h), = members
            out.append(DicomSeries(folder=folder, uid=uid, files=(f,), shape=h["shape"], modality=h["modality"],
                                   sorted_by="frames", frames=h["frames"]))
            continue
        shapes = sorted({h["shape"] for _, h in members})
        if len(shapes) > 1:
            raise ValueError(f"DICOM series {uid or '(no SeriesInstanceUID)'} in {folder} mixes slice sizes "
                             f"{shapes}; put each size in its own folder")
        order, how = _sorted([f for f, _ in members], [h for _, h in members])
        modality = next((h["modality"] for _, h in members if h["modality"]), "")
        out.append(DicomSeries(folder=folder, uid=uid, files=tuple(members[i][0] for i in order),
                               shape=shapes[0], modality=modality, sorted_by=how))
    return out


@functools.lru_cache(maxsize=2)
def _all_frames(path: str, stamp: tuple) -> np.ndarray:
    """Every frame of a multi-frame file, decoded at once (pydicom 2); ``stamp`` = (mtime, size) renews it."""
    return np.asarray(_pydicom().dcmread(path).pixel_array)


def _frame_pixels(pydicom, path: str, frame: int) -> np.ndarray:
    """Frame ``frame`` of a multi-frame file: only that frame with pydicom >= 3 (see the module notes)."""
    one_frame = getattr(getattr(pydicom, "pixels", None), "pixel_array", None)
    if one_frame is not None:
        return np.asarray(one_frame(path, index=frame))
    st = os.stat(path)
    return _all_frames(path, (st.st_mtime_ns, st.st_size))[frame]


def read_dicom_slice(path, frame: int | None = None) -> np.ndarray:
    """One slice's values, ``RescaleSlope * stored + RescaleIntercept``, float32 ``(Rows, Columns)``.

    Parameters
    ----------
    path : str or PathLike
    frame : int, optional
        A multi-frame file: the frame to read (from 0; its own rescale, see
        the module notes).  ``None``: the file must hold one frame.

    Raises
    ------
    ImportError
        pydicom is not installed.
    IndexError
        ``frame`` is not one of the file's frames.
    FormatError
        Not DICOM, corrupt, no pixel data, or pixel data that cannot be
        decoded (message names the file and pydicom's reason).
    """
    pydicom = _pydicom()
    path = os.fspath(path)
    check_readable(path)
    try:
        ds = pydicom.dcmread(path, defer_size="1 KB")
        if not _has_pixels(ds):
            raise FormatError("DICOM file without pixel data (no PixelData element)", path=path)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        inside = frame is None or 0 <= int(frame) < frames
        if inside:
            px = np.asarray(ds.pixel_array if frame is None else _frame_pixels(pydicom, path, int(frame)))
            slope, intercept = _rescale(ds, 0 if frame is None else int(frame))
    except FormatError:
        raise
    except pydicom.errors.InvalidDicomError as e:
        raise FormatError(f"not a DICOM file ({e})", path=path) from None
    except Exception as e:  # pydicom's decoders raise many types (RuntimeError, NotImplementedError, ...)
        raise FormatError(f"cannot decode the pixel data ({type(e).__name__}: {e})", path=path) from None
    if not inside:
        raise IndexError(f"frame {frame} is out of range for {path} ({frames} frames)")
    if px.ndim != 2:
        hint = f" (a multi-frame file of {frames} frames: give frame=)" if frame is None and frames > 1 else ""
        raise FormatError(f"expected one 2-D grey-scale image, got pixel data of shape {px.shape}{hint}", path=path)
    out = px.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    if not np.all(np.isfinite(out)):
        raise FormatError("pixel values are NaN or Inf after rescaling", path=path)
    return out
