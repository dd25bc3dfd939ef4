"""Choosing CPU paths by measurement: the decision, its cache, its invalidation and the overrides.

No test depends on how fast anything runs: the measurements go through a fake
clock that only the fake runs advance, or the decisions are written into the
cache beforehand. The forms being chosen between are checked to compute the
same values as the network's own layers.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from sisr import create_model
from sisr.inference import autotune, native, prepare_model
from sisr.inference import precision as precision_module
from sisr.inference.autotune import Candidate, choose, fastest, machine_fingerprint, shape_class, tuning_file
from sisr.inference.fast import FusedWideBlockB, onednn_fusions_available, select_paths

FP32, NATIVE = Candidate("fp32", "pytorch"), Candidate("fp32", "native")
BF16, ONEDNN = Candidate("bf16", "pytorch"), Candidate("bf16", "onednn")
SHAPE = "wdsr:test"
BUSY = "measured on a busy machine, not kept"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A cache of this test's own, measurement on, no forced choices, nothing remembered in the process."""
    monkeypatch.setenv("SISR_CACHE", str(tmp_path))
    for name in ("SISR_AUTOTUNE", "SISR_NATIVE_KERNELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(autotune, "_unkept", {})
    return tmp_path


class FakeMachine:
    """Runs that take exactly the seconds they are given, on a clock that only they move."""

    def __init__(self, costs: dict[Candidate, float], cpu_share: float = 1.0) -> None:
        self.costs = costs
        self.cpu_share = cpu_share  # of the threads' time the runs get: 1 on an idle machine
        self.now = 0.0
        self.cpu = 0.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def cpu_clock(self) -> float:
        return self.cpu

    def runner(self, candidate: Candidate):
        def run() -> None:
            self.calls.append(candidate.label)
            self.now += self.costs[candidate]
            self.cpu += self.costs[candidate] * torch.get_num_threads() * self.cpu_share

        return run


def refuse(candidate: Candidate):
    raise AssertionError(f"{candidate.label} was measured; the cache should have answered")


def decide(machine: FakeMachine, candidates, **options):
    return choose(
        SHAPE, candidates, machine.runner, side=64, clock=machine.clock, cpu_clock=machine.cpu_clock, **options
    )


def test_the_fastest_is_chosen_and_kept(caplog):
    machine = FakeMachine({NATIVE: 0.030, FP32: 0.020})
    with caplog.at_level(logging.INFO, logger="sisr"):
        decision = decide(machine, [NATIVE, FP32], label="wdsr-b-16-x2")
    assert decision.chosen == FP32 and decision.how == "measured"
    assert decision.seconds == pytest.approx({"fp32 native": 0.030, "fp32 pytorch": 0.020})
    # one warm-up call each, then three rounds taking turns
    assert machine.calls == ["fp32 native", "fp32 pytorch"] * 4
    document = json.loads(tuning_file().read_text())
    assert document["fingerprint"] == machine_fingerprint()
    entry = document["decisions"][SHAPE]
    assert entry["chosen"] == "fp32 pytorch" and entry["side"] == 64 and entry["seconds"] == decision.seconds
    assert "wdsr-b-16-x2: timed fp32 native 30.0 ms, fp32 pytorch 20.0 ms" in caplog.text
    assert str(tuning_file()) in caplog.text and "fp32 pytorch" in caplog.text
    assert [p.name for p in tuning_file().parent.iterdir()] == [tuning_file().name]  # no temporaries left


def test_a_cached_decision_is_not_measured_again():
    decide(FakeMachine({NATIVE: 0.010, FP32: 0.020}), [NATIVE, FP32])
    again = choose(SHAPE, [FP32, NATIVE], refuse, side=64)
    assert again.chosen == NATIVE and again.how == "cached" and again.path == tuning_file()
    # a narrower set (say SISR_NATIVE_KERNELS=0 now) picks among the stored times, measuring nothing
    assert choose(SHAPE, [FP32], refuse, side=64).chosen == FP32
    # a candidate without a stored time (bf16 now allowed) means measuring all of them again
    machine = FakeMachine({NATIVE: 0.010, FP32: 0.020, ONEDNN: 0.004})
    assert decide(machine, [ONEDNN, NATIVE, FP32]).chosen == ONEDNN
    assert set(machine.calls) == {"bf16 onednn", "fp32 native", "fp32 pytorch"}


def test_retune_measures_again_and_replaces_the_decision():
    decide(FakeMachine({NATIVE: 0.010, FP32: 0.020}), [NATIVE, FP32])
    machine = FakeMachine({NATIVE: 0.030, FP32: 0.020})  # say, a kernel got slower
    assert decide(machine, [NATIVE, FP32], retune=True).chosen == FP32 and machine.calls
    assert choose(SHAPE, [NATIVE, FP32], refuse, side=64).chosen == FP32


def test_another_torch_or_cpu_or_thread_count_measures_again(monkeypatch):
    from sisr import speed

    decide(FakeMachine({NATIVE: 0.010, FP32: 0.020}), [NATIVE, FP32])
    first = tuning_file()
    changes = [
        (torch, "__version__", "99.0.0"),
        (native, "cpu_flags", lambda: {"avx2", "fma", "amx_bf16"}),
        (speed, "cpu_name", lambda: "Another CPU"),
    ]
    for target, name, value in changes:
        with monkeypatch.context() as patch:
            patch.setattr(target, name, value)
            assert tuning_file() != first
            machine = FakeMachine({NATIVE: 0.030, FP32: 0.020})
            assert decide(machine, [NATIVE, FP32]).chosen == FP32 and machine.calls, name
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        machine = FakeMachine({NATIVE: 0.030, FP32: 0.020})
        assert decide(machine, [NATIVE, FP32]).how == "measured"
    finally:
        torch.set_num_threads(threads)
    # each machine keeps its own file: back on the first, its decision stands
    assert tuning_file() == first
    assert choose(SHAPE, [NATIVE, FP32], refuse, side=64).chosen == NATIVE


def test_a_lower_precision_must_be_clearly_faster():
    assert fastest({FP32: 0.100, ONEDNN: 0.095}) == FP32  # 5 % is not worth bf16's rounding
    assert fastest({FP32: 0.100, ONEDNN: 0.080}) == ONEDNN
    assert fastest({NATIVE: 0.100, FP32: 0.099}) == FP32  # same precision: plainly the faster
    assert fastest({NATIVE: 0.100, FP32: 0.100}) == NATIVE  # a tie keeps the earlier (the rule's) candidate
    assert decide(FakeMachine({ONEDNN: 0.095, FP32: 0.100}), [ONEDNN, FP32]).chosen == FP32


def test_switched_off_or_nothing_to_choose_measures_nothing(monkeypatch, cache):
    assert choose(SHAPE, [NATIVE], refuse, side=64).how == "one candidate"
    monkeypatch.setenv("SISR_AUTOTUNE", "0")
    decision = choose(SHAPE, [ONEDNN, FP32], refuse, side=64)
    assert decision.chosen == ONEDNN and decision.how == "SISR_AUTOTUNE=0"  # the first: the rule's choice
    assert not (cache / "tuning").exists()
    with pytest.raises(ValueError):
        choose(SHAPE, [], refuse, side=64)


def test_a_measurement_starved_by_other_work_is_used_but_not_kept(caplog):
    machine = FakeMachine({NATIVE: 0.010, FP32: 0.020}, cpu_share=0.3)
    with caplog.at_level(logging.INFO, logger="sisr"):
        decision = decide(machine, [NATIVE, FP32])
    assert decision.chosen == NATIVE and decision.how == "measured on a busy machine, not kept"
    assert "too busy" in caplog.text and not tuning_file().exists()
    # this process does not measure again for every image; a later one (or --retune) does, and keeps it
    assert choose(SHAPE, [NATIVE, FP32], refuse, side=64) == decision
    autotune._unkept.clear()  # as in a new process
    assert decide(FakeMachine({NATIVE: 0.030, FP32: 0.020}, cpu_share=0.9), [NATIVE, FP32]).how == "measured"
    assert choose(SHAPE, [NATIVE, FP32], refuse, side=64).chosen == FP32


def test_slow_runs_stop_at_the_budget():
    machine = FakeMachine({NATIVE: 2.0, FP32: 2.5})  # seconds: a huge network, or a crowded machine
    assert decide(machine, [NATIVE, FP32]).chosen == NATIVE
    assert len(machine.calls) == 4  # warm-ups, then one round: over the 5 s budget, no more


def test_a_network_that_fails_on_the_tuning_input_runs_the_rule(caplog):
    def failing(candidate: Candidate):
        def run() -> None:
            raise RuntimeError("this network wants inputs of 17 pixels")

        return run

    with caplog.at_level(logging.INFO, logger="sisr"):
        decision = choose(SHAPE, [ONEDNN, FP32], failing, side=64)
    assert decision.chosen == ONEDNN and decision.how.startswith("not measured") and "17 pixels" in caplog.text
    assert not tuning_file().exists()  # nothing stored: the next process tries again


def test_a_damaged_file_is_measured_over():
    path = tuning_file()
    path.parent.mkdir(parents=True)
    path.write_text('{"decisions": {"wdsr:test": {"seconds": ')  # cut off mid-write by another tool
    assert decide(FakeMachine({NATIVE: 0.010, FP32: 0.020}), [NATIVE, FP32]).how == "measured"
    assert json.loads(path.read_text())["decisions"][SHAPE]["chosen"] == "fp32 native"
    path.write_text('{"decisions": {"wdsr:test": {"seconds": {"fp32 native": "fast"}}}}')
    assert decide(FakeMachine({NATIVE: 0.010, FP32: 0.020}), [NATIVE, FP32]).how == "measured"


def test_a_cache_that_cannot_be_written_still_decides(monkeypatch, caplog):
    from sisr import files

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "atomic_write", read_only)
    with caplog.at_level(logging.INFO, logger="sisr"):
        assert decide(FakeMachine({NATIVE: 0.010, FP32: 0.020}), [NATIVE, FP32]).chosen == NATIVE
    assert "could not keep the tuning decision" in caplog.text


