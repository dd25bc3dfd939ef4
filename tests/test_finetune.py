"""`sisr finetune` and `sisr.train.finetune`: SRGAN-style perceptual fine-tuning on CPU.

A tiny SRResNet (x2, 8 filters, 1 block) and a narrow discriminator on 32-pixel
patches; the content loss uses a VGG19 cut at vgg22 with random weights, saved
by the test in torchvision's layout and passed as --vgg19-weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sisr.cli import main
from sisr.errors import SisrError
from sisr.image_io import read_image, write_image
from sisr.models import ModelSpec, build_model
from sisr.models.vgg import VGG19_WEIGHTS, VGG19FeatureExtractor
from sisr.train import finetune, load_finetune_config
from sisr.train.config import TrainConfig
from sisr.train.gan import discriminator_step
from sisr.train.optimization import WeightUpdate
from sisr.weights import read_weight_file, save_model

REPO = Path(__file__).resolve().parents[1]
GENERATOR = {"scale": 2, "num_filters": 8, "num_blocks": 1}


def _smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3)).astype(np.uint8)
    return np.repeat(np.repeat(small, 4, 0), 4, 1)[:height, :width]


@pytest.fixture
def setup(tmp_path, monkeypatch) -> dict[str, Path]:
    """Training and validation images, a 'pixel-trained' generator and a random vgg22 weight file."""
    monkeypatch.delenv("SISR_VGG19_WEIGHTS", raising=False)
    for index in range(3):
        write_image(tmp_path / "train" / f"{index}.png", _smooth_image(40, 48, index))
    write_image(tmp_path / "val" / "a.png", _smooth_image(32, 32, 7))
    torch.manual_seed(1)
    generator = build_model("srresnet", GENERATOR)
    save_model(generator, tmp_path / "pixel.safetensors", spec=ModelSpec("srresnet", GENERATOR))
    extractor = VGG19FeatureExtractor("vgg22")
    torch.manual_seed(2)
    for parameter in extractor.parameters():
        parameter.data.normal_(0, 0.05)  # random, not ImageNet: the test needs a fixed measure, not a good one
    torch.save(
        {f"features.{key}": value for key, value in extractor.features.state_dict().items()}, tmp_path / "vgg22.pth"
    )
    return {
        "root": tmp_path,
        "init": tmp_path / "pixel.safetensors",
        "vgg": tmp_path / "vgg22.pth",
        "train": tmp_path / "train",
        "val": tmp_path / "val",
        "out": tmp_path / "run",
    }


def _values(paths: dict[str, Path], **sections) -> dict:
    values = {
        "model": {"init": str(paths["init"])},
        "data": {"train": str(paths["train"]), "patch_size": 32, "batch_size": 2, "cache": "memory", "workers": 0},
        "val": {"set": str(paths["val"]), "every": 2, "limit": 1},
        "optim": {"milestones": [3]},
        "train": {"steps": 4, "out": str(paths["out"]), "log_every": 2, "checkpoint_every": 2, "threads": 1},
        "gan": {
            "content_layer": "vgg22",
            "vgg19_weights": str(paths["vgg"]),
            "discriminator_filters": 8,
            "sample_every": 2,
        },
    }
    for section, options in sections.items():
        values.setdefault(section, {}).update(options)
    return values


def _cli_args(paths: dict[str, Path], *extra: str, without: tuple[str, ...] = ()) -> list[str]:
    """`sisr finetune` on the tiny setup; `extra` options replace the defaults' values (each is given once),
    `--set`s add to them, and the options in `without` are left out."""
    options = {
        "--init": str(paths["init"]),
        "--data": str(paths["train"]),
        "--val": str(paths["val"]),
        "--out": str(paths["out"]),
        "--vgg19-weights": str(paths["vgg"]),
        "--content-layer": "vgg22",
        "--patch-size": "32",
        "--batch-size": "2",
        "--workers": "0",
        "--steps": "4",
        "--sample-every": "2",
    }
    overrides = [
        "data.cache=memory",
        "gan.discriminator_filters=8",
        "train.log_every=2",
        "val.every=2",
        "train.threads=1",
        "optim.milestones=[3]",
    ]
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag == "--set":
            overrides.append(value)
        else:
            options[flag] = value
    args = ["finetune", "--no-progress"]
    for flag, value in options.items():
        if flag not in without:
            args += [flag, value]
    for override in overrides:
        args += ["--set", override]
    return args


# --- configuration -----------------------------------------------------------


def test_defaults_are_srgans_recipe_and_the_preset_file_matches_them():
    config = load_finetune_config(values={"model": {"init": "g.safetensors"}})
    assert (config.optim.lr, config.optim.milestones, config.optim.gamma) == (1e-4, [100000], 0.1)
    assert config.optim.lr * config.optim.gamma == pytest.approx(1e-5)
    assert (config.train.steps, config.data.batch_size, config.data.patch_size) == (200000, 16, 96)
    assert (config.gan.adversarial_weight, config.gan.pixel_weight) == (1e-3, 0.0)
    assert config.gan.feature_scale == pytest.approx(1 / 12.75)
    # The preset file spells out exactly these defaults, besides the generator, label and output folder.
    written = load_finetune_config(REPO / "configs" / "srgan-x4.toml").to_dict()
    defaults = config.to_dict()
    assert written["model"].pop("init") == "runs/srresnet-x4/best.safetensors"
    assert written["train"].pop("out") == f"runs/{written['model'].pop('preset')}"
    for key in ("init", "preset"):
        defaults["model"].pop(key)
    defaults["train"].pop("out")
    assert written == defaults


def test_a_generator_is_required_and_gan_options_are_checked():
    with pytest.raises(SisrError, match="model.init"):
        load_finetune_config(values={})
    with pytest.raises(SisrError, match="gan.pixel_loss"):
        load_finetune_config(values={"model": {"init": "g"}, "gan": {"pixel_loss": "ssim"}})
    with pytest.raises(SisrError, match="gan.adversarial_weigth"):
        load_finetune_config(values={"model": {"init": "g"}}, overrides=["gan.adversarial_weigth=1"])


def test_a_discriminator_file_is_no_generator(setup):
    spec = ModelSpec("srgan-discriminator", {"num_filters": 8})
    save_model(build_model(spec), setup["root"] / "d.safetensors", spec=spec)
    # The error names the file and what it holds (the words are load_model's or load_generator's).
    with pytest.raises(SisrError, match=r"(?s)(?=.*d\.safetensors)(?=.*srgan-discriminator)"):
        finetune(_values(setup, model={"init": str(setup["root"] / "d.safetensors")}), progress_bar=False)


# --- a run -------------------------------------------------------------------


def test_cli_run_changes_the_generator_logs_both_networks_and_writes_samples(setup, caplog):
    caplog.set_level("INFO", logger="sisr")
    assert main(_cli_args(setup)) == 0
    out = setup["out"]
    _, before, _ = read_weight_file(setup["init"])
    spec, after, metadata = read_weight_file(out / "last.safetensors")
    assert spec == ModelSpec("srresnet", GENERATOR) and metadata["source"] == "sisr finetune"
    assert any(not torch.equal(before[key], after[key]) for key in before if before[key].is_floating_point())
    assert (out / "best.safetensors").is_file()
    d_spec, _, _ = read_weight_file(out / "discriminator.safetensors")
    assert d_spec == ModelSpec("srgan-discriminator", {"num_filters": 8})

    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train] == [2, 4]
    for record in train:
        for key in (
            "content",
            "adversarial",
            "generator_loss",
            "discriminator_loss",
            "d_real",
            "d_fake",
            "lr",
            "psnr_rgb",
        ):
            assert math.isfinite(record[key]), key
        assert 0 < record["d_real"] < 1 and 0 < record["d_fake"] < 1
        # The generator's loss is content + 1e-3 x adversarial (no pixel term by default).
        assert record["generator_loss"] == pytest.approx(record["content"] + 1e-3 * record["adversarial"], rel=1e-5)
        assert "pixel_l1" not in record
    assert all(r["discriminator_loss"] > 0 for r in train)
    assert [r["lr"] for r in train] == [pytest.approx(1e-4), pytest.approx(1e-5)]  # milestone at step 3
    assert [r["step"] for r in records if r["event"] == "val"] == [2, 4]

    sample = read_image(out / "samples" / "step_4.png")
    hr = read_image(setup["val"] / "a.png")
    assert sample.shape == (32, 96, 3)  # LR enlarged | SR | HR, each 32 x 32
    assert np.array_equal(sample[:, 64:], hr)
    lr = sample[:, :32]
    assert np.array_equal(lr, np.repeat(np.repeat(lr[::2, ::2], 2, 0), 2, 1))  # LR pixels, repeated
    assert (out / "samples" / "step_2.png").is_file()
    assert "D(G(z))" in caplog.text and "LPIPS skipped" in caplog.text


def test_pixel_term_is_added_and_logged(setup):
    finetune(
        _values(
            setup,
            gan={"pixel_weight": 0.5, "pixel_loss": "mse", "sample_every": 0},
            train={"steps": 2},
            val={"set": ""},
        ),
        progress_bar=False,
    )
    records = [json.loads(line) for line in (setup["out"] / "log.jsonl").read_text().splitlines()]
    record = next(r for r in records if r["event"] == "train")
    assert record["generator_loss"] == pytest.approx(
        record["content"] + 1e-3 * record["adversarial"] + 0.5 * record["pixel_mse"], rel=1e-5
    )
    assert not (setup["out"] / "samples").exists()


@pytest.fixture
def one_thread():
    """One torch thread, as the runs here use (train.threads=1): on a shared CPU more threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_losses_and_samples_go_to_tensorboard_when_it_is_installed(setup, monkeypatch):
    written = []

    class RecordingWriter:
        def add_scalar(self, tag, value, step):
            written.append((tag, step))

        def add_image(self, tag, image, step, dataformats):
            written.append((tag, step, image.shape, dataformats))

        def close(self):
            pass

    import sisr.train.logging as run_logging

    monkeypatch.setattr(run_logging, "open_tensorboard", lambda folder: RecordingWriter())
    finetune(_values(setup, train={"steps": 2}), progress_bar=False)
    for tag in ("content", "adversarial", "discriminator_loss", "d_real", "d_fake", "lr"):
        assert (f"train/{tag}", 2) in written
    assert ("val/psnr", 2) in written
    assert ("samples/lr_sr_hr", 2, (32, 96, 3), "HWC") in written


