"""The `sisr.figures` package: its names load on demand, and only comparisons need torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sisr.figures


def test_every_exported_name_resolves_to_its_module():
    for name in sisr.figures.__all__:
        value = getattr(sisr.figures, name)
        assert value.__module__.startswith("sisr.figures."), name
    assert set(sisr.figures.__all__) <= set(dir(sisr.figures))
    with pytest.raises(AttributeError, match="no_such_name"):
        sisr.figures.no_such_name


def test_charts_logs_and_layout_import_no_torch():
    # A fresh interpreter: this one has imported torch long ago.
    code = (
        "import sys; import sisr; before = 'torch' in sys.modules\n"
        "import sisr.figures.charts, sisr.figures.logs, sisr.figures.curves, sisr.figures.crops, "
        "sisr.figures.save, sisr.figures.style, sisr.figures.compare\n"
        "print(before, 'torch' in sys.modules)"
    )
    before, after = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    if before == "True":
        pytest.skip("`import sisr` itself imports torch")
    assert after == "False"
