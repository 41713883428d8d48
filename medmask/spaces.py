"""Geometry helpers around :class:`spacetransformer.Space`.

Conventions (the same as medmask 0.1.x):

* In memory an array is ``(z, y, x)`` and its ``Space`` is kept in the same
  ``(z, y, x)`` order (``Space.reverse_axis_order()`` of the usual ``(x, y, z)``
  space), so that ``space.shape == array.shape``.
* On disk the space JSON is written in ``(x, y, z)`` order.
"""

from __future__ import annotations

import json
import math

import numpy as np
from spacetransformer import Space

from .errors import CorruptFileError, MaskValidationError, SpaceMismatchError

__all__ = [
    "Space",
    "ZYXSpace",
    "zyx_of",
    "default_space",
    "space_to_disk_json",
    "space_from_disk_json",
    "spaces_match",
    "check_same_grid",
    "grid_differences",
    "vector_text",
    "direction_text",
    "direction_difference",
    "describe_space",
    "GRID_ATOL",
]

#: Absolute tolerance used when two grids are compared: millimetres for origin and
#: spacing, unitless for direction cosines. Float32 rounding in NIfTI sforms moves
#: affines by ~1e-4; a real shift or rotation is far larger.
GRID_ATOL = 1e-3


class ZYXSpace(Space):
    """A :class:`spacetransformer.Space` in medmask's in-memory ``(z, y, x)`` order.

    The same fields and methods as ``Space`` (``.reverse_axis_order()`` gives the usual
    ``(x, y, z)`` space); only its ``repr`` differs, naming the axes in the order they are
    stored: ``Space``'s field ``x_orientation`` holds the direction of array axis 0, which
    is the z axis here. It compares equal to any ``Space`` with the same fields.
    """

    __hash__ = None  # type: ignore[assignment] - mutable, like Space

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Space):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    def __repr__(self) -> str:
        def fmt(v: object) -> str:
            return "(" + ", ".join(f"{float(x):.6g}" for x in v) + ")"

        return (
            "Space in (z, y, x) order (medmask's array order; .reverse_axis_order() gives "
            f"(x, y, z)):\n  shape (z, y, x):   {tuple(int(s) for s in self.shape)}\n"
            f"  spacing (z, y, x): {fmt(self.spacing)}\n"
            f"  origin (LPS mm):   {fmt(self.origin)}\n"
            f"  z axis direction:  {fmt(self.x_orientation)}  (field x_orientation: axis 0)\n"
            f"  y axis direction:  {fmt(self.y_orientation)}  (field y_orientation: axis 1)\n"
            f"  x axis direction:  {fmt(self.z_orientation)}  (field z_orientation: axis 2)"
        )


_FIELDS = ("shape", "origin", "spacing", "x_orientation", "y_orientation", "z_orientation")


def zyx_of(xyz: Space) -> ZYXSpace:
    """The ``(z, y, x)`` space of an ``(x, y, z)`` one, as a :class:`ZYXSpace` (the same
    fields as ``xyz.reverse_axis_order()``, which returns a plain ``Space``)."""
    return ZYXSpace(
        shape=tuple(xyz.shape[::-1]),
        origin=tuple(xyz.origin),
        spacing=tuple(xyz.spacing[::-1]),
        x_orientation=tuple(xyz.z_orientation),
        y_orientation=tuple(xyz.y_orientation),
        z_orientation=tuple(xyz.x_orientation),
    )


def default_space(shape_zyx: tuple[int, ...]) -> Space:
    """The default ``(z, y, x)`` space of an array: unit spacing, zero origin, identity axes.

    On disk it is the identity ``(x, y, z)`` space.
    """
    return zyx_of(Space(shape=tuple(int(s) for s in shape_zyx[::-1])))


def space_to_disk_json(space_zyx: Space) -> bytes:
    """Serialise an in-memory ``(z, y, x)`` space as the on-disk ``(x, y, z)`` JSON (UTF-8)."""
    return space_zyx.reverse_axis_order().to_json().encode("utf-8")


