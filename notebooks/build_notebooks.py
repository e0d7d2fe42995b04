"""Build the notebooks (``NN_name.ipynb``) from their sources in ``src/``.

The sources are Python files in the "percent" format that jupytext and most
editors understand: a line ``# %%`` starts a code cell, ``# %% [markdown]`` a
Markdown cell whose lines are comments, and in code cells a commented magic
such as ``# %matplotlib inline`` becomes the magic itself. The notebooks are
written without outputs; the test suite (``tests/test_notebooks.py``) checks
that they match their sources and executes them.

    .venv/bin/python notebooks/build_notebooks.py          # rewrite every notebook
    .venv/bin/python notebooks/build_notebooks.py --check  # exit 1 if one is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"

_KERNEL = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


_MAGIC = re.compile(r"^# (%[a-z]\w*.*)$")


def _code(lines: list[str]) -> str:
    return "\n".join(_MAGIC.sub(r"\1", line) for line in lines)


def _markdown(lines: list[str]) -> str:
    out = []
    for line in lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.rstrip() == "#":
            out.append("")
        else:
            raise ValueError(f"markdown cell line is not a comment: {line!r}")
    return "\n".join(out)


def parse(text: str) -> nbformat.NotebookNode:
    """A notebook from percent-format source text."""
    cells, kind, lines = [], None, []

    def flush():
        body = _strip_blank(lines)
        if kind is None:
            if body:
                raise ValueError("text before the first '# %%' cell marker")
            return
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(_markdown(body)))
        else:
            cells.append(nbformat.v4.new_code_cell(_code(body)))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind = "markdown" if "[markdown]" in line else "code"
            lines = []
        else:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells, metadata=dict(_KERNEL))
    # Stable cell ids, so that rebuilding an unchanged source changes nothing.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def render(source: Path) -> str:
    """The ``.ipynb`` text of one source file."""
    nb = parse(source.read_text(encoding="utf-8"))
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def targets() -> dict[Path, Path]:
    """Each source and the notebook built from it."""
    return {src: HERE / f"{src.stem}.ipynb" for src in sorted(SOURCES.glob("*.py"))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that every notebook matches its source")
    args = parser.parse_args(argv)
    stale = []
    for src, nb_path in targets().items():
        text = render(src)
        current = nb_path.read_text(encoding="utf-8") if nb_path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(nb_path.name)
        else:
            nb_path.write_text(text, encoding="utf-8")
            print(f"wrote {nb_path.relative_to(HERE.parent)}")
    if stale:
        print("stale notebooks (run notebooks/build_notebooks.py): " + ", ".join(stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
