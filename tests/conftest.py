"""Shared fixtures: where the benchmark data beside the project lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# precision="auto" (upscale's default) picks bf16 on CPUs with bf16 instructions; the
# tests compare fp32 results exactly, so they run as on a CPU without them (subprocesses
# inherit this). Tests of the automatic choice set it themselves.
os.environ["SISR_CPU_BF16"] = "0"
# prepare_model times its CPU paths on first use of a network shape (sisr.inference.autotune); the tests
# take the rule's choice instead, so no test's path or log lines depend on timing. Tests of the
# measurement unset it themselves.
os.environ["SISR_AUTOTUNE"] = "0"


def find_shared() -> Path | None:
    """`$SISR_SHARED`, else `../shared` beside the repository, if it holds the data."""
    candidates = [os.environ.get("SISR_SHARED"), REPO.parent / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "data" / "benchmarks").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    shared = find_shared()
    if shared is None:
        pytest.skip("../shared (benchmark sets, MATLAB-made LR images) not found: set SISR_SHARED to its path")
    return shared


@pytest.fixture(scope="session")
def benchmarks_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "benchmarks"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or fills the user's real cache, or finds weights the user happens to have."""
    monkeypatch.setenv("SISR_CACHE", str(tmp_path_factory.getbasetemp() / "sisr-cache"))
    for name in ("SISR_VGG19_WEIGHTS", "SISR_VGG16_WEIGHTS", "SISR_LPIPS_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
