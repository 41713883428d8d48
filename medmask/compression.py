"""The zstd settings medmask writes with: a writer's choice, which readers never depend on.

Every blob and index segment is an ordinary zstd frame, and ``docs/format.md`` leaves the
compression parameters to the writer. They are chosen here, once, by measurement:

* boolean masks (the bulk of every archive): level 19's parameters for the payload's size,
  the search capped on large payloads (:func:`bool_mask_params`,
  ``benchmarks/study_zstd_params.py``);
* multi-label arrays: :data:`LABEL_LEVEL`;
* index segments (written at every commit): :data:`INDEX_LEVEL`.
"""

from __future__ import annotations

import zstandard

__all__ = [
    "bool_mask_params",
    "BOOL_SEARCH_LOG",
    "BOOL_TARGET_LENGTH",
    "BOOL_CAP_FROM",
    "LABEL_LEVEL",
    "INDEX_LEVEL",
]

#: Level 19's search, capped for the payloads of large boolean masks
#: (:func:`bool_mask_params`): at most ``2**BOOL_SEARCH_LOG`` candidates per position,
#: matches sought up to ``BOOL_TARGET_LENGTH`` bytes, for payloads of at least
#: ``BOOL_CAP_FROM`` bytes. Chosen by ``benchmarks/study_zstd_params.py``.
BOOL_SEARCH_LOG = 2
BOOL_TARGET_LENGTH = 128
BOOL_CAP_FROM = 32 * 1024


def bool_mask_params(
    source_size: int,
    level: int = 19,
    *,
    search_log: int | None = BOOL_SEARCH_LOG,
    target_length: int | None = BOOL_TARGET_LENGTH,
    cap_from: int = BOOL_CAP_FROM,
) -> zstandard.ZstdCompressionParameters:
    """The zstd parameters a boolean mask's payload is compressed with.

    zstd's parameters for ``level`` and the payload's size; from ``cap_from`` bytes on, its
    search capped. A large bit-packed mask is long runs of identical rows, on which level
    19's deep search (``btultra2``, 2**8 candidates a position, matches up to 256 bytes) costs
    most of the time of packing a case for ~1% of its size; small payloads are cheap at any
    setting and keep the level's own (``benchmarks/study_zstd_params.py``). The frame is an
    ordinary zstd frame: readers do not depend on these parameters.

    Args:
        source_size: The payload's bytes (zstd sizes its window and tables to it).
        level: The zstd level whose parameters are the base.
        search_log: At most this ``search_log`` (``None``: the level's own).
        target_length: At most this ``target_length`` (``None``: the level's own).
        cap_from: Payloads smaller than this keep the level's parameters.

    Returns:
        Parameters for :class:`zstandard.ZstdCompressor` (content size written).
    """
    p = zstandard.ZstdCompressionParameters.from_level(level, source_size=max(1, source_size))
    capped = source_size >= cap_from
    return zstandard.ZstdCompressionParameters(
        window_log=p.window_log,
        chain_log=p.chain_log,
        hash_log=p.hash_log,
        search_log=(
            min(p.search_log, search_log) if capped and search_log is not None else p.search_log
        ),
        min_match=p.min_match,
        target_length=(
            min(p.target_length, target_length)
            if capped and target_length is not None
            else p.target_length
        ),
        strategy=p.strategy,
        write_content_size=True,
    )


#: zstd level of multi-label arrays (bigger than masks, and slower to compress).
LABEL_LEVEL = 9

#: zstd level of index segments: level 19 took 4x the time of 15 for 0.6% of an index of
#: 117 masks (14 ms against 3.3 ms for its 30 kB of JSON), spent at every commit.
INDEX_LEVEL = 15
