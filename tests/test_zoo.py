"""The pretrained zoo: names -> verified downloads -> converted sisr weight files.

Fake entries point at a server on 127.0.0.1 serving files the tests make: a
Krasser-style .tar.gz holding a Keras .h5 (written by the Keras test writer,
which states the Keras layout independently of the importer) and an official
EDSR-PyTorch `.pt` whose name carries its sha256 prefix. Entries without a
full sha256 are downloaded only when trusted (the `trusting` fixture sets
SISR_TRUST_UNPINNED=1).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from httpserver import closed_port_url, serve_directory
from sisr.download import recorded_sha256_path
from sisr.errors import SisrError
from sisr.models import PRESETS, ModelSpec, build_model, count_parameters
from sisr.weights import load_model, zoo
from sisr.weights.native import read_weight_file
from sisr.weights.zoo import ZOO, ZooEntry, converted_path, get_pretrained, source_path

TINY_WDSR = {"scale": 2, "block": "b", "num_filters": 10, "num_blocks": 2, "expansion": 2, "linear": 0.8}
TINY_EDSR = {"scale": 2, "num_filters": 8, "num_blocks": 2, "res_scale": 1.0, "input_scale": 255.0}
KERAS_MEMBER = "weights/wdsr-tiny-x2/weights.h5"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def max_difference(a: Callable[[torch.Tensor], torch.Tensor], b: Callable[[torch.Tensor], torch.Tensor]) -> float:
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def randomised(arch: str, args: dict, seed: int) -> torch.nn.Module:
    model = build_model(arch, args)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight_g"):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.5)
            else:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SISR_TRUST_UNPINNED", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def trusting(monkeypatch, cache) -> None:
    """The user allows downloads that no full sha256 pins (trust on first use)."""
    monkeypatch.setenv("SISR_TRUST_UNPINNED", "1")


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    with serve_directory(folder) as server:
        yield folder, server


@pytest.fixture
def keras_archive(site, tmp_path):
    """(source network, archive path) of a Krasser-layout .tar.gz: weights/<name>/weights.h5."""
    pytest.importorskip("h5py", reason="h5py reads Keras weight files: pip install 'sisr[keras]'")
    from test_import_keras import write_wdsr

    folder, _ = site
    model = randomised("wdsr", TINY_WDSR, seed=1)
    h5 = write_wdsr(model, tmp_path / "weights.h5", weightnorm=True)
    archive = folder / "weights-wdsr-tiny-x2.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(h5, arcname=KERAS_MEMBER)
    return model, archive


@pytest.fixture
def official_pt(site, tmp_path):
    """(source network, served .pt path) in the official EDSR-PyTorch layout, named name-<sha256[:8]>.pt."""
    from test_import_torch import official_edsr_state

    folder, _ = site
    model = randomised("edsr", TINY_EDSR, seed=2)
    staged = tmp_path / "edsr_tiny_x2.pt"
    torch.save(official_edsr_state(model), staged)
    served = folder / f"edsr_tiny_x2-{sha256(staged)[:8]}.pt"
    shutil.move(staged, served)
    return model, served


def register(monkeypatch, **fields) -> ZooEntry:
    entry = ZooEntry(**{"licence": "MIT (test)", "description": "a test entry", **fields})
    monkeypatch.setitem(ZOO, entry.name, entry)
    return entry


def keras_entry(monkeypatch, url: str, **overrides) -> ZooEntry:
    fields = {
        "name": "wdsr-tiny-x2@test",
        "preset": "wdsr-b-16-x2",
        "arch": "wdsr",
        "args": TINY_WDSR,
        "url": url,
        "member": KERAS_MEMBER,
        "source_format": "keras-h5",
        "checksum_note": "test: trust on first use",
    }
    return register(monkeypatch, **{**fields, **overrides})


def torch_entry(monkeypatch, url: str, **overrides) -> ZooEntry:
    prefix = re.search(r"-([0-9a-f]{8})\.pt$", url)
    fields = {
        "name": "edsr-tiny-x2@test",
        "preset": "edsr-baseline-x2",
        "arch": "edsr",
        "args": TINY_EDSR,
        "url": url,
        "source_format": "torch",
        "sha256_prefix": prefix.group(1) if prefix else None,
    }
    return register(monkeypatch, **{**fields, **overrides})


def nothing_cached(entry: ZooEntry) -> bool:
    source = source_path(entry)
    leftovers = [source, source.with_name(source.name + ".part"), recorded_sha256_path(source), converted_path(entry)]
    return not any(path.exists() for path in leftovers)


# --- downloading, converting, reusing -----------------------------------------------------------


def test_keras_archive_is_downloaded_converted_and_then_loaded_from_the_cache(monkeypatch, cache, site, keras_archive):
    _, server = site
    source_model, archive = keras_archive
    entry = keras_entry(monkeypatch, server.url(archive.name), sha256=sha256(archive), checksum_note="")

    model = load_model(entry.name, scale=2)
    assert max_difference(source_model, model) < 1e-5
    assert (model.name, model.info.source, model.info.licence) == (entry.name, "zoo", "MIT (test)")
    assert model.info.path == converted_path(entry) and model.spec == ModelSpec("wdsr", TINY_WDSR)
    assert converted_path(entry) == cache / "weights" / "wdsr-tiny-x2@test.safetensors"
    spec, _, metadata = read_weight_file(converted_path(entry))
    assert spec == ModelSpec("wdsr", TINY_WDSR)
    assert (metadata["zoo_name"], metadata["zoo_url"], metadata["licence"]) == (entry.name, entry.url, "MIT (test)")
    assert metadata["source_file"] == KERAS_MEMBER and metadata["source_sha256"] == sha256(archive)
    assert [path.name for path in (cache / "weights").iterdir()] == [converted_path(entry).name]  # unpacked tree gone

    again = load_model(entry.name)
    assert len(server.requests) == 1
    assert max_difference(source_model, again) < 1e-5
    with pytest.raises(SisrError, match="x2, but x4"):
        load_model(entry.name, scale=4)


def test_official_pt_is_checked_against_the_sha256_prefix_in_its_name(monkeypatch, trusting, cache, site, official_pt):
    _, server = site
    source_model, served = official_pt
    entry = torch_entry(monkeypatch, server.url(served.name))

    model = load_model(entry.name)
    assert max_difference(source_model, model) < 1e-3  # 0..255 working range: float32 rounding of ~100s
    assert model.info.metadata["zoo_name"] == entry.name
    # Trust on first use recorded the full digest, which starts with the prefix.
    assert recorded_sha256_path(source_path(entry)).read_text().split()[0] == sha256(served)
    load_model(entry.name)
    assert len(server.requests) == 1


def test_checksum_mismatch_is_an_error_and_caches_nothing(monkeypatch, cache, site, keras_archive):
    _, server = site
    entry = keras_entry(monkeypatch, server.url(keras_archive[1].name), sha256="0" * 64, checksum_note="")
    with pytest.raises(SisrError, match="checksum mismatch"):
        load_model(entry.name)
    assert nothing_cached(entry)


def test_hash_prefix_mismatch_is_an_error_and_caches_nothing(monkeypatch, trusting, cache, site, official_pt):
    _, server = site
    served = official_pt[1]
    wrong = "0" * 8 if not sha256(served).startswith("0" * 8) else "1" * 8
    entry = torch_entry(monkeypatch, server.url(served.name), sha256_prefix=wrong)
    with pytest.raises(SisrError, match=f"does not start with {wrong}"):
        load_model(entry.name)
    assert nothing_cached(entry)


def test_an_interrupted_download_is_resumed(monkeypatch, cache, site, official_pt):
    _, server = site
    source_model, served = official_pt
    entry = torch_entry(monkeypatch, server.url(served.name), sha256=sha256(served))
    half = served.stat().st_size // 2
    server.fail_after_bytes, server.failures = half, 1

    model = load_model(entry.name)
    assert [request.range for request in server.requests] == [None, f"bytes={half}-"]
    assert max_difference(source_model, model) < 1e-3


def test_offline_error_names_the_url_and_path_and_a_file_put_there_is_used(
    monkeypatch, trusting, cache, tmp_path, official_pt
):
    source_model, served = official_pt
    entry = torch_entry(monkeypatch, closed_port_url(served.name))
    with pytest.raises(SisrError) as error:
        load_model(entry.name)
    message = str(error.value)
    assert entry.url in message and str(source_path(entry)) in message
    assert f"its sha256 must start with {entry.sha256_prefix}" in message
    assert "The next run (with --trust-unpinned or SISR_TRUST_UNPINNED=1 again) converts it from there" in message
    assert source_path(entry) == cache / "downloads" / "weights" / served.name

    source_path(entry).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(served, source_path(entry))  # what the message asks the user to do
    assert max_difference(source_model, load_model(entry.name)) < 1e-3


def test_a_file_of_another_network_is_refused(monkeypatch, trusting, cache, site, keras_archive):
    _, server = site
    entry = keras_entry(monkeypatch, server.url(keras_archive[1].name), args={**TINY_WDSR, "num_blocks": 3})
    with pytest.raises(SisrError, match="promises .*num_blocks"):
        load_model(entry.name)
    # Never trusted: the download and its first-use hash are dropped, so a later try starts afresh.
    assert nothing_cached(entry)


def test_an_archive_without_the_member_names_what_it_holds(monkeypatch, trusting, cache, site, keras_archive):
    _, server = site
    entry = keras_entry(monkeypatch, server.url(keras_archive[1].name), member="weights/other/weights.h5")
    with pytest.raises(SisrError, match=f"no weights/other/weights.h5 inside .*{KERAS_MEMBER}"):
        load_model(entry.name)
    assert nothing_cached(entry)


def test_a_leading_dot_folder_in_the_archive_is_accepted(monkeypatch, trusting, cache, site, keras_archive, tmp_path):
    folder, server = site
    source_model, archive = keras_archive
    with tarfile.open(archive) as bundle:
        h5 = bundle.extractfile(KERAS_MEMBER).read()
    dotted = folder / "dotted.tar.gz"
    with tarfile.open(dotted, "w:gz") as bundle:
        info = tarfile.TarInfo("./" + KERAS_MEMBER)
        info.size = len(h5)
        bundle.addfile(info, io.BytesIO(h5))
    entry = keras_entry(monkeypatch, server.url(dotted.name))
    assert max_difference(source_model, load_model(entry.name)) < 1e-5


# --- pinning, and what --force replaces ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["prefix only", "no checksum"])
def test_an_entry_without_a_full_sha256_is_refused_before_any_request(
    monkeypatch, cache, site, official_pt, keras_archive, kind
):
    _, server = site
    if kind == "prefix only":
        entry = torch_entry(monkeypatch, server.url(official_pt[1].name))
    else:
        entry = keras_entry(monkeypatch, server.url(keras_archive[1].name))
    with pytest.raises(SisrError) as refused:
        load_model(entry.name)
    message = str(refused.value)
    assert message.startswith(f"pretrained model {entry.name!r}: sisr records no full sha256 for {entry.url}")
    assert f"`sisr download {entry.name} --trust-unpinned`, or SISR_TRUST_UNPINNED=1" in message
    assert server.requests == [] and nothing_cached(entry)


def test_a_trusted_entry_records_its_hash_and_later_downloads_must_match_it(
    monkeypatch, trusting, cache, site, keras_archive
):
    _, server = site
    source_model, archive = keras_archive
    entry = keras_entry(monkeypatch, server.url(archive.name))
    assert max_difference(source_model, load_model(entry.name)) < 1e-5
    assert recorded_sha256_path(source_path(entry)).read_text().split()[0] == sha256(archive)

    good_archive, converted = source_path(entry).read_bytes(), converted_path(entry).read_bytes()
    archive.write_bytes(b"a different file on the server")
    with pytest.raises(SisrError, match="changed since it was first downloaded") as refused:
        zoo.fetch_pretrained(entry.name, force=True)
    assert "converts it from there" not in str(refused.value)
    assert source_path(entry).read_bytes() == good_archive and converted_path(entry).read_bytes() == converted


def test_force_replaces_the_cached_files_only_after_the_new_download_is_verified(monkeypatch, cache, site, official_pt):
    _, server = site
    source_model, served = official_pt
    entry = torch_entry(monkeypatch, server.url(served.name), sha256=sha256(served))
    zoo.fetch_pretrained(entry.name)
    good_source, converted = source_path(entry).read_bytes(), converted_path(entry).read_bytes()

    served.write_bytes(b"corrupted on the server")
    with pytest.raises(SisrError) as refused:
        zoo.fetch_pretrained(entry.name, force=True)
    message = str(refused.value)
    assert "checksum mismatch" in message and f"{source_path(entry)} is left as it was" in message
    assert "converts it from there" not in message  # nothing is converted from a deleted download
    assert source_path(entry).read_bytes() == good_source and converted_path(entry).read_bytes() == converted
    assert max_difference(source_model, load_model(entry.name)) < 1e-3  # the cached model still works


# --- names ----------------------------------------------------------------------------------------


def test_unknown_names_get_close_matches():
    with pytest.raises(SisrError, match="did you mean wdsr-b-32-x4@krasser"):
        load_model("wdsr-b-32-x4@kraser")
    with pytest.raises(SisrError, match="did you mean wdsr-b-32-x4@krasser"):
        get_pretrained("wdsr-b-32-x4@official")
    with pytest.raises(SisrError, match="edsr-16-x4@krasser"):
        load_model("edsr-16-x4")
    with pytest.raises(SisrError, match="untrained preset.*edsr-baseline-x4@official"):
        load_model("edsr-baseline-x4")


def test_a_weight_file_with_an_at_sign_in_its_path_is_a_file(tmp_path):
    from sisr.weights import save_model

    model = randomised("edsr", TINY_EDSR, seed=4)
    path = save_model(model, tmp_path / "run@2024" / "edsr@best.safetensors", spec=ModelSpec("edsr", TINY_EDSR))
    assert max_difference(model, load_model(path)) == 0.0


# --- the CLI ----------------------------------------------------------------------------------------


def run_cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_sisr_download_prints_the_path_and_force_fetches_again(monkeypatch, cache, site, official_pt, capsys):
    from sisr.cli import download as download_command
    from sisr.cli import models as models_command

    _, server = site
    entry = torch_entry(monkeypatch, server.url(official_pt[1].name), sha256=sha256(official_pt[1]))
    monkeypatch.setattr(zoo, "ZOO", {entry.name: entry})  # the real table builds 40M-parameter networks
    run_cli(models_command, ["models", "--pretrained"])
    assert re.search(r"edsr-tiny-x2@test\s+edsr\s+x2\s+[\d,]+\s+test\s+MIT\s+no", capsys.readouterr().out)

    assert run_cli(download_command, ["download", entry.name]) == 0
    assert capsys.readouterr().out.strip() == str(converted_path(entry))
    run_cli(download_command, ["download", entry.name])
    assert len(server.requests) == 1
    run_cli(download_command, ["download", entry.name, "--force"])
    assert len(server.requests) == 2
    capsys.readouterr()

    run_cli(models_command, ["models", "--pretrained"])
    assert re.search(r"edsr-tiny-x2@test .* yes", capsys.readouterr().out)
    with pytest.raises(SisrError, match="unknown pretrained model"):
        run_cli(download_command, ["download", entry.name, "edsr-tiny-x2@tset"])
    assert len(server.requests) == 2  # a typo anywhere fails before anything is fetched


def test_sisr_download_fetches_an_unpinned_entry_only_when_trusted(monkeypatch, cache, site, official_pt, capsys):
    from sisr.cli import download as download_command

    _, server = site
    pinned = torch_entry(
        monkeypatch, server.url(official_pt[1].name), name="pinned-x2@test", sha256=sha256(official_pt[1])
    )
    unpinned = torch_entry(monkeypatch, server.url(official_pt[1].name))
    with pytest.raises(SisrError, match=f"pretrained model '{unpinned.name}': sisr records no full sha256"):
        run_cli(download_command, ["download", pinned.name, unpinned.name])
    assert server.requests == []  # refused before the pinned one was fetched either

    assert run_cli(download_command, ["download", unpinned.name, "--trust-unpinned"]) == 0
    assert capsys.readouterr().out.strip() == str(converted_path(unpinned))
    assert run_cli(download_command, ["download", unpinned.name]) == 0  # cached: nothing to trust
    with pytest.raises(SisrError, match="--trust-unpinned"):
        run_cli(download_command, ["download", unpinned.name, "--force"])
    monkeypatch.setenv("SISR_TRUST_UNPINNED", "1")
    assert run_cli(download_command, ["download", unpinned.name, "--force"]) == 0
    assert len(server.requests) == 2


# --- the real registry ------------------------------------------------------------------------------

# Parameter counts the publishers state: EDSR-PyTorch README (1.37M / 1.55M / 1.52M baseline,
# 40.7M / 43.7M / 43.1M EDSR) and Krasser's README (1.52M EDSR-16, 0.62M WDSR-B-32, 1.55M SRGAN).
PUBLISHED_MILLIONS = {
    "edsr-baseline-x2@official": 1.37,
    "edsr-baseline-x3@official": 1.55,
    "edsr-baseline-x4@official": 1.52,
    "edsr-x2@official": 40.7,
    "edsr-x3@official": 43.7,
    "edsr-x4@official": 43.1,
    "edsr-16-x4@krasser": 1.52,
    "wdsr-b-32-x4@krasser": 0.62,
    "srresnet-x4@krasser": 1.55,
    "srgan-x4@krasser": 1.55,
}


def test_the_zoo_has_the_published_models():
    assert set(ZOO) == set(PUBLISHED_MILLIONS)


@pytest.mark.parametrize("name", sorted(PUBLISHED_MILLIONS))
def test_every_real_entry_is_well_formed(name):
    entry = ZOO[name]
    model_part, _, source = name.partition("@")
    assert entry.url.startswith("https://") and source in ("official", "krasser")
    assert entry.name.endswith(f"x{entry.scale}@{source}") and model_part
    if entry.sha256 is not None:
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
    else:
        assert entry.checksum_note  # why there is none
    if entry.sha256_prefix is not None:  # torch.hub naming: name-<sha256 prefix>.ext
        assert re.fullmatch(r"[0-9a-f]{8}", entry.sha256_prefix)
        assert entry.filename.endswith(f"-{entry.sha256_prefix}.pt")
        assert entry.sha256 is None or entry.sha256.startswith(entry.sha256_prefix)
    assert entry.licence.split(" ")[0] in ("MIT", "Apache-2.0")
    preset = PRESETS[entry.preset]
    assert preset.arch == entry.arch and preset.scale == entry.scale
    assert preset.args.items() <= entry.args.items()
    if entry.source_format == "torch":
        assert entry.member is None and entry.filename.endswith(".pt")
    else:
        assert entry.source_format == "keras-h5" and entry.url.endswith(".tar.gz") and entry.member.endswith(".h5")
    millions = count_parameters(build_model(entry.arch, entry.args)) / 1e6
    assert millions == pytest.approx(PUBLISHED_MILLIONS[name], abs=0.006 if millions < 10 else 0.06)


def test_the_wdsr_entry_accepts_the_reference_keras_file_in_krassers_layout(
    monkeypatch, trusting, cache, site, shared_dir
):
    """The real entry's promised architecture is what the TF reference WDSR-B x4 weights hold."""
    pytest.importorskip("h5py", reason="h5py reads Keras weight files: pip install 'sisr[keras]'")
    from sisr.weights.convert import load_foreign

    folder, server = site
    h5 = shared_dir / "weights" / "keras" / "wdsr-b-32-x4.h5"
    real = ZOO["wdsr-b-32-x4@krasser"]
    with tarfile.open(folder / real.filename, "w:gz") as bundle:
        bundle.add(h5, arcname=real.member)
    entry = dataclasses.replace(real, url=server.url(real.filename))
    monkeypatch.setitem(ZOO, entry.name, entry)

    model = load_model(entry.name, scale=4)
    assert max_difference(load_foreign(h5), model) == 0.0
    assert model.info.metadata["licence"].startswith("Apache-2.0")
    assert model.info.licence is not None and model.info.licence.startswith("Apache-2.0")


