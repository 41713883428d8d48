"""3D Slicer segmentations (``.seg.nrrd``) in and out (needs the ``nrrd`` extra: pynrrd).

A ``.seg.nrrd`` is an NRRD file holding one label map (3-D, ``kinds: domain domain
domain``) or a stack of them (4-D, ``kinds: list domain domain domain``, one *layer* per
entry of the first axis, so that overlapping segments can live in separate layers). Each
segment is described by ``SegmentN_*`` header fields: ``Name``, ``ID``, ``Color`` (three
floats 0-1), ``LabelValue`` and ``Layer`` (a segment is the voxels of its layer equal to
its label value), ``Extent`` (``xmin xmax ymin ymax zmin zmax`` voxel indices; an empty
segment has ``0 -1 0 -1 0 -1``) and ``Tags`` (``key:value|`` pairs, among them
``TerminologyEntry:context~category~type~typeModifier~anatomicContext~region~regionModifier``
with codes written ``scheme^value^meaning``).

Geometry: ``space`` (``left-posterior-superior``, ``right-anterior-superior`` or
``left-anterior-superior``; others are refused), ``space directions`` (one column per
array axis) and ``space origin``; medmask keeps LPS.

Reading keeps empty segments (as empty masks), colours, terminology (as the coded
attributes ``category``/``type``/``type_modifier``/``region``/``region_modifier``), the
segment ID and other tags (under the ``slicer`` attribute). Writing puts overlapping
masks into separate layers (greedy: each mask goes into the first layer where it
overlaps nothing), as Slicer does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import MaskValidationError
from ..geometry import lps_matrix, lps_to_space
from ..spaces import Space
from .common import MAX_SEGMENTS, MAX_VOXELS, MaskRecord
from .labels import default_color
from .names import unique_names

__all__ = [
    "read_seg_nrrd",
    "write_seg_nrrd",
    "parse_terminology",
    "terminology_string",
    "NRRD_SPACES",
]

#: NRRD ``space`` values medmask understands, as the sign flips that turn them into LPS.
NRRD_SPACES = {
    "left-posterior-superior": (1.0, 1.0, 1.0),
    "lps": (1.0, 1.0, 1.0),
    "right-anterior-superior": (-1.0, -1.0, 1.0),
    "ras": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (1.0, -1.0, 1.0),
    "las": (1.0, -1.0, 1.0),
}
_CODED = ("category", "type", "type_modifier", "region", "region_modifier")
_DEFAULT_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_DEFAULT_ANATOMIC = "Anatomic codes - DICOM master list"


def _nrrd():
    try:
        import nrrd
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('.seg.nrrd support needs pynrrd: pip install "medmask[nrrd]"') from None
    return nrrd


# -- terminology ----------------------------------------------------------------------------
def _code(text: str) -> dict | None:
    parts = text.split("^")
    if len(parts) != 3 or not parts[1].strip():
        return None
    return {"scheme": parts[0], "value": parts[1], "meaning": parts[2]}


def parse_terminology(entry: str) -> tuple[dict, dict]:
    """Slicer's ``TerminologyEntry`` string as coded attributes.

    Args:
        entry: ``context~category~type~typeModifier~anatomicContext~region~regionModifier``.

    Returns:
        ``(coded, contexts)``: ``{"category": {...}, "type": {...}, ...}`` (only the
        codes present) and ``{"terminology_context": ..., "anatomic_context": ...}``.
    """
    parts = entry.split("~")
    parts += [""] * (7 - len(parts))
    coded = {}
    for key, text in zip(_CODED, (parts[1], parts[2], parts[3], parts[5], parts[6]), strict=True):
        c = _code(text)
        if c:
            coded[key] = c
    contexts = {"terminology_context": parts[0], "anatomic_context": parts[4]}
    return coded, contexts


def terminology_string(attrs: dict) -> str | None:
    """Slicer's ``TerminologyEntry`` string for a mask's coded attributes (``None`` without
    ``category`` and ``type``)."""
    if not (isinstance(attrs.get("category"), dict) and isinstance(attrs.get("type"), dict)):
        return None
    slicer = attrs.get("slicer") if isinstance(attrs.get("slicer"), dict) else {}

    def code(key: str) -> str:
        c = attrs.get(key)
        if not isinstance(c, dict):
            return "^^"
        return "^".join(
            str(c.get(k, "")).replace("~", "-").replace("|", "/")
            for k in ("scheme", "value", "meaning")
        )

    return "~".join(
        [
            str(slicer.get("terminology_context") or _DEFAULT_CONTEXT),
            code("category"),
            code("type"),
            code("type_modifier"),
            str(slicer.get("anatomic_context") or _DEFAULT_ANATOMIC),
            code("region"),
            code("region_modifier"),
        ]
    )


# -- reading --------------------------------------------------------------------------------
def _field_error(path: object, field: str, what: str) -> MaskValidationError:
    return MaskValidationError(f"{path}: NRRD field {field!r}: {what}")


def _geometry(path: object, header: dict, layered: bool) -> np.ndarray:
    space = str(header.get("space", "")).strip().lower()
    if space not in NRRD_SPACES:
        raise _field_error(
            path,
            "space",
            f"{header.get('space')!r} is not a patient space medmask knows "
            f"({', '.join(k for k in NRRD_SPACES if len(k) > 3)}); re-save it in LPS or RAS",
        )
    flip = np.asarray(NRRD_SPACES[space])
    dirs = np.asarray(header.get("space directions"), dtype=np.float64)
    if dirs.ndim != 2 or dirs.shape[1] != 3:
        raise _field_error(path, "space directions", "missing or not three-vector per axis")
    if layered:
        dirs = dirs[1:]
    if dirs.shape[0] != 3 or not np.all(np.isfinite(dirs)):
        raise _field_error(path, "space directions", "needs one finite vector per spatial axis")
    origin = np.asarray(header.get("space origin", [0.0, 0.0, 0.0]), dtype=np.float64)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise _field_error(path, "space origin", "needs three finite numbers")
    m = np.eye(4)
    m[:3, :3] = (dirs * flip).T  # column k: the world step of array axis k
    m[:3, 3] = origin * flip
    return m


def _segments(path: object, header: dict) -> list[dict]:
    fields: dict[int, dict[str, str]] = {}
    for key, value in header.items():
        if not key.startswith("Segment") or key.startswith("Segmentation"):
            continue
        num, _, name = key[len("Segment") :].partition("_")
        if not num.isdigit() or not name:
            continue
        if int(num) >= MAX_SEGMENTS:
            raise _field_error(path, key, f"more than {MAX_SEGMENTS} segments")
        fields.setdefault(int(num), {})[name] = str(value)
    return [fields[k] for k in sorted(fields)]


def _ints(path: object, key: str, text: str, n: int) -> list[int]:
    try:
        vals = [int(float(v)) for v in text.split()]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise _field_error(path, key, f"expected {n} integers, got {text!r}")
    return vals


def read_seg_nrrd(
    path: str | os.PathLike,
) -> tuple[Space, list[MaskRecord], dict[str, str]]:
    """Read a Slicer ``.seg.nrrd`` as mask records.

    Args:
        path: The file (3-D or 4-D layered).

    Returns:
        ``(space, records, renamed)``: the ``(z, y, x)`` LPS space, one record per
        segment in file order (empty segments included), and ``{new name: name in the
        file}`` for duplicate or empty names made unique (``name (2)``, ...).

    Raises:
        MaskValidationError: Not an NRRD, unknown ``space`` or ``kinds``, bad or missing
            geometry, a header declaring more than :data:`~medmask.conversions.common.MAX_VOXELS`
            voxels, a segment whose ``Layer``/``LabelValue`` is out of range, or data that
            does not match the header.
    """
    nrrd = _nrrd()
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            header = nrrd.read_header(fh)
        except Exception as exc:  # noqa: BLE001 - pynrrd raises its own and ValueError
            raise MaskValidationError(f"{path}: not a readable NRRD header ({exc})") from None
        kinds = [str(k).lower() for k in header.get("kinds", [])]
        dim = int(header.get("dimension", 0))
        sizes = [int(s) for s in np.atleast_1d(header.get("sizes", []))]
        if kinds == ["domain"] * 3 and dim == 3:
            layered = False
        elif (
            kinds
            in (["list", "domain", "domain", "domain"], ["vector", "domain", "domain", "domain"])
            and dim == 4
        ):
            layered = True
        else:
            raise _field_error(
                path,
                "kinds",
                f"{' '.join(kinds) or 'missing'} (dimension {dim}); a Slicer segmentation has "
                "'domain domain domain' or 'list domain domain domain'",
            )
        if len(sizes) != dim or any(s <= 0 for s in sizes):
            raise _field_error(path, "sizes", f"{sizes} for dimension {dim}")
        total = int(np.prod(np.asarray(sizes, dtype=object)))
        if total > MAX_VOXELS:
            raise _field_error(
                path, "sizes", f"{sizes} is {total:,} voxels (limit {MAX_VOXELS:,}); refused"
            )
        m = _geometry(path, header, layered)
        segs = _segments(path, header)
        try:
            data = nrrd.read_data(header, fh, str(path), index_order="C")
        except Exception as exc:  # noqa: BLE001
            raise MaskValidationError(
                f"{path}: cannot read the voxel data ({type(exc).__name__}: {exc})"
            ) from None
    if data.dtype.kind not in "uib":
        raise _field_error(
            path, "type", f"{data.dtype} voxels; a segmentation holds integer labels"
        )
    if data.dtype.kind == "i" and data.size and int(data.min()) < 0:
        raise _field_error(
            path, "type", f"negative voxel values (min {int(data.min())}); labels are >= 0"
        )
    if not layered:
        data = data[..., None]
    nx, ny, nz = sizes[-3:]
    if data.shape[:3] != (nz, ny, nx):
        raise MaskValidationError(f"{path}: data shape {data.shape} does not match sizes {sizes}")
    space = lps_to_space(m, (nx, ny, nz))
    n_layers = data.shape[3]
    names, changed = unique_names([f.get("Name", "") for f in segs])
    renamed = {names[k]: old for k, old in changed.items()}
    counts = [None] * n_layers
    records = []
    for k, f in enumerate(segs):
        key = f"Segment{k}_"
        # files of Slicer <= 4.10 have neither Layer nor LabelValue: one segment per
        # layer (4-D) with voxel value 1
        legacy = "Layer" not in f and "LabelValue" not in f
        default_layer = str(k) if legacy and layered else "0"
        layer = _ints(path, key + "Layer", f.get("Layer", default_layer), 1)[0]
        if not 0 <= layer < n_layers:
            raise _field_error(path, key + "Layer", f"{layer} but the file has {n_layers} layer(s)")
        value = _ints(path, key + "LabelValue", f.get("LabelValue", "1"), 1)[0]
        lab = data[..., layer]
        if value <= 0:
            arr = np.zeros(lab.shape, bool)
        else:
            arr = _segment_voxels(lab, value, f.get("Extent"), counts, layer)
        attrs = _segment_attrs(f, value)
        records.append(MaskRecord(names[k], arr, attrs))
    return space, records, renamed


def _segment_voxels(
    lab: np.ndarray, value: int, extent: str | None, counts: list, layer: int
) -> np.ndarray:
    """``lab == value``, comparing only inside the segment's Extent when the Extent holds
    every voxel of that value (checked against one bincount per layer)."""
    arr = np.zeros(lab.shape, bool)
    if counts[layer] is None:
        counts[layer] = (
            np.bincount(lab.ravel().astype(np.int64, copy=False))
            if lab.size
            else np.zeros(1, np.int64)
        )
    total = int(counts[layer][value]) if value < counts[layer].size else 0
    if total == 0:
        return arr
    box = None
    if extent:
        try:
            e = [int(float(v)) for v in extent.split()]
        except ValueError:
            e = []
        if len(e) == 6 and e[0] <= e[1] and e[2] <= e[3] and e[4] <= e[5]:
            nz, ny, nx = lab.shape
            x0, x1, y0, y1, z0, z1 = (
                max(0, e[0]),
                min(nx - 1, e[1]),
                max(0, e[2]),
                min(ny - 1, e[3]),
                max(0, e[4]),
                min(nz - 1, e[5]),
            )
            if x0 <= x1 and y0 <= y1 and z0 <= z1:
                box = (slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1))
    if box is not None:
        sub = lab[box] == value
        if int(np.count_nonzero(sub)) == total:
            arr[box] = sub
            return arr
    np.equal(lab, value, out=arr)
    return arr


def _segment_attrs(f: dict[str, str], value: int) -> dict:
    attrs: dict = {"label_value": int(value)}
    color = f.get("Color", "").split()
    try:
        rgb = [float(c) for c in color]
    except ValueError:
        rgb = []
    if len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb):
        attrs["color"] = [round(c * 255) for c in rgb]
    slicer: dict = {}
    if f.get("ID"):
        slicer["id"] = f["ID"]
    tags: dict[str, str] = {}
    for item in f.get("Tags", "").split("|"):
        if not item:
            continue
        k, _, v = item.partition(":")
        if k == "TerminologyEntry":
            coded, contexts = parse_terminology(v)
            attrs.update(coded)
            slicer.update({k2: v2 for k2, v2 in contexts.items() if v2})
        else:
            tags[k] = v
    if tags:
        slicer["tags"] = tags
    if slicer:
        attrs["slicer"] = slicer
    return attrs


# -- writing --------------------------------------------------------------------------------
def _bbox_xyz(arr: np.ndarray) -> list[int]:
    if not arr.any():
        return [0, -1, 0, -1, 0, -1]
    out = []
    for axis in (2, 1, 0):  # x, y, z of a (z, y, x) array
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(arr.any(axis=other))
        out += [int(nz[0]), int(nz[-1])]
    return out


def write_seg_nrrd(
    records: Iterable[MaskRecord],
    space: Space,
    out: str | os.PathLike,
    *,
    compression_level: int = 1,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[str, tuple[int, int]]:
    """Write masks as a Slicer ``.seg.nrrd`` (atomically).

    Overlapping masks go into separate layers (a 4-D file); without overlaps the file is
    3-D. Label values come from the masks' ``label_value`` attribute where it is free in
    the layer, else the next free value; colours, terminology, segment IDs and other
    Slicer tags are written from the attributes (a fixed palette and no terminology
    where there are none).

    Args:
        records: The masks (bool ``(z, y, x)`` arrays on ``space``).
        space: Their grid.
        out: The ``.seg.nrrd`` to write.
        compression_level: gzip level (1 fast ... 9 small).
        progress: Optional wrapper of the record iterable.

    Returns:
        ``{name: (layer, label value)}``.

    Raises:
        MaskValidationError: The name of ``out`` is not ``.seg.nrrd``, or no masks.
    """
    from ..io.atomic import write_atomic
    from ..io.names import expect_name

    nrrd = _nrrd()
    expect_name(out, "seg.nrrd", what="Slicer segmentation")
    shape = tuple(int(s) for s in space.shape)
    layers: list[np.ndarray] = []  # label arrays (z, y, x), uint16 while building
    used: list[set[int]] = []
    placed: dict[str, tuple[int, int]] = {}
    header_segments = []  # (name, attrs, layer, value, extent, k): no arrays kept
    ids: set[str] = set()
    for k, rec in enumerate(progress(records) if progress else records):
        arr = rec.array
        if arr.dtype != np.bool_:
            arr = arr != 0
        if arr.shape != shape:
            raise MaskValidationError(
                f"mask {rec.name!r}: shape {arr.shape} is not the grid {shape}"
            )
        ext = _bbox_xyz(arr)
        box = (
            slice(ext[4], ext[5] + 1),
            slice(ext[2], ext[3] + 1),
            slice(ext[0], ext[1] + 1),
        )
        crop = arr[box]
        layer = None
        for i, lab in enumerate(layers):
            if not np.any(lab[box][crop]):
                layer = i
                break
        if layer is None:
            layers.append(np.zeros(shape, np.uint16))
            used.append(set())
            layer = len(layers) - 1
        want = rec.attrs.get("label_value")
        if isinstance(want, int) and 0 < want < 65536 and want not in used[layer]:
            value = want
        else:
            value = 1
            while value in used[layer]:
                value += 1
        used[layer].add(value)
        view = layers[layer][box]
        view[crop] = value
        placed[rec.name] = (layer, value)
        header_segments.append((rec.name, rec.attrs, layer, value, ext, k))
    if not header_segments:
        raise MaskValidationError(f"{out}: no masks to write")
    top = max(max(u) for u in used)
    dtype = np.uint8 if top < 256 else np.uint16
    if len(layers) == 1:
        data = layers[0].astype(dtype)
        kinds = ["domain", "domain", "domain"]
    else:
        data = np.stack([lab.astype(dtype) for lab in layers], axis=-1)
        kinds = ["list", "domain", "domain", "domain"]
    m = lps_matrix(space)
    dirs = m[:3, :3].T  # one row per array axis (x, y, z)
    if len(layers) > 1:
        dirs = np.vstack([[np.nan, np.nan, np.nan], dirs])
    header: dict = {
        "type": "unsigned char" if dtype == np.uint8 else "unsigned short",
        "dimension": data.ndim,
        "space": "left-posterior-superior",
        "kinds": kinds,
        "space directions": dirs,
        "space origin": m[:3, 3],
        "encoding": "gzip",
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for j, (name, a, layer, value, ext, k) in enumerate(header_segments):
        slicer = a.get("slicer") if isinstance(a.get("slicer"), dict) else {}
        sid = str(slicer.get("id") or f"Segment_{k + 1}")
        while sid in ids:
            sid += "_"
        ids.add(sid)
        color = a.get("color") if isinstance(a.get("color"), list) else default_color(k)
        p = f"Segment{j}_"
        tags = dict(slicer.get("tags") or {})
        tags.setdefault("Segmentation.Status", "inprogress")
        term = terminology_string(a)
        tag_text = "".join(
            f"{t}:{' '.join(str(v).splitlines())}|"
            for t, v in tags.items()
            if t != "TerminologyEntry"
        )
        if term:
            tag_text += f"TerminologyEntry:{term}|"
        header[p + "Color"] = " ".join(f"{max(0, min(255, int(c))) / 255:.6g}" for c in color[:3])
        header[p + "ColorAutoGenerated"] = "0" if isinstance(a.get("color"), list) else "1"
        header[p + "Extent"] = " ".join(map(str, ext))
        header[p + "ID"] = sid
        header[p + "LabelValue"] = str(value)
        header[p + "Layer"] = str(layer)
        header[p + "Name"] = " ".join(name.splitlines())
        header[p + "NameAutoGenerated"] = "0"
        header[p + "Tags"] = tag_text
    out = Path(out)

    def write(fh) -> None:
        nrrd.write(fh, data, header, index_order="C", compression_level=compression_level)

    write_atomic(out, write)
    return placed
