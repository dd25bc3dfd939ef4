"""`sisr bench` without --model times the default network, like `sisr upscale` without --model."""

from __future__ import annotations

import pytest

from sisr import speed
from sisr.cli import main


@pytest.fixture
def asked(monkeypatch) -> list[tuple[str, int | None]]:
    """What run_bench was asked to time, without timing anything."""
    calls: list[tuple[str, int | None]] = []

    def fake_run_bench(model, *, scale=None, **options):
        calls.append((model, scale))
        raise SystemExit(0)  # stop before the report: only the choice of model is under test

    monkeypatch.setattr(speed, "run_bench", fake_run_bench)
    return calls


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ("default-x4", None)),
        (["--scale", "2"], ("default-x2", 2)),
        (["--model", "wdsr-b-16-x2"], ("wdsr-b-16-x2", None)),
        (["--model", "bicubic", "--scale", "3"], ("bicubic", 3)),
    ],
)
def test_the_model_timed(asked, argv, expected):
    with pytest.raises(SystemExit):
        main(["bench", *argv])
    assert asked == [expected]


def test_no_default_for_a_scale_without_one(asked, capsys):
    assert main(["bench", "--scale", "5"]) == 1
    assert "no default network for x5" in capsys.readouterr().err
    assert asked == []


def test_retune_asks_for_a_new_measurement(monkeypatch):
    options_seen: list[dict] = []

    def fake_run_bench(model, **options):
        options_seen.append(options)
        raise SystemExit(0)

    monkeypatch.setattr(speed, "run_bench", fake_run_bench)
    for argv, expected in ([[], False], [["--retune"], True]):
        with pytest.raises(SystemExit):
            main(["bench", *argv])
        assert options_seen.pop()["retune"] is expected