def space_from_disk_json(raw: bytes, *, path: object = None) -> Space:
    """Parse the on-disk ``(x, y, z)`` space JSON and return the ``(z, y, x)`` space.

    Raises:
        CorruptFileError: The bytes are not valid UTF-8 JSON describing a valid space.
    """
    try:
        obj = json.loads(bytes(raw).decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        expected = {"shape", "origin", "spacing", "x_orientation", "y_orientation", "z_orientation"}
        unknown = set(obj) - expected
        if unknown or "shape" not in obj:
            raise ValueError(f"unexpected keys {sorted(unknown)}" if unknown else "no 'shape'")
        for key, val in obj.items():
            if not (isinstance(val, list) and len(val) == 3):
                raise ValueError(f"{key!r} must be a list of 3 numbers")
            for v in val:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ValueError(f"{key!r} holds a non-finite or non-numeric value {v!r}")
        shape = obj["shape"]
        if not all(isinstance(s, int) and 0 < s < 2**31 for s in shape):
            raise ValueError(f"shape {shape} must be three positive integers")
        return _zyx_space_of(obj)
    except CorruptFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - spacetransformer raises its own types
        raise CorruptFileError(f"invalid space JSON ({exc})", path=path, field="space") from exc


#: The on-disk ``(x, y, z)`` fields a missing key stands for (spacetransformer's defaults).
_DISK_DEFAULTS = {
    "origin": [0, 0, 0],
    "spacing": [1, 1, 1],
    "x_orientation": [1, 0, 0],
    "y_orientation": [0, 1, 0],
    "z_orientation": [0, 0, 1],
}


def _zyx_space_of(obj: dict) -> Space:
    """The ``(z, y, x)`` space of an on-disk ``(x, y, z)`` space object, built (and validated
    by spacetransformer) once: the same as ``Space.from_dict(obj).reverse_axis_order()``,
    which builds and validates two spaces, at half the cost of every archive open."""
    d = {**_DISK_DEFAULTS, **obj}
    return ZYXSpace(
        shape=tuple(d["shape"][::-1]),
        origin=tuple(d["origin"]),
        spacing=tuple(d["spacing"][::-1]),
        x_orientation=tuple(d["z_orientation"]),
        y_orientation=tuple(d["y_orientation"]),
        z_orientation=tuple(d["x_orientation"]),
    )


def spaces_match(a: Space, b: Space, atol: float = GRID_ATOL) -> bool:
    """Whether two spaces describe the same voxel grid, within ``atol``.

    Shapes must be equal; origin, spacing and orientation are compared with an
    absolute tolerance (default :data:`GRID_ATOL`).
    """
    if a is b:
        return True
    if tuple(a.shape) != tuple(b.shape):
        return False
    for field in ("origin", "spacing", "x_orientation", "y_orientation", "z_orientation"):
        # plain floats: this runs for every mask added to an archive (numpy's allclose
        # costs ~30 us per call on 3-vectors); a NaN never matches
        pairs = zip(getattr(a, field), getattr(b, field), strict=True)
        if not all(abs(float(u) - float(v)) <= atol for u, v in pairs):
            return False
    return True


def describe_space(space: Space) -> str:
    """A one-line summary of a ``(z, y, x)`` space for messages."""

    def fmt(v: tuple[float, ...]) -> str:
        return "(" + ", ".join(f"{float(x):.4g}" for x in v) + ")"

    return (
        f"shape(z,y,x)={tuple(int(s) for s in space.shape)} spacing={fmt(space.spacing)} "
        f"origin={fmt(space.origin)} axes=[{fmt(space.x_orientation)}, "
        f"{fmt(space.y_orientation)}, {fmt(space.z_orientation)}]"
    )


def vector_text(v: object) -> str:
    """``(a, b, c)`` with 6 significant digits: how messages print a grid's vectors."""
    return "(" + ", ".join(f"{float(x):.6g}" for x in v) + ")"  # type: ignore[union-attr]


_AXES = ("x_orientation", "y_orientation", "z_orientation")


def direction_text(space: Space) -> str:
    """The world vectors of a grid's x, y and z axes, as messages print them."""
    return " ".join(vector_text(getattr(space, f)) for f in _AXES)


def direction_difference(a: Space, b: Space) -> float:
    """The largest difference between the direction cosines of two grids."""
    return max(float(np.abs(np.subtract(getattr(a, f), getattr(b, f))).max()) for f in _AXES)


def grid_differences(expected: Space, got: Space, atol: float = GRID_ATOL) -> list[str]:
    """What differs between two ``(z, y, x)`` grids, for messages, with both values.

    Args:
        expected: The reference space.
        got: The space compared with it.
        atol: Tolerance (see :func:`spaces_match`).

    Returns:
        One phrase per differing part, e.g. ``"spacing (z, y, x) (2.5, 0.8, 0.8) instead of
        (2, 0.8, 0.8) (by 0.5 mm)"`` (the origin is a world point, the direction the
        world vectors of the x, y and z axes); empty when the grids match within ``atol``.
    """
    if tuple(int(s) for s in expected.shape) != tuple(int(s) for s in got.shape):
        return [
            f"shape (z, y, x) {tuple(int(s) for s in got.shape)} instead of "
            f"{tuple(int(s) for s in expected.shape)}"
        ]
    out = []
    for field, words in (("spacing", "spacing (z, y, x)"), ("origin", "origin (LPS world)")):
        a, b = getattr(expected, field), getattr(got, field)
        d = float(np.abs(np.subtract(a, b)).max())
        if d > atol:
            out.append(f"{words} {vector_text(b)} instead of {vector_text(a)} (by {d:.3g} mm)")
    rot = direction_difference(expected, got)
    if rot > atol:
        out.append(
            f"direction {direction_text(got)} instead of {direction_text(expected)} "
            f"(cosines differ by {rot:.3g})"
        )
    return out


def check_same_grid(expected: Space, got: Space, *, what: str, atol: float = GRID_ATOL) -> None:
    """Raise :class:`SpaceMismatchError` unless ``got`` is the grid ``expected``.

    The message names what differs (shape, spacing, origin, direction) with both values.

    Args:
        expected: The reference space (e.g. the archive's).
        got: The space to check.
        what: Words naming the object checked, for the message (``"mask 'liver'"``).
        atol: Tolerance, see :func:`spaces_match`.

    Raises:
        SpaceMismatchError: The grids differ.
    """
    if not spaces_match(expected, got, atol):
        diffs = grid_differences(expected, got, atol) or ["the grids differ"]
        raise SpaceMismatchError(
            f"{what} is on another grid than expected: {'; '.join(diffs)} (tolerance {atol}); "
            f"its space: {describe_space(got)}; expected: {describe_space(expected)}; "
            "resample it to the archive's grid first"
        )


def coerce_space(space: object, shape_zyx: tuple[int, ...]) -> Space:
    """Validate a user-supplied ``(z, y, x)`` space against an array shape.

    Args:
        space: A ``Space`` or ``None`` (default space of ``shape_zyx``).
        shape_zyx: The array shape.

    Raises:
        MaskValidationError: ``space`` is not a ``Space`` or its shape differs.
    """
    if space is None:
        return default_space(shape_zyx)
    if not isinstance(space, Space):
        raise MaskValidationError(
            f"space must be a spacetransformer.Space in (z, y, x) order, got {type(space).__name__}"
        )
    if tuple(int(s) for s in space.shape) != tuple(int(s) for s in shape_zyx):
        raise MaskValidationError(
            f"space shape {tuple(space.shape)} does not match array shape {tuple(shape_zyx)}; "
            "spaces are (z, y, x) in memory (use space.reverse_axis_order() on an (x, y, z) space)"
        )
    return space
