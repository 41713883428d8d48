"""Upward calls: methods of a lower layer whose work a higher layer does.

``SegmentationMask.save``, ``SegmentationMask.load`` and ``SegmentationMask._repr_png_``
belong to the object model, but saving and loading are the storage layer's job and
notebook pictures the ``viz`` layer's; ``MaskArchive._repr_html_`` (storage) is drawn by
``viz`` too. The lower class declares the method (its signature and docstring stay where
users look for them) and calls :func:`upcall`; the package root, ``medmask/__init__.py``,
which sits above every layer, plugs each implementation in once with :func:`provide` when
``medmask`` is imported (Python imports it before any of its modules). So no module
imports a layer above its own: the import arrows stay one-way (``docs/architecture.md``).

Example:
    >>> class Low:
    ...     def show(self) -> str:
    ...         return upcall(Low, "show")(self)
    >>> provide(Low, show=lambda obj: "drawn above")
    >>> Low().show()
    'drawn above'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["provide", "upcall"]

_TABLE: dict[tuple[type, str], Callable[..., Any]] = {}


def provide(owner: type, **implementations: Callable[..., Any]) -> None:
    """Plug in the implementations of ``owner``'s upward calls (by method name).

    Args:
        owner: The lower layer's class.
        **implementations: ``name=function``; the function takes the method's arguments
            (the instance, or the class for a classmethod, first).
    """
    for name, function in implementations.items():
        _TABLE[owner, name] = function


def upcall(owner: type, name: str) -> Callable[..., Any]:
    """The implementation of ``owner``'s upward call ``name``.

    Raises:
        NotImplementedError: Nothing was plugged in (``medmask`` was not imported whole).
    """
    try:
        return _TABLE[owner, name]
    except KeyError:
        raise NotImplementedError(
            f"{owner.__name__}.{name} is implemented by a higher layer that was not plugged "
            "in; import medmask (its __init__ provides it)"
        ) from None