def test_cache_locations_follow_the_cache_dir(cache):
    entry = ZOO["srgan-x4@krasser"]
    assert converted_path(entry) == cache / "weights" / "srgan-x4@krasser.safetensors"
    # Both SRGAN generators come from one archive, downloaded once.
    assert (
        source_path(entry)
        == source_path(ZOO["srresnet-x4@krasser"])
        == cache / "downloads" / "weights" / "weights-srgan.tar.gz"
    )
    assert not zoo.is_cached(entry)


# Entries whose full sha256 could not be measured yet (no network where they were added): each needs
# --trust-unpinned until its hash is recorded. Pinning one means taking it off this list.
UNPINNED = {
    "edsr-baseline-x2@official",
    "edsr-baseline-x3@official",
    "edsr-baseline-x4@official",
    "edsr-x2@official",
    "edsr-x3@official",
    "edsr-x4@official",
    "edsr-16-x4@krasser",
    "wdsr-b-32-x4@krasser",
    "srresnet-x4@krasser",
    "srgan-x4@krasser",
}


def test_the_unpinned_real_entries_are_known_and_refused_without_trust(cache):
    assert {name for name, entry in ZOO.items() if not entry.pinned} == UNPINNED
    for name in sorted(UNPINNED):
        with pytest.raises(SisrError, match=f"'{re.escape(name)}': sisr records no full sha256"):
            zoo.fetch_pretrained(name)
