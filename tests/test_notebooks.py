"""The notebooks match their sources and run top to bottom (quick settings).

Each notebook is executed in a fresh kernel, in a temporary folder (files it
writes do not land in the repository), with ``BAYESNMF_QUICK=1`` so that it
uses small numbers of restarts, iterations and draws. The kernel shares the
test suite's JAX compilation cache.
"""

import importlib.util
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: Seconds one notebook may take, all its cells together. With quick settings
#: each takes 5-35 s on two cores with a warm JAX cache, up to about 70 s cold
#: on a busy machine; the margin is for a slower one.
NOTEBOOK_TIMEOUT = int(os.environ.get("BAYESNMF_NOTEBOOK_TIMEOUT", "180"))

nbformat = pytest.importorskip(
    "nbformat", reason="nbformat is not installed (pip install -e '.[test]')")
nbclient = pytest.importorskip(
    "nbclient", reason="nbclient is not installed (pip install -e '.[test]')")


def _builder():
    spec = importlib.util.spec_from_file_location(
        "build_notebooks", ROOT / "notebooks" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_source_has_a_notebook():
    sources = {p.stem for p in (ROOT / "notebooks" / "src").glob("*.py")}
    assert sources == {p.stem for p in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_source_and_has_no_outputs(path):
    build = _builder()
    source = ROOT / "notebooks" / "src" / f"{path.stem}.py"
    assert path.read_text(encoding="utf-8") == build.render(source), (
        f"{path.name} is stale: run notebooks/build_notebooks.py")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESNMF_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    nb = nbformat.read(path, as_version=4)

    # One deadline for the whole notebook: each cell may use what is left.
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=NOTEBOOK_TIMEOUT,
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors
