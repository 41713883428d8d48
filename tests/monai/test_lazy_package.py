"""``medmask_monai`` imports a public name's module when the name is first used: the patch
loader (and the DataLoader workers spawned for it) never import MONAI, the MONAI transforms
still come with it, and every public name resolves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

from patch_support import box_of, make_cases, window  # noqa: E402

import medmask_monai  # noqa: E402


def _modules_after(code: str) -> list[str]:
    """``sys.modules`` of a fresh interpreter after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_every_public_name_resolves_to_its_module():
    for name in medmask_monai.__all__:
        obj = getattr(medmask_monai, name)
        assert obj.__name__ == name
        assert obj.__module__.startswith("medmask_monai.")
    assert set(medmask_monai.__all__) <= set(dir(medmask_monai))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        medmask_monai.Nope  # noqa: B018


def test_patch_loader_does_not_import_monai():
    mods = _modules_after("from medmask_monai import PatchDataset")
    assert "medmask_monai.patches" in mods
    assert not [m for m in mods if m == "monai" or m.startswith("monai.")]
    mods = _modules_after("from medmask_monai import LoadMaskd")
    assert "monai" in mods and "medmask_monai.transforms" in mods


def test_spawned_patch_workers_run_without_monai(tmp_path):
    """A process that only trains on patches never imports MONAI, and its spawn-context
    workers (which import what unpickling the dataset needs) give patches equal to the
    truth."""
    case = make_cases(tmp_path, n=1)[0]
    script = f"""
import json, sys, torch
from medmask_monai import PatchDataset
ds = PatchDataset([({str(case.nii)!r}, {str(case.archive)!r})], (8, 8, 8), samples_per_case=4)
loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1,
                                     multiprocessing_context="spawn")
items = [(b["centre"].tolist(), b["label"][0].numpy().tolist()) for b in loader]
print(json.dumps([items, "monai" in sys.modules]))
"""
    out = (
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    items, monai_loaded = json.loads(out)
    assert monai_loaded is False
    assert len(items) == 4
    truth = case.label_map()
    for centre, label in items:
        np.testing.assert_array_equal(np.array(label), window(truth, box_of(centre, (8, 8, 8))))
