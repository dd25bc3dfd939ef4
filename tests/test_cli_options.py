"""The command line's option rules: a single-value option given twice is an error; -o says file or folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from sisr.cli import StoreOnce, build_parser, main
from sisr.cli.upscale import plan_jobs
from sisr.errors import SisrError


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def a_value(action: argparse.Action) -> str:
    """Some value the option accepts."""
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type is int:
        return "2"
    if action.type is float:
        return "0.5"
    return "x"


def single_value_options() -> list[tuple[str, str, argparse.Action]]:
    return [
        (command, action.option_strings[-1], action)
        for command, parser in subcommand_parsers().items()
        for action in parser._actions
        if isinstance(action, StoreOnce) and action.option_strings
    ]


def test_every_option_that_takes_a_value_is_checked():
    """Each subcommand's value options are StoreOnce (argparse's "store" is replaced once, for all)."""
    options = {(command, option) for command, option, _ in single_value_options()}
    for expected in [
        ("upscale", "--model"),
        ("upscale", "--scale"),
        ("upscale", "--output"),
        ("upscale", "--tile"),
        ("bench", "--model"),
        ("evaluate", "--scale"),
        ("evaluate", "--output"),
        ("export", "--output"),
        ("sample", "--output"),
        ("train", "--steps"),
        ("compare", "--scale"),
    ]:
        assert expected in options
    assert len(options) > 60  # the rule is the parser's, not a list of options


@pytest.mark.parametrize(
    ("command", "option", "action"), [pytest.param(*case, id=f"{case[0]} {case[1]}") for case in single_value_options()]
)
def test_a_single_value_option_given_twice_is_an_error_naming_it(command, option, action, capsys):
    value = a_value(action)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, option, value, option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"sisr {command}: error: argument {'/'.join(action.option_strings)}: given more than once" in err


def test_the_message_shows_both_values_as_typed(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["upscale", "a.png", "-o", "big.png", "--scale", "2", "--output", "b.png"])
    assert "argument -o/--output: given more than once (-o big.png, then --output b.png); give it once" in (
        capsys.readouterr().err
    )


def test_once_is_fine_and_leaves_no_trace_in_the_namespace():
    args = build_parser().parse_args(["upscale", "a.png", "--scale", "2", "--tile", "64"])
    assert args.scale == 2 and args.tile == 64
    assert not any(name.startswith("_sisr") for name in vars(args))


@pytest.mark.parametrize(
    ("argv", "dest", "expected"),
    [
        (["evaluate", "--model", "a", "--model", "b", "--dataset", "Set5"], "model", ["a", "b"]),
        (["evaluate", "--model", "a", "--dataset", "Set5", "--dataset", "Set14"], "dataset", ["Set5", "Set14"]),
        (["evaluate", "--model", "a", "--dataset", "S", "--metric", "psnr", "--metric", "ssim"], "metric", None),
        (["compare", "img.png", "-o", "f.png", "--model", "a", "--model", "b"], "model", ["a", "b"]),
        (["train", "--set", "optim.lr=1", "--set", "train.ema=0.9"], "overrides", ["optim.lr=1", "train.ema=0.9"]),
    ],
)
def test_repeatable_options_stay_repeatable(argv, dest, expected):
    args = build_parser().parse_args(argv)
    if expected is not None:
        assert getattr(args, dest) == expected
    else:
        assert len(getattr(args, dest)) == 2


def test_flags_given_twice_are_harmless():
    """A flag cannot conflict with itself: `--overwrite --overwrite` is still just --overwrite."""
    assert build_parser().parse_args(["upscale", "a.png", "--overwrite", "--overwrite"]).overwrite


# --- where `sisr upscale` writes ---------------------------------------------------------------------


def test_without_output_each_result_is_a_png_beside_its_input(tmp_path):
    photo, other = tmp_path / "photo.jpg", tmp_path / "sub" / "other.webp"
    jobs = plan_jobs([photo], None, 4, None, [str(photo)])
    assert [(job.source, job.target) for job in jobs] == [(photo, tmp_path / "photo-x4.png")]
    jobs = plan_jobs([photo, other], None, 2, None, [str(photo), str(other)])
    assert [job.target for job in jobs] == [tmp_path / "photo-x2.png", tmp_path / "sub" / "other-x2.png"]
    jobs = plan_jobs([photo], None, 3, "jpg", [str(photo)])
    assert jobs[0].target == tmp_path / "photo-x3.jpg"  # --format still chooses


def test_without_output_a_folder_input_is_refused(tmp_path):
    """Results inside the input folder would be taken as inputs by the next run over it."""
    folder = tmp_path / "photos"
    folder.mkdir()
    with pytest.raises(SisrError, match=r"photos: a folder input needs -o OUTPUT_FOLDER \(e.g. -o photos-x4/\)"):
        plan_jobs([folder / "a.png"], None, 4, None, [str(folder)])


def test_without_output_two_inputs_may_not_write_one_file(tmp_path):
    a, b = tmp_path / "same.png", tmp_path / "same.jpg"
    with pytest.raises(SisrError, match="would both be written to"):
        plan_jobs([a, b], None, 4, None, [str(a), str(b)])


@pytest.mark.parametrize("name", ["out.png", "out.JPG", "result.tif"])
def test_several_inputs_with_an_image_file_name_as_output_is_an_error(tmp_path, name):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    output = str(tmp_path / name)
    with pytest.raises(SisrError, match=rf"-o .*{name}: names an image file, but 2 inputs need an output folder"):
        plan_jobs([a, b], output, 4, None, [str(a), str(b)])
    assert not Path(output).exists()


def test_a_folder_input_with_an_image_file_name_as_output_is_an_error(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    with pytest.raises(SisrError, match="names an image file, but a folder input needs an output folder"):
        plan_jobs([folder / "a.png"], str(tmp_path / "out.png"), 4, None, [str(folder)])


def test_a_folder_named_like_an_image_is_still_possible(tmp_path):
    """With a trailing slash, or when the folder exists, `out.png` is the folder asked for."""
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    jobs = plan_jobs([a, b], f"{tmp_path / 'out.png'}/", 4, None, [str(a), str(b)])
    assert [job.target for job in jobs] == [tmp_path / "out.png" / "a-x4.png", tmp_path / "out.png" / "b-x4.jpg"]
    (tmp_path / "existing.png").mkdir()
    jobs = plan_jobs([a, b], str(tmp_path / "existing.png"), 4, None, [str(a), str(b)])
    assert jobs[0].target == tmp_path / "existing.png" / "a-x4.png"


def test_several_inputs_into_a_folder_keep_their_formats(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.jpg"
    jobs = plan_jobs([a, b], str(tmp_path / "out"), 2, None, [str(a), str(b)])
    assert [job.target.name for job in jobs] == ["a-x2.png", "b-x2.jpg"]


# --- values refused up front, in the option's own words ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--model", "bicubic", "--dataset", "Set5", "--crop-border", "-1"], "--crop-border -1: must not"),
        (["sample", "coffee", "-o", "never.png", "--downscale", "0"], "--downscale 0: must be from 1 to"),
    ],
)
def test_bad_values_are_named_by_their_option(argv, message, capsys, tmp_path, monkeypatch):
    if argv[0] == "sample":
        pytest.importorskip("skimage")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "=" not in err.split(": error: ")[1]  # no Python keyword such as crop_border=
    assert not (tmp_path / "never.png").exists()


def test_main_puts_the_log_level_back(tmp_path):
    """`sisr` logs its progress at INFO; called from Python, main() leaves the library's logger as it was."""
    log = logging.getLogger("sisr")
    before = log.level
    assert main(["models", "--pretrained", "--format", "json"]) == 0
    assert log.level == before
