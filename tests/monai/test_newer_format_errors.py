"""A medmask file of a newer format version is reported as such by the MONAI loaders,
not as "not a medmask file"."""

from __future__ import annotations

import numpy as np
import pytest
from spacetransformer import Space

from medmask import MaskArchive
from medmask.errors import UnsupportedFormatError

pytest.importorskip("monai")

from medmask_monai import LoadMask  # noqa: E402


def test_newer_major_version_names_the_versions_this_release_reads(tmp_path):
    space = Space(shape=(8, 8, 8)).reverse_axis_order()
    path = tmp_path / "case.mska"
    with MaskArchive(path, "w", space=space) as ar:
        ar.add("liver", np.ones(space.shape, bool))
    raw = bytearray(path.read_bytes())
    raw[4] = 9  # major version 9
    newer = tmp_path / "newer.mska"
    newer.write_bytes(bytes(raw))
    with pytest.raises(UnsupportedFormatError, match="reads versions 1, 2"):
        LoadMask()(str(newer))
