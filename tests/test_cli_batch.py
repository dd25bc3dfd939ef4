"""`sisr upscale` over folder trees: --recursive, --pattern, --skip-existing, --manifest, --shard, kills and rivals."""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sisr.batch import ProgressLines
from sisr.cli import main
from sisr.files import temporary_file_writer
from sisr.image_io import write_image

BICUBIC = ["--model", "bicubic", "--scale", "2"]
RUN_CLI = "import sys; from sisr.cli import main; sys.exit(main(sys.argv[1:]))"
TREE = ["a.png", "b.jpg", "notes.txt", "sub/c.png", "sub/deeper/d.bmp", ".hidden/e.png", "sub/.f.png"]


def make_tree(root: Path, names: list[str], size: tuple[int, int] = (12, 16)) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        if name.endswith(".txt"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not an image")
        else:
            write_image(path, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    return root


def files_under(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def upscale(capsys, *args) -> tuple[int, str]:
    status = main(["upscale", *map(str, args), *BICUBIC])
    return status, capsys.readouterr().err


def test_recursive_mirrors_the_tree_and_leaves_hidden_things_out(capsys, tmp_path):
    folder = make_tree(tmp_path / "in", TREE)
    status, err = upscale(capsys, folder, "-o", tmp_path / "out", "--recursive")
    assert status == 0, err
    assert files_under(tmp_path / "out") == ["a-x2.png", "b-x2.jpg", "sub/c-x2.png", "sub/deeper/d-x2.bmp"]
    # Without --recursive, a folder is still its own files only.
    status, err = upscale(capsys, folder, "-o", tmp_path / "flat")
    assert status == 0, err
    assert files_under(tmp_path / "flat") == ["a-x2.png", "b-x2.jpg"]


def test_patterns_choose_the_files_and_format_names_the_outputs(capsys, tmp_path):
    folder = make_tree(tmp_path / "in", TREE)
    out = tmp_path / "out"
    status, err = upscale(capsys, folder, "-o", out, "--recursive", "--pattern", "*.PNG", "--pattern", "*.bmp")
    assert status == 0, err
    assert files_under(out) == ["a-x2.png", "sub/c-x2.png", "sub/deeper/d-x2.bmp"]
    status, err = upscale(capsys, folder, "-o", tmp_path / "none", "--recursive", "--pattern", "*.gif")
    assert status == 1 and "folder has no files matching *.gif" in err


def test_skip_existing_does_only_what_is_missing(capsys, caplog, tmp_path):
    folder = make_tree(tmp_path / "in", TREE)
    out = tmp_path / "out"
    assert upscale(capsys, folder, "-o", out, "--recursive")[0] == 0
    kept = out / "sub" / "c-x2.png"
    kept.write_bytes(b"an older output, left alone")
    (out / "a-x2.png").unlink()
    with caplog.at_level("INFO", logger="sisr"):
        status, err = upscale(capsys, folder, "-o", out, "--recursive", "--skip-existing", "--manifest", tmp_path / "m")
    assert status == 0, err
    assert "1 written, 3 skipped (output exists), 0 failed" in caplog.messages
    assert kept.read_bytes() == b"an older output, left alone"
    assert files_under(out) == ["a-x2.png", "b-x2.jpg", "sub/c-x2.png", "sub/deeper/d-x2.bmp"]
    records = [json.loads(line) for line in (tmp_path / "m").read_text().splitlines()]
    assert sorted((Path(r["output"]).name, r["status"]) for r in records) == [
        ("a-x2.png", "done"),
        ("b-x2.jpg", "skipped"),
        ("c-x2.png", "skipped"),
        ("d-x2.bmp", "skipped"),
    ]
    # Without it, an existing output is an error for that image, as it always was.
    status, err = upscale(capsys, folder, "-o", out, "--recursive")
    assert status == 1 and "already exists; not overwritten" in err and "4 of 4 images failed" in err
    status, err = upscale(capsys, folder, "-o", out, "--skip-existing", "--overwrite")
    assert status == 1 and "contradict" in err


def test_the_manifest_records_failures_and_from_manifest_retries_only_them(capsys, tmp_path):
    folder = make_tree(tmp_path / "in", ["a.png", "sub/b.png", "sub/c.png"])
    good = (folder / "sub" / "b.png").read_bytes()
    (folder / "sub" / "b.png").write_bytes(b"not a png at all")
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    status, err = upscale(capsys, folder, "-o", out, "--recursive", "--manifest", manifest)
    assert status == 1 and "b.png: not a readable image" in err
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [(Path(r["source"]).name, r["status"]) for r in records] == [
        ("a.png", "done"),
        ("b.png", "failed"),
        ("c.png", "done"),
    ]
    failed = records[1]
    assert failed["output"] == str(out / "sub" / "b-x2.png") and "not a readable image" in failed["error"]
    assert failed["input_bytes"] == 16 and failed["output_bytes"] is None and failed["seconds"] >= 0
    assert records[0]["output_bytes"] == (out / "a-x2.png").stat().st_size

    (folder / "sub" / "b.png").write_bytes(good)
    before = {name: (out / name).stat().st_mtime_ns for name in ["a-x2.png", "sub/c-x2.png"]}
    status, err = upscale(capsys, "--from-manifest", manifest)
    assert status == 0, err
    assert files_under(out) == ["a-x2.png", "sub/b-x2.png", "sub/c-x2.png"]
    assert before == {name: (out / name).stat().st_mtime_ns for name in before}  # not redone
    latest = json.loads(manifest.read_text().splitlines()[-1])
    assert (Path(latest["source"]).name, latest["status"]) == ("b.png", "done")
    # Nothing failed any more: nothing to do, and the options that would contradict the manifest are refused.
    assert upscale(capsys, "--from-manifest", manifest)[0] == 0
    status, err = upscale(capsys, "--from-manifest", manifest, "-o", out)
    assert status == 1 and "leave out -o" in err


def test_shards_together_write_every_output_once(capsys, tmp_path, monkeypatch):
    folder = make_tree(tmp_path / "in", [f"d{i % 3}/{i}.png" for i in range(10)])
    out = tmp_path / "out"
    manifests = []
    for index in range(3):
        manifests.append(tmp_path / f"m{index}")
        status, err = upscale(
            capsys, folder, "-o", out, "--recursive", "--shard", f"{index}/3", "--manifest", manifests[-1]
        )
        assert status == 0, err
    done = [json.loads(line)["output"] for m in manifests if m.exists() for line in m.read_text().splitlines()]
    assert sorted(done) == sorted(str(out / f"d{i % 3}" / f"{i}-x2.png") for i in range(10))
    # torchrun's variables choose the same shares.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    status, err = upscale(capsys, folder, "-o", tmp_path / "rank1", "--recursive", "--manifest", tmp_path / "r1")
    assert status == 0, err
    rank1 = sorted(files_under(tmp_path / "rank1"))
    shard1 = sorted(
        Path(json.loads(line)["output"]).relative_to(out).as_posix() for line in manifests[1].read_text().splitlines()
    )
    assert rank1 == shard1


def test_progress_lines_where_there_is_no_terminal(capsys, caplog, tmp_path, monkeypatch):
    folder = make_tree(tmp_path / "in", ["a.png", "b.png", "c.png"])
    monkeypatch.setattr("sisr.cli.upscale.ProgressLines", functools.partial(ProgressLines, interval=0))
    with caplog.at_level("INFO", logger="sisr"):
        assert upscale(capsys, folder, "-o", tmp_path / "out")[0] == 0
    progress = [m for m in caplog.messages if " images/s, " in m]
    assert [line.split(",")[0] for line in progress] == ["1/3 images", "2/3 images", "3/3 images"]
    assert progress[-1].endswith("0s left")


# --- as processes among others ------------------------------------------------------------------

TWELVE = [f"{folder}/{i}.png" for folder in ("x", "y/z", "w") for i in range(4)]


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "SISR_NATIVE_KERNELS": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "upscale", *args, *BICUBIC],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def contents(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def twelve(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """12 images in three folders, and their outputs from one uninterrupted run."""
    root = tmp_path_factory.mktemp("twelve")
    folder = make_tree(root / "in", TWELVE, size=(160, 200))
    finish(start(str(folder), "-o", str(root / "reference"), "--recursive"))
    reference = contents(root / "reference")
    assert len(reference) == 12
    return folder, reference


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and PIDs in temporary names")
def test_a_batch_killed_at_random_points_and_rerun_is_complete_and_equal(tmp_path, twelve):
    folder, reference = twelve
    rng = random.Random(19)
    for trial in range(10):
        out = tmp_path / f"out{trial}"
        command = [str(folder), "-o", str(out), "--recursive", "--skip-existing"]
        process = start(*command)
        # A random point of the work: after some number of outputs (0 to 11), and a little more.
        wanted, deadline = rng.randrange(12), time.monotonic() + 120
        while len(list(out.rglob("*-x2.png")) if out.exists() else []) < wanted and process.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        finish(start(*command))
        assert contents(out) == reference, f"trial {trial}, killed after {wanted} outputs"  # no temporaries either


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="hard links and PIDs in temporary names")
def test_two_processes_on_one_output_folder_write_each_output_once(tmp_path, twelve):
    folder, reference = twelve
    out = tmp_path / "out"
    for attempt in range(2):
        processes = [
            start(
                str(folder),
                "-o",
                str(out),
                "--recursive",
                "--skip-existing",
                "--manifest",
                str(tmp_path / f"{attempt}-{n}"),
            )
            for n in range(2)
        ]
        for process in processes:
            finish(process)
        records = [
            json.loads(line) for n in range(2) for line in (tmp_path / f"{attempt}-{n}").read_text().splitlines()
        ]
        done = sorted(r["output"] for r in records if r["status"] == "done")
        skipped = sorted(r["output"] for r in records if r["status"] == "skipped")
        expected = sorted(str(out / name) for name in reference)
        assert done == (expected if attempt == 0 else [])  # each written once; none by the second pair
        assert sorted(done + skipped) == sorted(expected + expected)  # each also skipped once by the other
        assert contents(out) == reference
        assert not any(temporary_file_writer(path.name) for path in out.rglob("*"))