def test_bf16_autocast_on_cpu_gives_finite_losses(setup):
    result = finetune(
        _values(setup, train={"steps": 2, "precision": "bf16"}, val={"set": ""}, gan={"sample_every": 0}),
        progress_bar=False,
    )
    records = [json.loads(line) for line in (setup["out"] / "log.jsonl").read_text().splitlines()]
    record = next(r for r in records if r["event"] == "train")
    assert result.step == 2 and all(math.isfinite(record[k]) for k in ("content", "discriminator_loss"))
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_discriminator_steps_lower_its_loss_on_a_fixed_batch_and_leave_the_generator_alone(one_thread):
    torch.manual_seed(0)
    discriminator = build_model("srgan-discriminator", {"num_filters": 8})
    generator = build_model("srresnet", GENERATOR)
    update = WeightUpdate(TrainConfig(), discriminator.parameters())
    hr = torch.from_numpy(np.stack([_smooth_image(32, 32, seed) for seed in range(4)])).permute(0, 3, 1, 2)
    hr = hr.float() / 255
    lr = torch.nn.functional.avg_pool2d(hr, 2)
    sr = generator(lr)  # with a graph: the step must not back-propagate into the generator
    losses = [
        float(discriminator_step(discriminator, update, hr, sr, "fp32", torch.device("cpu"))["discriminator_loss"])
        for _ in range(6)
    ]
    assert losses[-1] < losses[0] * 0.8, losses
    assert all(p.grad is None for p in generator.parameters())


