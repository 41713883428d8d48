"""Every code block of README.md and docs/*.md runs as written (issue 22, item 6).

The conventions (info strings, ``needs=``, promised output) are in :mod:`doc_blocks`; the
files the examples work on in :mod:`doc_sandbox`. A block that cannot run here is skipped
by a test of its own, with the reason; every other block of a document runs, in order, in
one test per document.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from doc_blocks import (
    DOCUMENTS,
    NEEDS,
    REPO,
    RUN,
    SHOWN,
    Block,
    blocks,
    console_steps,
    promised_output,
)
from doc_sandbox import Assets, prepare

pytestmark = pytest.mark.realdata  # every test here reads the sample data

ALL = [b for doc in DOCUMENTS for b in blocks(doc)]
#: The S3 endpoint the docs write; the moto server's stands in for it.
DOC_ENDPOINT = "http://127.0.0.1:9000"
BUCKET = "bucket"


def test_every_block_says_what_it_is():
    """An unmarked block would be neither run nor knowingly skipped."""
    bad = [
        f"{b.where}: info string {b.lang!r}"
        for b in ALL
        if b.lang not in RUN + SHOWN or any(n not in NEEDS for n in b.needs)
    ]
    assert not bad, (
        "mark each block with its language (python/bash/sh/console run; text/json/diff are "
        "shown) and an optional needs=WHAT (see tests/docs/doc_blocks.py): " + "; ".join(bad)
    )
    assert sum(b.runs for b in ALL) >= 30  # the examples are there, and they run


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.runs and b.skip_reason], ids=lambda b: b.where
)
def test_blocks_that_cannot_run_here(block: Block):
    pytest.skip(f"{block.where}: {block.skip_reason}")


@pytest.fixture(scope="session")
def assets(tmp_path_factory, real_case) -> Assets:
    return Assets(tmp_path_factory.mktemp("docassets"), real_case)


def _env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),  # this checkout's medmask, in every subprocess
        "HOME": str(tmp),
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg",
    }
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        if key in os.environ:
            env[key] = os.environ[key]
    return {**env, **extra}


def _shell(block: Block, work: Path, env: dict[str, str], endpoint: str | None) -> None:
    if block.lang != "console":
        body = block.body if endpoint is None else block.body.replace(DOC_ENDPOINT, endpoint)
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, f"{block.where}: exit {r.returncode}\n{r.stderr[-3000:]}"
        return
    for command, shown in console_steps(block.body):
        if endpoint is not None:
            command = command.replace(DOC_ENDPOINT, endpoint)
        r = subprocess.run(
            ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
        said = [ln for ln in shown if ln.startswith("exit status ")]
        if said:  # the block shows the status: it must be that one
            assert r.stdout.splitlines()[-1:] == said[-1:], (block.where, command, r.stderr)
        else:
            assert r.returncode == 0, f"{block.where}: {command}\n{r.stderr[-3000:]}"
        got = (r.stdout + r.stderr).splitlines()
        merged = sorted(got) == sorted(shown)  # stdout and stderr, shown interleaved
        # what ls / info / verify print first is deterministic: it must be what is shown
        if shown and command.startswith(("medmask ls", "medmask info", "medmask verify")):
            assert merged or got[:1] == shown[:1], (block.where, command, got[:1], shown[:1])


def _python(block: Block, namespace: dict) -> None:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(block.body, block.where, "exec"), namespace)
    promised = promised_output(block.body)
    if promised:
        assert buf.getvalue().splitlines() == promised, block.where


@contextlib.contextmanager
def _s3(request, work: Path):
    """A moto S3 server holding ``s3://bucket/packed/`` and ``s3://bucket/one/liver.msk``,
    the endpoint fsspec uses in this process and in subprocesses; yields the endpoint."""
    import fsspec

    from medmask import MaskArchive, save_mask

    server = request.getfixturevalue("s3_server")
    client = server.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    for f in sorted((work / "packed").glob("*.mska")):
        client.put_object(Bucket=BUCKET, Key=f"packed/{f.name}", Body=f.read_bytes())
    with MaskArchive(work / "packed" / "s0000.mska") as ar:
        save_mask(ar["liver"], work / "liver.msk")
    client.put_object(Bucket=BUCKET, Key="one/liver.msk", Body=(work / "liver.msk").read_bytes())
    saved = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {"endpoint_url": server.endpoint}
    try:
        yield server.endpoint
    finally:
        if saved is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = saved


RUNNABLE = [doc for doc in DOCUMENTS if any(b.runs and not b.skip_reason for b in blocks(doc))]


@pytest.mark.parametrize("doc", RUNNABLE)
def test_document_runs(doc, assets, tmp_path, monkeypatch, request):
    work = tmp_path / "work"
    prepare(doc, work, assets)
    monkeypatch.chdir(work)
    todo = [b for b in blocks(doc) if b.runs and not b.skip_reason]
    namespace: dict = {"__name__": "__doc__"}
    with contextlib.ExitStack() as stack:
        endpoint = None
        if any("s3" in b.needs for b in todo):
            endpoint = stack.enter_context(_s3(request, work))
        env = _env(tmp_path, {"FSSPEC_S3_ENDPOINT_URL": endpoint} if endpoint else {})
        for block in todo:
            if block.lang == "python":
                _python(block, namespace)
            else:
                _shell(block, work, env, endpoint)
