"""`sisr upscale`: files and folders in, the right files out, one clear line per problem."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from sisr import create_model, load_model, save_model
from sisr.cli import main
from sisr.image_io import read_image, write_image


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("edsr-baseline-x2", num_blocks=1, num_filters=8)
    return save_model(model, tmp_path_factory.mktemp("weights") / "tiny-x2.safetensors")


def photo(height: int = 12, width: int = 15) -> np.ndarray:
    rng = np.random.default_rng(height * 100 + width)
    rows, columns = np.mgrid[0:height, 0:width]
    smooth = np.stack([rows * 9, columns * 7, (rows + columns) * 5], axis=2) % 256
    return np.clip(smooth + rng.integers(-20, 21, smooth.shape), 0, 255).astype(np.uint8)


# name -> (array written, PIL mode expected back, bit depth expected back)
MIXED = {
    "rgb.png": (photo(), "RGB", 8),
    "grey.png": (photo()[:, :, 0], "L", 8),
    "rgba.png": (np.dstack([photo(), photo()[:, :, 1]]), "RGBA", 8),
    "deep.png": (photo().astype(np.uint16) * 257, "RGB", 16),
    "photo.jpg": (photo(), "RGB", 8),
    "photo.webp": (photo(), "RGB", 8),
    "photo.bmp": (photo(), "RGB", 8),
    "photo.tif": (photo(), "RGB", 8),
}


def png_bit_depth(path) -> int:
    return path.read_bytes()[24]


@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "in"
    for name, (array, _, _) in MIXED.items():
        write_image(folder / name, array)
    (folder / "notes.txt").write_text("not an image: skipped by the folder scan")
    return folder


def run_cli(capsys, *args) -> tuple[int, str]:
    status = main(["upscale", *map(str, args)])
    return status, capsys.readouterr().err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sisr upscale: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_folder_of_mixed_images(capsys, mixed_folder, tmp_path, weights):
    out = tmp_path / "out"
    status, err = run_cli(capsys, mixed_folder, "-o", out, "--model", weights)
    assert status == 0, err
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{n.rsplit('.', 1)[0]}-x2.{n.rsplit('.', 1)[1]}" for n in MIXED)
    for name, (array, mode, depth) in MIXED.items():
        stem, ext = name.rsplit(".", 1)
        target = out / f"{stem}-x2.{ext}"
        with Image.open(target) as image:
            assert image.size == (2 * array.shape[1], 2 * array.shape[0]), name
            if depth == 8:
                assert image.mode == mode, name
        result = read_image(target)
        assert result.shape[:2] == (2 * array.shape[0], 2 * array.shape[1]), name
        assert result.dtype == (np.uint16 if depth == 16 else np.uint8), name
        assert result.ndim == array.ndim and (result.ndim == 2 or result.shape[2] == array.shape[2]), name
    assert png_bit_depth(out / "deep-x2.png") == 16


def test_one_file_to_a_named_output_picks_the_format_by_extension(capsys, tmp_path, weights):
    source = tmp_path / "deep.png"
    write_image(source, photo().astype(np.uint16) * 257)
    status, err = run_cli(capsys, source, "-o", tmp_path / "big.tif", "--model", weights)
    assert status == 0, err
    tifffile = pytest.importorskip("tifffile")
    assert tifffile.imread(tmp_path / "big.tif").dtype == np.uint16  # 16-bit in, 16-bit TIFF out
    status, err = run_cli(capsys, source, "-o", tmp_path / "small.jpg", "--model", weights)
    assert status == 0, err
    with Image.open(tmp_path / "small.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB" and image.size == (30, 24)


def test_format_option_and_output_folder_by_trailing_slash(capsys, tmp_path, weights):
    source = tmp_path / "photo.jpg"
    write_image(source, photo())
    status, err = run_cli(capsys, source, "-o", f"{tmp_path / 'out'}/", "--model", weights, "--format", "png")
    assert status == 0, err
    with Image.open(tmp_path / "out" / "photo-x2.png") as image:
        assert image.format == "PNG" and image.size == (30, 24)


def test_bicubic_with_a_scale_tiled(capsys, tmp_path):
    from sisr.imaging import matlab_imresize

    source = tmp_path / "rgb.png"
    write_image(source, photo())
    status, err = run_cli(
        capsys,
        source,
        "-o",
        tmp_path / "x3.png",
        "--model",
        "bicubic",
        "--scale",
        "3",
        "--tile",
        "5",
        "--precision",
        "fp32",
        "--device",
        "cpu",
    )
    assert status == 0, err
    result = read_image(tmp_path / "x3.png")
    expected = np.floor(np.clip(matlab_imresize(photo() / 255.0, scale=3), 0, 1) * 255 + 0.5)
    assert np.abs(result.astype(int) - expected).max() <= 1


def test_without_output_a_png_beside_the_input_and_one_line_on_what_ran(capsys, caplog, tmp_path, weights):
    source = tmp_path / "photo.jpg"
    write_image(source, photo())
    status, err = run_cli(capsys, source, "--model", weights, "--precision", "fp32", "--device", "cpu")
    assert status == 0, err
    target = tmp_path / "photo-x2.png"
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size == (30, 24)
    # What ran, as the prepared model describes itself ("... in fp32 on cpu", plus the CPU's kernels where used).
    used = load_model(weights).prepare("fp32", "cpu").describe()
    assert used.startswith("tiny-x2.safetensors (edsr, x2) in fp32 on cpu")
    assert caplog.messages[-2:] == [  # on stderr outside pytest (after a line on a first tuning, if any)
        f"upscaling {source} with {used}",
        f"wrote {target} (30x24)",
    ]


def test_without_output_several_inputs_each_beside_its_own(capsys, tmp_path, weights):
    first, second = tmp_path / "a" / "one.png", tmp_path / "b" / "two.webp"
    write_image(first, photo())
    write_image(second, photo(8, 10))
    status, err = run_cli(capsys, first, second, "--model", weights)
    assert status == 0, err
    assert read_image(tmp_path / "a" / "one-x2.png").shape == (24, 30, 3)
    assert read_image(tmp_path / "b" / "two-x2.png").shape == (16, 20, 3)


def test_several_inputs_and_an_image_file_as_output_is_one_error(capsys, tmp_path, weights):
    first, second = tmp_path / "one.png", tmp_path / "two.png"
    write_image(first, photo())
    write_image(second, photo())
    status, err = run_cli(capsys, first, second, "-o", tmp_path / "out.png", "--model", weights)
    assert status == 1
    assert_one_error_line(err, "out.png: names an image file, but 2 inputs need an output folder")
    assert not (tmp_path / "out.png").exists()


def test_an_option_given_twice_is_refused_before_any_work(capsys, tmp_path, weights):
    source = tmp_path / "photo.png"
    write_image(source, photo())
    with pytest.raises(SystemExit):
        main(["upscale", str(source), "--model", str(weights), "--model", "bicubic"])
    assert "argument --model: given more than once" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


@pytest.mark.slow  # starts a Python process that imports torch
def test_the_console_script_runs(mixed_folder, tmp_path, weights):
    sisr = shutil.which("sisr")
    if sisr is None:
        pytest.skip("the `sisr` console script is not installed (pip install -e .)")
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sisr,
            "upscale",
            str(mixed_folder / "rgb.png"),
            str(mixed_folder / "grey.png"),
            "-o",
            str(out),
            "--model",
            str(weights),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "upscaling 2 images with tiny-x2.safetensors (edsr, x2) in fp32 on cpu" in done.stderr
    assert f"wrote {out / 'grey-x2.png'} (30x24)" in done.stderr
    assert read_image(out / "rgb-x2.png").shape == (24, 30, 3)


# --- one clear line per problem -------------------------------------------------------------------


def test_missing_input(capsys, tmp_path, weights):
    status, err = run_cli(capsys, tmp_path / "nope.png", "-o", tmp_path / "out.png", "--model", weights)
    assert status == 1
    assert_one_error_line(err, "nope.png: no such file")


def test_unreadable_input(capsys, tmp_path, weights):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing an image decoder wants")
    status, err = run_cli(capsys, bad, "-o", tmp_path / "out.png", "--model", weights)
    assert status == 1
    assert_one_error_line(err, "broken.png: not a readable image")
    assert not (tmp_path / "out.png").exists()


def test_image_too_small(capsys, tmp_path, weights):
    tiny = tmp_path / "dot.png"
    write_image(tiny, np.zeros((1, 1, 3), np.uint8))
    status, err = run_cli(capsys, tiny, "-o", tmp_path / "out.png", "--model", weights)
    assert status == 1
    assert_one_error_line(err, "dot.png: 1x1 pixels is too small")


def test_a_weight_file_that_is_not_one(capsys, tmp_path):
    source = tmp_path / "rgb.png"
    write_image(source, photo())
    fake = tmp_path / "model.safetensors"
    fake.write_text("these are not weights")
    status, err = run_cli(capsys, source, "-o", tmp_path / "out.png", "--model", fake)
    assert status == 1
    assert_one_error_line(err, "model.safetensors")


def test_scale_mismatch(capsys, tmp_path, weights):
    source = tmp_path / "rgb.png"
    write_image(source, photo())
    status, err = run_cli(capsys, source, "-o", tmp_path / "out.png", "--model", weights, "--scale", "4")
    assert status == 1
    assert_one_error_line(err, "upscales x2, but x4 was asked for")


def test_bicubic_needs_a_scale(capsys, tmp_path):
    source = tmp_path / "rgb.png"
    write_image(source, photo())
    status, err = run_cli(capsys, source, "-o", tmp_path / "out.png", "--model", "bicubic")
    assert status == 1
    assert_one_error_line(err, "--model bicubic needs --scale")


def test_fp16_on_the_cpu(capsys, tmp_path, weights):
    source = tmp_path / "rgb.png"
    write_image(source, photo())
    status, err = run_cli(
        capsys, source, "-o", tmp_path / "out.png", "--model", weights, "--precision", "fp16", "--device", "cpu"
    )
    assert status == 1
    assert_one_error_line(err, "fp16 needs a CUDA device; use bf16 on CPU")


def test_existing_output_needs_overwrite(capsys, tmp_path, weights):
    source = tmp_path / "rgb.png"
    write_image(source, photo())
    target = tmp_path / "out.png"
    target.write_bytes(b"keep me")
    status, err = run_cli(capsys, source, "-o", target, "--model", weights)
    assert status == 1
    assert_one_error_line(err, "out.png: already exists", "--overwrite")
    assert target.read_bytes() == b"keep me"
    status, err = run_cli(capsys, source, "-o", target, "--model", weights, "--overwrite")
    assert status == 0, err
    assert read_image(target).shape == (24, 30, 3)


def test_unknown_output_extension(capsys, tmp_path, weights):
    source = tmp_path / "rgb.png"
    write_image(source, photo())
    status, err = run_cli(capsys, source, "-o", tmp_path / "out.gif", "--model", weights)
    assert status == 1
    assert_one_error_line(err, "out.gif: unknown image format .gif")


def test_one_bad_image_among_good_ones(capsys, tmp_path, weights):
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo())
    (folder / "b.png").write_bytes(b"not a png at all")
    write_image(folder / "c.png", photo(9, 8))
    write_image(folder / "d.png", np.zeros((1, 5), np.uint8))
    out = tmp_path / "out"
    status, err = run_cli(capsys, folder, "-o", out, "--model", weights)
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["a-x2.png", "c-x2.png"]
    assert read_image(out / "c-x2.png").shape == (18, 16, 3)
    lines = err.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in err
    assert "b.png: not a readable image" in lines[0]
    assert "d.png: 5x1 pixels is too small" in lines[1]
    assert lines[2] == "sisr upscale: error: 2 of 4 images failed"


def test_outputs_that_would_collide_are_refused_before_any_work(capsys, tmp_path, weights):
    folder = tmp_path / "in"
    write_image(folder / "same.png", photo())
    write_image(folder / "same.bmp", photo())
    status, err = run_cli(capsys, folder, "-o", tmp_path / "out", "--model", weights, "--format", "png")
    assert status == 1
    assert_one_error_line(err, "would both be written to")
    assert not (tmp_path / "out").exists()


def test_an_empty_folder(capsys, tmp_path, weights):
    (tmp_path / "empty").mkdir()
    status, err = run_cli(capsys, tmp_path / "empty", "-o", tmp_path / "out", "--model", weights)
    assert status == 1
    assert_one_error_line(err, "empty: folder has no image files")


def test_a_photo_keeps_its_colour_profile_and_is_upscaled_upright(capsys, tmp_path, weights):
    from PIL import ImageCms

    from sisr.image_io import read_icc_profile

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers turn it 90 degrees clockwise
    source = tmp_path / "phone.jpg"
    Image.fromarray(photo(12, 16)).save(source, quality=95, icc_profile=profile, exif=exif)
    for output in ("up.png", "up.jpg", "up.tif"):
        status, err = run_cli(capsys, source, "-o", tmp_path / output, "--model", weights)
        assert status == 0, err
        assert read_icc_profile(tmp_path / output) == profile
        assert read_image(tmp_path / output).shape == (32, 24, 3)  # upright: 16 x 12 shown, x2


@pytest.mark.slow
def test_compile_runs_the_same_network_through_torch_compile(tmp_path, capsys):
    """`--compile` (torch.compile, for many images of one size): the results equal the plain run's, also
    in tiles, and the network keeps its type (tiling still reads its receptive field)."""
    from sisr.inference import prepare_model, receptive_field
    from sisr.inference.fast import _wdsr_forward

    torch.manual_seed(0)
    model = create_model("wdsr-b-16-x2", num_blocks=2)
    weights = tmp_path / "net.safetensors"
    save_model(model, weights)
    compiled = prepare_model(model, "fp32", "cpu", compile=True)
    assert compiled.compiled and not compiled.fused
    assert type(compiled.network) is type(model.network)
    assert receptive_field(compiled.network) == receptive_field(model.network) == compiled.info.receptive_field
    again = prepare_model(model, "fp32", "cpu")  # prepared anew: its own forward, not the compiled one
    own_forward = vars(again.network).get("forward")  # none, or the fused WDSR's (sisr.inference.fast)
    assert own_forward is None or own_forward.__func__ is _wdsr_forward
    assert not again.compiled

    folder = tmp_path / "in"
    rng = np.random.default_rng(0)
    for index in range(3):
        write_image(folder / f"{index}.png", rng.integers(0, 256, (14, 18, 3), dtype=np.uint8))
    status, err = run_cli(capsys, folder, "-o", tmp_path / "plain", "--model", weights, "--device", "cpu")
    assert status == 0, err
    status, err = run_cli(
        capsys, folder, "-o", tmp_path / "compiled", "--model", weights, "--device", "cpu", "--compile", "--tile", "8"
    )
    assert status == 0, err
    for index in range(3):
        plain = read_image(tmp_path / "plain" / f"{index}-x2.png").astype(int)
        fast = read_image(tmp_path / "compiled" / f"{index}-x2.png").astype(int)
        assert plain.shape == fast.shape == (28, 36, 3)
        assert np.abs(plain - fast).max() <= 1  # float sums in another order: at most one level