# --- resume ------------------------------------------------------------------


def _assert_same(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["samples_seen"] == b["samples_seen"]
    for part in ("model", "discriminator"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    for first, second, name in ((a, b, "generator"), (a["discriminator_update"], b["discriminator_update"], "D")):
        assert first["scheduler"] == second["scheduler"], name
        assert first["optimizer"]["param_groups"] == second["optimizer"]["param_groups"], name
        for index, state in first["optimizer"]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, second["optimizer"]["state"][index][key]), f"{name} optimizer {index}.{key}"


def test_half_then_resume_equals_uninterrupted(setup):
    whole = {**setup, "out": setup["root"] / "whole"}
    finetune(_values(whole, train={"steps": 4}), progress_bar=False)
    finetune(_values(setup, train={"steps": 2}), progress_bar=False)
    first_half = torch.load(setup["out"] / "checkpoint.pt", weights_only=True)
    assert first_half["step"] == 2 and first_half["stage"] == "gan"
    torch.manual_seed(12345)  # the resumed run must restore every generator itself
    result = finetune(_values(setup, train={"steps": 4}), progress_bar=False)
    assert result.resumed_from == 2 and result.step == 4
    a, b = (torch.load(path / "checkpoint.pt", weights_only=True) for path in (whole["out"], setup["out"]))
    _assert_same(a, b)
    # And the halves differ from the whole: the comparison can fail.
    assert not all(torch.equal(first_half["discriminator"][k], a["discriminator"][k]) for k in a["discriminator"])


def test_a_pixel_training_checkpoint_is_not_resumed_as_gan(setup):
    setup["out"].mkdir()
    torch.save(
        {"format": "sisr-train-checkpoint", "format_version": 1, "model_spec": {}, "model": {}},
        setup["out"] / "checkpoint.pt",
    )
    with pytest.raises(SisrError, match="pixel-training checkpoint"):
        finetune(_values(setup), progress_bar=False)


# --- VGG weights -------------------------------------------------------------


def test_missing_vgg_file_is_a_one_line_error_naming_it(setup, capsys):
    missing = setup["root"] / "nowhere" / "vgg19.pth"
    assert main(_cli_args(setup, "--vgg19-weights", str(missing))) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"sisr finetune: error: {missing}: VGG19 weight file not found"
    assert not (setup["out"] / "checkpoint.pt").exists()


def test_vgg_weights_absent_offline_name_the_url_and_cache(setup, capsys, monkeypatch):
    monkeypatch.setenv("SISR_CACHE", str(setup["root"] / "cache"))
    args = _cli_args(setup, without=("--vgg19-weights",))
    assert main([*args, "--set", "data.download=false"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert VGG19_WEIGHTS.url in err and str(setup["root"] / "cache" / "weights" / VGG19_WEIGHTS.filename) in err


# --- DDP ---------------------------------------------------------------------


def _rank_main(rank: int, world_size: int, port: int, values: dict, results: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    result = finetune(values, progress_bar=False)
    torch.save(
        {
            "generator": dict(result.model.named_parameters()),
            "discriminator": dict(result.discriminator.named_parameters()),
        },
        Path(results) / f"rank{rank}.pt",
    )


@pytest.mark.slow
def test_two_gloo_processes_stay_in_step(setup):
    """Both networks under DDP (the discriminator runs twice a step): every rank ends with the same weights."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = setup["root"] / "results"
    results.mkdir()
    values = _values(setup, train={"steps": 2, "device": "cpu"}, val={"set": ""}, gan={"sample_every": 0})
    mp.spawn(_rank_main, args=(2, port, values, str(results)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(results / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    _, before, _ = read_weight_file(setup["init"])
    for network in ("generator", "discriminator"):
        for key, value in rank0[network].items():
            assert torch.equal(value, rank1[network][key]), f"{network}.{key} differs between ranks"
    assert any(not torch.equal(before[k], v) for k, v in rank0["generator"].items())
    assert (setup["out"] / "checkpoint.pt").is_file() and (setup["out"] / "discriminator.safetensors").is_file()


# --- stopping ----------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_saves_both_networks_and_the_resumed_run_matches(setup):
    """A separate `sisr finetune` process, stopped by SIGTERM mid-run and continued by the same command."""
    import signal
    import subprocess
    import sys
    import time

    run_cli = "import sys; from sisr.cli import main; sys.exit(main(sys.argv[1:]))"

    def start(steps: int) -> subprocess.Popen:
        args = _cli_args(setup, "--val", "", "--sample-every", "0", "--steps", str(steps), "--set", "train.log_every=1")
        return subprocess.Popen(
            [sys.executable, "-c", run_cli, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    process = start(100000)
    log = setup["out"] / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.is_file() and any(
            json.loads(line).get("step", 0) >= 2 for line in log.read_text().splitlines() if line.strip()
        ):
            break
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, output  # 128 + SIGTERM
    stopped_at = torch.load(setup["out"] / "checkpoint.pt", weights_only=True)["step"]
    assert 2 <= stopped_at < 100000
    assert (setup["out"] / "discriminator.safetensors").is_file() and (setup["out"] / "last.safetensors").is_file()

    total = stopped_at + 2
    resumed = start(total)
    whole = {**setup, "out": setup["root"] / "whole"}
    finetune(
        _values(whole, train={"steps": total, "log_every": 1}, val={"set": ""}, gan={"sample_every": 0}),
        progress_bar=False,
    )
    output, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0 and f"resuming from step {stopped_at}" in output, output
    a, b = (torch.load(path / "checkpoint.pt", weights_only=True) for path in (whole["out"], setup["out"]))
    _assert_same(a, b)
