"""benchmarks/bench_patches.py's medmask rows pass the harness's own checks on a small case
(every patch a box of the grid, its labels the truth's, the image read equal to the image
written), for both tasks and every image layout."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("blosc2")
pytest.importorskip("nnunetv2")

from bench_scripts import load_script  # noqa: E402

from medmask.geometry import affine_to_space  # noqa: E402


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory):
    """Two small TotalSegmentator-like cases written by the harness's own ``write_case``."""
    patchcase, bench = load_script("_patchcase"), load_script("bench_patches")
    rng = np.random.default_rng(3)
    shape = (40, 36, 50)
    names = ["a_big", "b_mid", "c_small", "d_empty", "e_overlaps_a"]
    boxes = {
        "a_big": (2, 38, 2, 30, 3, 45),
        "b_mid": (10, 25, 5, 20, 20, 41),
        "c_small": (30, 33, 30, 34, 2, 7),
        "e_overlaps_a": (5, 20, 10, 25, 10, 30),
    }
    crops = {"d_empty": None}
    for name, box in boxes.items():
        crop = rng.random((box[1] - box[0], box[3] - box[2], box[5] - box[4])) < 0.4
        crop[0, 0, 0] = crop[-1, -1, -1] = True
        crops[name] = (crop, box)
    affine = np.diag([-1.5, -1.5, 1.5, 1.0])
    case = patchcase.Case(shape, affine, names, crops, affine_to_space(affine, shape[::-1]))
    work = tmp_path_factory.mktemp("bench")
    organs = ["c_small", "b_mid"]  # non-overlapping, as the harness's organs are
    cases = [
        bench.write_case(work, k, patchcase.variant(case, k), organs, 16, True) for k in range(2)
    ]
    man = {"names": names, "organs": organs, "present": [1, 2, 3, 5], "cases": cases}
    (work / bench.MANIFEST).write_text(json.dumps(man))
    return bench, man


@pytest.mark.parametrize("peer", ["medmask", "medmask-nii", "medmask-coords"])
@pytest.mark.parametrize("task", ["labelmap", "organs"])
def test_the_medmask_rows_pass_the_harness_checks(bench_data, peer, task):
    bench, man = bench_data
    cfg = argparse.Namespace(
        patch=16, workers=1, seed=0, warmup=1, repeat=1, batches=2, check_batches=6
    )
    cfg.names, cfg.present, cfg.organs = man["names"], man["present"], man["organs"]
    run = bench.BUILDERS[peer](task, man["cases"], True, cfg)
    checked = bench.check_patches(run, man, task, cfg.check_batches)
    assert checked["patches"] == 12 and checked["fg_any"] > 0
    assert bench.check_image(peer, man, task) == "image equal"
    assert bench.medmask_single(task, man["cases"], cfg, n=2) > 0