def test_the_shape_class_is_the_layer_widths_not_the_depth():
    def shape(name: str, **overrides) -> str:
        return shape_class("wdsr", create_model(name, **overrides).network)

    assert shape("wdsr-b-16-x4") == shape("wdsr-b-32-x4") == shape("wdsr-b-16-x4", num_blocks=3)
    assert shape("wdsr-b-16-x4") != shape("wdsr-b-16-x2")  # the branch ends' widths follow the scale
    assert shape("wdsr-b-16-x4") != shape("wdsr-b-16-x4", num_filters=64)
    assert "192>25k1x1" in shape("wdsr-b-16-x4") and "3>48k5x5" in shape("wdsr-b-16-x4")


def test_the_tuning_input_costs_about_the_same_for_every_network():
    sides = [autotune.tuning_side(flops) for flops in (1e3, 6e5, 1.2e6, 5e6, 1e9)]
    assert sides == sorted(sides, reverse=True)
    assert sides[0] == autotune.TUNING_SIDE_MAX and sides[-1] == autotune.TUNING_SIDE_MIN
    assert all(side % 8 == 0 for side in sides)
    assert sides[1] == 128  # default-x4, about 0.6 MFLOP per LR pixel


def test_labels_round_trip():
    for candidate in (FP32, NATIVE, BF16, ONEDNN):
        assert Candidate.from_label(candidate.label) == candidate


