"""sisr.batch: the file listing, shards, the manifest and progress lines of a batch; exclusive creation in sisr.files."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path, PurePath

import pytest

from sisr.batch import (
    Job,
    Manifest,
    ManifestRecord,
    ProgressLines,
    Shard,
    failed_jobs,
    find_images,
    format_duration,
    matches,
    mirrored_path,
    parse_shard,
    read_manifest,
    record_for,
    resolve_shard,
    shard_from_environment,
)
from sisr.errors import OutputExistsError, SisrError
from sisr.files import atomic_path, atomic_write, rename_no_replace


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def relative(paths: list[Path], root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in paths]


# --- which files -------------------------------------------------------------------------------


def test_a_flat_folder_gives_its_image_files_and_leaves_out_the_rest(tmp_path):
    touch(tmp_path, "b.png", "a.JPG", "notes.txt", ".hidden.png", "sub/c.png")
    images, others = find_images(tmp_path)
    assert relative(images, tmp_path) == ["a.JPG", "b.png"]
    assert relative(others, tmp_path) == ["notes.txt"]


def test_recursive_walks_sub_folders_in_path_order_but_not_hidden_ones(tmp_path):
    touch(tmp_path, "z.png", "a/b/deep.png", "a/top.webp", "a/b/readme.md", ".git/x.png", "a/.cache/y.png", "b/.y.png")
    images, others = find_images(tmp_path, recursive=True)
    assert relative(images, tmp_path) == ["a/b/deep.png", "a/top.webp", "z.png"]
    assert relative(others, tmp_path) == ["a/b/readme.md"]


def test_patterns_choose_files_from_the_right_ignoring_case(tmp_path):
    touch(tmp_path, "scans/a.TIF", "scans/b.png", "photos/c.tif", "photos/scans/d.tif", "e.txt")
    images, _ = find_images(tmp_path, ["*.tif"], recursive=True)
    assert relative(images, tmp_path) == ["photos/c.tif", "photos/scans/d.tif", "scans/a.TIF"]
    images, _ = find_images(tmp_path, ["scans/*.tif", "*.txt"], recursive=True)
    assert relative(images, tmp_path) == ["e.txt", "photos/scans/d.tif", "scans/a.TIF"]
    assert matches(PurePath("x/y.png"), "*.PNG") and not matches(PurePath("y.png"), "x/*.png")


def test_the_output_tree_mirrors_the_input_tree(tmp_path):
    folder = tmp_path / "in"
    assert mirrored_path(folder / "a/b/c.png", [tmp_path / "other", folder]) == Path("a/b/c.png")
    assert mirrored_path(tmp_path / "loose.png", [folder]) == Path("loose.png")


# --- which share of them -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_shards_cover_a_list_exactly_once(seed):
    rng = random.Random(seed)
    names = [f"{rng.choice('abc')}/{rng.getrandbits(40):x}.png" for _ in range(rng.randint(0, 300))]
    for count in (1, 2, 3, 7, 16):
        shares = [Shard(index, count).select(names, key=str) for index in range(count)]
        together = [name for share in shares for name in share]
        assert sorted(together) == sorted(names)
        # Each share keeps the list's order, and depends on nothing but the names: a shuffled list agrees.
        shuffled = rng.sample(names, len(names))
        for index, share in enumerate(shares):
            assert share == [name for name in names if name in set(share)]
            assert sorted(Shard(index, count).select(shuffled, key=str)) == sorted(share)


def test_an_image_keeps_its_shard_when_others_are_added():
    before = [f"{i}.png" for i in range(200)]
    after = before + [f"new-{i}.png" for i in range(50)]
    for index in range(4):
        shard = Shard(index, 4)
        assert set(shard.select(before, str)) <= set(shard.select(after, str))


def test_shards_are_spread_evenly_enough():
    names = [f"{i:06d}.png" for i in range(4000)]
    sizes = [len(Shard(index, 4).select(names, str)) for index in range(4)]
    assert all(900 < size < 1100 for size in sizes), sizes


def test_shard_option_is_0_based():
    assert parse_shard("3/4") == Shard(3, 4, "--shard 3/4")
    for text, fragment in [("4/4", "numbered 0 to 3"), ("1/0", "does not exist"), ("a/4", "INDEX/COUNT"), ("2", "")]:
        with pytest.raises(SisrError, match=f"--shard {text}.*{fragment}"):
            parse_shard(text)


def test_shard_from_torchrun_and_slurm_and_their_precedence():
    torchrun = {"RANK": "2", "WORLD_SIZE": "8"}
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
    assert shard_from_environment({}) is None
    assert shard_from_environment(torchrun) == Shard(2, 8, "RANK=2 WORLD_SIZE=8")
    assert shard_from_environment(slurm).index == 2 and shard_from_environment(slurm).count == 4
    stepped = {"SLURM_ARRAY_TASK_ID": "20", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_STEP": "10"}
    assert (shard_from_environment(stepped).index, shard_from_environment(stepped).count) == (2, 3)
    assert shard_from_environment({**slurm, **torchrun}).count == 8  # torchrun first
    assert resolve_shard("0/2", {**slurm, **torchrun}) == Shard(0, 2, "--shard 0/2")  # --shard before both
    with pytest.raises(SisrError, match="RANK=x WORLD_SIZE=2: 'x' is not a whole number"):
        shard_from_environment({"RANK": "x", "WORLD_SIZE": "2"})


# --- a record of each input --------------------------------------------------------------------


def test_the_manifest_is_appended_line_by_line_and_read_back(tmp_path):
    source = tmp_path / "a.png"
    source.write_bytes(b"12345")
    target = tmp_path / "out" / "a-x2.png"
    path = tmp_path / "run.jsonl"
    with Manifest(path) as manifest:
        manifest.append(record_for(Job(source, target), "failed", 0.5, "a.png: broken"))
        assert len(path.read_text().splitlines()) == 1  # on disk at once, not at the end
        target.parent.mkdir()
        target.write_bytes(b"1234567")
        manifest.append(record_for(Job(source, target), "done", 1.25))
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first == {
        "source": str(source),
        "output": str(target),
        "status": "failed",
        "seconds": 0.5,
        "input_bytes": 5,
        "output_bytes": None,
        "error": "a.png: broken",
    }
    assert second["status"] == "done" and second["output_bytes"] == 7 and second["error"] is None
    assert [record.status for record in read_manifest(path)] == ["failed", "done"]


def test_only_the_latest_failures_are_retried(tmp_path):
    def record(name: str, status: str) -> ManifestRecord:
        return ManifestRecord(name, f"out/{name}", status, 0.1, 1, None)

    records = [record("a", "failed"), record("b", "done"), record("c", "failed"), record("a", "done")]
    records += [record("d", "skipped"), record("e", "failed")]
    assert failed_jobs(records) == [Job(Path("c"), Path("out/c")), Job(Path("e"), Path("out/e"))]


def test_a_line_cut_off_by_a_killed_writer_is_left_out_but_other_damage_is_named(tmp_path):
    good = ManifestRecord("a", "b", "done", 0.1, 1, 2).to_json()
    path = tmp_path / "m.jsonl"
    path.write_text(good + "\n" + good[:20])
    assert len(read_manifest(path)) == 1
    path.write_text(good[:20] + "\n" + good + "\n")
    with pytest.raises(SisrError, match="m.jsonl, line 1: not a manifest record"):
        read_manifest(path)
    path.write_text(good.replace('"done"', '"lost"') + "\n")
    with pytest.raises(SisrError, match="line 1: unknown status 'lost'"):
        read_manifest(path)


# --- how far it is -----------------------------------------------------------------------------


def test_progress_lines_every_few_seconds_with_rate_and_time_left():
    now = [100.0]
    progress = ProgressLines(total=100, interval=5, clock=lambda: now[0])
    now[0] = 102
    assert progress.update(4) is None
    now[0] = 110
    assert progress.update(20) == "20/100 images, 2 images/s, 40s left"
    now[0] = 111
    assert progress.update(21) is None
    assert [format_duration(s) for s in (59, 275, 7500)] == ["59s", "4m35s", "2h05m"]


# --- exclusive creation (sisr.files) -----------------------------------------------------------


def test_a_no_replace_rename_refuses_an_existing_target(tmp_path):
    (tmp_path / "new").write_text("new")
    (tmp_path / "old").write_text("old")
    with pytest.raises(OutputExistsError, match="old: already exists"):
        rename_no_replace(tmp_path / "new", tmp_path / "old")
    assert (tmp_path / "old").read_text() == "old" and (tmp_path / "new").exists()
    rename_no_replace(tmp_path / "new", tmp_path / "fresh")
    assert (tmp_path / "fresh").read_text() == "new" and not (tmp_path / "new").exists()


def test_an_output_that_appears_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "a.png"
    with pytest.raises(OutputExistsError), atomic_path(target, overwrite=False) as tmp:
        tmp.write_bytes(b"mine")
        target.write_bytes(b"theirs")  # another process finished first
    assert target.read_bytes() == b"theirs"
    assert [path.name for path in tmp_path.iterdir()] == ["a.png"]  # no temporary file left
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_bytes(b"mine")
    assert target.read_bytes() == b"mine"


@pytest.mark.parametrize("trial", range(5))
def test_of_threads_racing_to_create_one_file_exactly_one_wins(tmp_path, trial):
    target = tmp_path / "out.bin"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def write(number: int) -> None:
        try:
            with atomic_write(target, overwrite=False) as handle:
                handle.write(f"writer {number}".encode())
                barrier.wait()  # all have passed the early check: only the rename decides
        except OutputExistsError:
            outcomes.append("refused")
        else:
            outcomes.append(f"writer {number}")

    threads = [threading.Thread(target=write, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [outcome for outcome in outcomes if outcome != "refused"]
    assert len(winners) == 1 and len(outcomes) == 8
    assert target.read_text() == winners[0]
    assert [path.name for path in tmp_path.iterdir()] == ["out.bin"]
