"""The exception of :mod:`medmask.schemes`."""

from __future__ import annotations

from ..errors import MaskValidationError

__all__ = ["VocabularyError"]


class VocabularyError(MaskValidationError):
    """A class map, synonym table, derived class or label scheme is not acceptable, or a
    name is unknown to the vocabulary.

    A :class:`~medmask.errors.MaskValidationError` (so also a ``ValueError``): raised
    when a vocabulary or scheme is built (a duplicate label number, two synonyms giving
    one name two classes, a derived class with unknown parts or in a cycle, two classes of
    a scheme that overlap) and when a lookup fails (the message lists close matches).
    """
