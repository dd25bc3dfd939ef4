"""Starting `sisr` is cheap: `sisr --help` and `import sisr` import no torch; the library's names load on use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sisr

HEAVY = ("torch", "numpy", "PIL", "safetensors")


def imported_by(code: str) -> set[str]:
    """The top-level packages imported by `code` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint('MODULES', *sorted({{name.split('.')[0] for name in sys.modules}}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


@pytest.mark.parametrize("argv", [["--help"], ["upscale", "--help"], ["train", "--help"], ["--version"]])
def test_help_imports_no_torch(argv):
    code = f"from sisr.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    modules = imported_by(code)
    assert "sisr" in modules
    assert not modules & set(HEAVY)


def test_importing_sisr_imports_no_torch():
    modules = imported_by("import sisr\nsisr.__version__\nsisr.SisrError")
    assert not modules & set(HEAVY)


def test_a_public_name_imports_what_it_needs():
    assert "torch" in imported_by("import sisr\nsisr.create_model")


@pytest.mark.parametrize("name", sorted(set(sisr.__all__) - {"__version__"}))
def test_every_public_name_resolves(name):
    assert getattr(sisr, name) is not None
    assert name in dir(sisr)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'resolve_model'"):
        sisr.resolve_model  # gone: load_model takes every --model name
