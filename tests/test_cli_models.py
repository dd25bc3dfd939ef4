"""`sisr models`: ready-to-use networks first (bundled, then the zoo), untrained presets after."""

from __future__ import annotations

import json

import pytest
import torch

from sisr.cli import main
from sisr.cli.models import count_parameters
from sisr.models import PRESETS, build_model
from sisr.models import count_parameters as count_built
from sisr.weights import BUNDLED, list_pretrained


def run_models(capsys, *argv: str) -> str:
    assert main(["models", *argv]) == 0
    return capsys.readouterr().out


def test_ready_to_use_networks_come_first_in_titled_sections(capsys):
    out = run_models(capsys)
    ready_title = out.index("Ready to use")
    presets_title = out.index("Untrained presets")
    assert ready_title < presets_title
    ready, presets = out[ready_title:presets_title], out[presets_title:]
    names = [line.split()[0] for line in ready.splitlines()[3:] if line.strip()]
    bundled = list(BUNDLED)
    zoo = [entry.name for entry in list_pretrained()]
    assert names == bundled + zoo  # the bundled defaults, then the zoo
    assert all(line.rstrip().endswith(("yes", "no")) for line in ready.splitlines()[3:] if line.strip())
    assert "downloaded" in ready.splitlines()[2]
    for preset in PRESETS:
        assert f"\n{preset} " in presets
    assert "default-x4" not in presets


def test_pretrained_lists_only_the_ready_ones(capsys):
    out = run_models(capsys, "--pretrained")
    assert "Ready to use" in out and "Untrained presets" not in out
    assert "edsr-x4@official" in out and "default-x2" in out


def test_json_rows_say_their_kind_in_the_same_order(capsys):
    rows = json.loads(run_models(capsys, "--format", "json"))
    kinds = [row["kind"] for row in rows]
    assert kinds == sorted(kinds, key=["bundled", "pretrained", "preset"].index)
    assert {"bundled", "pretrained", "preset"} == set(kinds)
    by_name = {row["name"]: row for row in rows if row["kind"] == "preset"}
    assert by_name["edsr-x4"]["parameters"] == 43_089_923  # the EDSR paper's 43 M


@pytest.mark.parametrize("name", ["edsr-baseline-x2", "wdsr-a-16-x3", "wdsr-b-16-x4", "srresnet-x4"])
def test_counts_without_initial_values_equal_a_real_build(name):
    preset = PRESETS[name]
    assert count_parameters(preset.arch, preset.args) == count_built(build_model(preset.arch, preset.args))


def test_counting_leaves_torch_as_it_was():
    threads = torch.get_num_threads()
    count_parameters("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1, "res_scale": 0.5})
    assert torch.get_num_threads() == threads
    torch.manual_seed(0)
    first = build_model("edsr", {"scale": 2, "num_filters": 8, "num_blocks": 1})
    assert first.head[0].weight.abs().sum() > 0  # initialised as usual outside the count
