"""`sisr sample`, and the README's first commands: they can be run again, and say how to replace a file."""

from __future__ import annotations

import pytest

from sisr.cli import main
from sisr.errors import SisrError
from sisr.files import check_writable
from sisr.image_io import read_image


def test_the_readme_set_up_runs_twice(tmp_path, monkeypatch):
    """`sisr sample coffee --downscale 4 -o coffee-lr.png --overwrite && sisr upscale coffee-lr.png -o
    coffee-x4.png --overwrite`, as the README has it: a second run replaces both files."""
    pytest.importorskip("skimage")
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["sample", "coffee", "--downscale", "4", "-o", "coffee-lr.png", "--overwrite"]) == 0
        assert main(["upscale", "coffee-lr.png", "-o", "coffee-x4.png", "--overwrite"]) == 0
    assert read_image(tmp_path / "coffee-lr.png").shape == (100, 150, 3)
    assert read_image(tmp_path / "coffee-x4.png").shape == (400, 600, 3)


def test_without_overwrite_a_second_sample_is_refused_with_both_ways_to_ask(tmp_path, capsys):
    pytest.importorskip("skimage")
    target = tmp_path / "chelsea.png"
    assert main(["sample", "chelsea", "--downscale", "4", "-o", str(target)]) == 0
    capsys.readouterr()
    assert main(["sample", "chelsea", "--downscale", "4", "-o", str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"sisr sample: error: {target}: already exists; not overwritten "
        "(ask for it with --overwrite, or overwrite=True in Python)"
    )


def test_the_file_exists_message_reads_for_both_kinds_of_user(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"keep")
    with pytest.raises(SisrError, match=r"already exists; not overwritten") as error:
        check_writable(target, overwrite=False)
    assert "--overwrite" in str(error.value) and "overwrite=True in Python" in str(error.value)
    assert check_writable(target, overwrite=True) == target