# prepare_model follows the decisions -------------------------------------------------------------


def small_wdsr(**overrides):
    torch.manual_seed(0)
    return create_model("wdsr-b-16-x2", num_blocks=2, **overrides)


def store(model, seconds: dict[str, float]) -> None:
    """Write a decision for `model`'s shape class into the cache, as a measurement on this machine would."""
    shape = shape_class(model.info.arch, model.network)
    path = tuning_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"chosen": min(seconds, key=seconds.get), "seconds": seconds, "side": 64, "date": "2026-12-06"}
    path.write_text(json.dumps({"fingerprint": machine_fingerprint(), "decisions": {shape: entry}}))


@pytest.fixture
def kernels():
    native._library_or_reason.cache_clear()
    if native.library() is None:
        pytest.skip(f"native kernels unavailable here: {native.unavailable_reason()}")
    yield
    native._library_or_reason.cache_clear()


def test_prepare_model_runs_the_stored_choice(kernels):
    model = small_wdsr()
    store(model, {"fp32 native": 0.010, "fp32 pytorch": 0.020})
    prepared = prepare_model(model, "fp32", "cpu")
    assert prepared.native_kernels and prepared.tuning.how == "cached"
    assert all(m.native_kernel for m in prepared.network.modules() if isinstance(m, FusedWideBlockB))
    store(model, {"fp32 native": 0.030, "fp32 pytorch": 0.020})
    prepared = prepare_model(model, "fp32", "cpu")
    assert not prepared.native_kernels and prepared.tuning.chosen == FP32
    assert not any(m.native_kernel for m in prepared.network.modules() if isinstance(m, FusedWideBlockB))
    # asked for by argument or environment: no measurement, no cache
    assert prepare_model(model, "fp32", "cpu", native_kernels=True).tuning.how == "one candidate"


def test_the_environment_forces_the_native_kernels(kernels, monkeypatch):
    model = small_wdsr()
    store(model, {"fp32 native": 0.030, "fp32 pytorch": 0.020})  # measured slower here, yet asked for
    monkeypatch.setenv("SISR_NATIVE_KERNELS", "1")
    prepared = prepare_model(model, "fp32", "cpu")
    assert prepared.native_kernels and prepared.tuning.how == "one candidate"
    monkeypatch.setenv("SISR_NATIVE_KERNELS", "0")
    native._library_or_reason.cache_clear()
    prepared = prepare_model(model, "fp32", "cpu")
    assert not prepared.native_kernels and prepared.tuning.how == "one candidate"


