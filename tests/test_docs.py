"""The documentation site builds without a warning (``mkdocs build --strict``)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed; install the docs extra: pip install -e '.[docs]'",
)


@needs_mkdocs
def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    # Material for MkDocs prints a banner about MkDocs 2.0 unless told not to.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    warnings = [line for line in log.splitlines() if re.match(r"\s*WARNING\b", line)]
    assert not warnings, "\n".join(warnings)

    # The API pages are generated from the docstrings.
    api = (site / "api" / "fitting" / "index.html").read_text(encoding="utf-8")
    assert "fit_map" in api and "n_restarts" in api
    # The calibration results are included in the uncertainty page.
    assert "total intensity" in (site / "uncertainty" / "index.html").read_text(
        encoding="utf-8")
    assert (site / "images" / "breast21-signatures.png").exists()


def test_readme_and_docs_show_the_figure():
    image = ROOT / "docs" / "images" / "breast21-signatures.png"
    assert image.stat().st_size > 10_000
    assert "docs/images/breast21-signatures.png" in (ROOT / "README.md").read_text(
        encoding="utf-8")
    assert "images/breast21-signatures.png" in (ROOT / "docs" / "index.md").read_text(
        encoding="utf-8")


def test_griffe_extension_rewrites_rst():
    pytest.importorskip("griffe", reason="griffe comes with the docs extra")
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from griffe_rst import convert
    finally:
        sys.path.remove(str(ROOT / "docs"))
    text = (":func:`~bayesnmf.fit_map` and :class:`bayesnmf.NMFData`, "
            ":math:`\\lambda_k`.\n\n.. math::\n\n    a = b\n\nend")
    assert convert(text) == (
        "`fit_map` and `bayesnmf.NMFData`, $\\lambda_k$.\n\n$$\na = b\n$$\n\nend")
