"""The format table as documentation: :func:`format_table_markdown` renders the table of
``docs/interop.md`` from :func:`medmask.io.formats.formats` (a test checks that the two
agree). ``python -m medmask.conversions.catalog`` prints it."""

from __future__ import annotations

from ..io.formats import FileFormat, formats

__all__ = ["format_table_markdown"]

_HEADER = (
    "| kind | format | names | extra | `pack` | `unpack` | label map | overlaps | attributes |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
)


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def _row(f: FileFormat) -> str:
    caps = f.capabilities
    names = ", ".join(f"`{s}`" for s in f.suffixes) or ("a folder" if f.folder else "-")
    if caps.tree:
        unpack = f"`unpack-tree -o {f.output_name}`"
    else:
        unpack = f"`-o {f.output_name}`" if caps.unpack else "-"
    cells = [
        f"`{f.kind}`",
        f.title,
        names,
        f"`{f.extra}`" if f.extra else "-",
        _yes(caps.pack),
        unpack,
        _yes(caps.label_map),
        _yes(caps.overlaps),
        ", ".join(caps.attributes) or "-",
    ]
    return "| " + " | ".join(cells) + " |"


def format_table_markdown(*, builtin_only: bool = True) -> str:
    """The format table as a Markdown table, in lookup order.

    Args:
        builtin_only: Leave out formats registered from outside medmask.

    Returns:
        The table's lines, ending with a newline.
    """
    rows = [
        _row(f) for f in formats() if not builtin_only or type(f).__module__.startswith("medmask.")
    ]
    return "\n".join([*_HEADER, *rows]) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(format_table_markdown(), end="")