def test_auto_precision_is_bf16_only_where_it_was_measured_to_pay(monkeypatch):
    monkeypatch.delenv("SISR_CPU_BF16")
    monkeypatch.setattr(precision_module, "_detect_native_bf16", lambda: True)
    monkeypatch.setenv("SISR_NATIVE_KERNELS", "0")  # fp32 in one form only, the same on every machine
    native._library_or_reason.cache_clear()
    model = small_wdsr()
    try:
        store(model, {"bf16 onednn": 0.005, "bf16 pytorch": 0.009, "fp32 pytorch": 0.020})
        prepared = prepare_model(model, "auto", "cpu")
        assert prepared.precision == "bf16" and prepared.tuning.chosen == ONEDNN
        assert all(m.onednn_bf16 for m in prepared.network.modules() if isinstance(m, FusedWideBlockB))
        store(model, {"bf16 onednn": 0.019, "bf16 pytorch": 0.030, "fp32 pytorch": 0.020})
        assert prepare_model(model, "auto", "cpu").precision == "fp32"  # 5 % faster is not enough
        assert prepare_model(model, "bf16", "cpu").tuning.chosen == ONEDNN  # asked for bf16: its fastest form
        # SISR_CPU_BF16 names the precision: only its forms are candidates
        monkeypatch.setenv("SISR_CPU_BF16", "0")
        assert prepare_model(model, "auto", "cpu").tuning.how == "one candidate"
        monkeypatch.setenv("SISR_CPU_BF16", "1")
        store(model, {"bf16 onednn": 0.019, "bf16 pytorch": 0.030, "fp32 pytorch": 0.010})
        assert prepare_model(model, "auto", "cpu").tuning.chosen == ONEDNN
    finally:
        native._library_or_reason.cache_clear()


def test_a_real_measurement_is_recorded_and_reused(monkeypatch, caplog):
    monkeypatch.delenv("SISR_CPU_BF16")
    monkeypatch.setattr(precision_module, "_detect_native_bf16", lambda: True)
    model = small_wdsr()
    with caplog.at_level(logging.INFO, logger="sisr"):
        prepared = prepare_model(model, "auto", "cpu")
    decision = prepared.tuning
    expected = {"bf16 onednn", "bf16 pytorch", "fp32 pytorch"} | (
        {"fp32 native"} if native.library() is not None else set()
    )
    if not onednn_fusions_available():
        expected.remove("bf16 onednn")
    assert decision.how in ("measured", BUSY) and set(decision.seconds) == expected
    assert all(seconds > 0 for seconds in decision.seconds.values())
    assert decision.chosen.label in expected and prepared.precision == decision.chosen.precision
    assert "timed" in caplog.text
    again = prepare_model(model, "auto", "cpu")
    # kept in the cache, or, where the machine was too busy to tell, for this process only
    assert again.tuning.how == ("cached" if decision.how == "measured" else BUSY)
    assert again.tuning.chosen == decision.chosen
    assert prepare_model(model, "auto", "cpu", retune=True).tuning.how in ("measured", BUSY)


# the forms it chooses between compute the same values -------------------------------------------


def run(prepared, x: torch.Tensor) -> torch.Tensor:
    return prepared(x).double()


@pytest.mark.parametrize("res_scale, shape", [(1.0, (1, 3, 37, 29)), (0.3, (2, 3, 9, 16)), (1.0, (1, 3, 1, 5))])
def test_the_bf16_onednn_blocks_match_the_network(monkeypatch, res_scale, shape):
    if not onednn_fusions_available():
        pytest.skip("this torch has no oneDNN fused convolutions")
    model = small_wdsr(res_scale=res_scale)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    reference = run(prepare_model(model, "fp32", "cpu", fuse=False), x)
    plain_bf16 = run(prepare_model(model, "bf16", "cpu", fuse=False), x)
    prepared = prepare_model(model, "bf16", "cpu")
    calls = []
    original = FusedWideBlockB.onednn_forward
    monkeypatch.setattr(FusedWideBlockB, "onednn_forward", lambda self, y: calls.append(1) or original(self, y))
    autotune_forms = {}
    for path in ("onednn", "pytorch"):
        select_paths(prepared.network, native_kernels=False, onednn_bf16=path == "onednn")
        autotune_forms[path] = run(prepared, x)
    assert len(calls) == 2  # both blocks ran as oneDNN convolutions, once
    # bf16 rounds to 8 bits of mantissa: each form is as close to fp32 as the network's own bf16 run
    scale = reference.abs().max()
    bound = max(3 * (plain_bf16 - reference).abs().max(), 1e-2 * scale)
    for form, output in autotune_forms.items():
        assert output.shape == reference.shape
        assert (output - reference).abs().max() <= bound, form
    assert (autotune_forms["onednn"] - autotune_forms["pytorch"]).abs().max() <= bound
