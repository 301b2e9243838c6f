import contextlib
import math

import pytest

from compress import budget, graph, macs, pipeline, report, timing, zoo
from compress.errors import UserError
from compress.macs import count_macs_params

from conftest import SMALL_INPUT, small_model


@pytest.mark.parametrize("text,kind,expected", [
    ("0.5x", "latency", ("relative", 0.5)), ("2.5ms", "latency", ("absolute", 2.5)), ("800us", "latency", ("absolute", 0.8)),
    ("150M", "macs", ("absolute", 150e6)), ("1.2G", "macs", ("absolute", 1.2e9)), ("0.25x", "params", ("relative", 0.25)),
    ("1E6", "params", ("absolute", 1e6)), ("1.5e+8", "macs", ("absolute", 1.5e8)), ("2.5e-1x", "latency", ("relative", 0.25)),
])
def test_parse_target(text, kind, expected):
    assert budget.parse_target(text, kind) == expected


@pytest.mark.parametrize("text,kind", [("abc", "macs"), ("-3M", "macs"), ("0.25", "macs"), ("2.5", "latency"),
                                       ("fast", "latency"), ("-1ms", "latency"), ("3parsecs", "latency")])
def test_malformed_targets(text, kind):
    with pytest.raises(UserError, match="malformed|ambiguous|positive"):
        budget.parse_target(text, kind)


def test_target_at_or_above_baseline():
    with pytest.raises(UserError, match="at or above the unpruned network's 10 ms; nothing to do"):
        budget.resolve_target("10ms", "latency", 10.0)
    with pytest.raises(UserError, match="latency target '1.2x' keeps the whole network; nothing to do"):
        budget.parse_target("1.2x", "latency")  # refused before the baseline is measured
    with pytest.raises(UserError, match="unpruned network's 300M MACs"):
        budget.resolve_target("400M", "macs", 3e8)
    with pytest.raises(UserError, match="nothing to do"):
        budget.resolve_target("20ms", "latency", 10.0)


@pytest.mark.parametrize("value,kind,expected", [
    (19.084, "latency", "19.08 ms"), (2236, "params", "2.236k params"), (72.6e6, "macs", "72.6M MACs"),
    (999_999.6, "macs", "1M MACs"), (4.1e9, "macs", "4.1G MACs"),
])
def test_amounts_read_as_a_user_would_write_them(value, kind, expected):
    assert budget.amount(value, kind) == expected
    if kind != "latency":
        assert budget.parse_target(expected.split()[0], kind)[1] == pytest.approx(value, rel=1e-3)


def synthetic_selection(model):
    """Curves where losing a channel costs more in early groups: the allocator must follow them."""
    groups = graph.list_groups(model, SMALL_INPUT)
    entries = []
    for index, group in enumerate(groups):
        ks = list(range(1, group.width + 1))
        weight = 1.0 / (index + 1)
        entries.append({"id": group.id, "width": group.width, "order": list(range(group.width)), "scale": "none",
                        "curve": {"k": ks, "loss": [weight * (group.width - k) / group.width for k in ks], "top1": [0.0] * len(ks)}})
    return {"groups": entries}


def test_monotone_curve_keeps_the_shape():
    """Interpolated between visited widths, noise bumps clipped; a decreasing curve stays the curve (it was once flat)."""
    entry = {"width": 8, "curve": {"k": [1, 2, 4, 8], "loss": [2.0, 1.0, 1.2, 0.0]}}
    assert budget.monotone_curve(entry).tolist() == pytest.approx([2.0, 1.0, 1.0, 1.0, 0.9, 0.6, 0.3, 0.0])


def steep_selection(model, steep_index=3):
    """The synthetic curves with one group (a residual stream, which MACs or latency alone would cut to the floor) that
    costs 100x more per channel than any other."""
    selection = synthetic_selection(model)
    steep = selection["groups"][steep_index]
    steep["curve"]["loss"] = [100.0 * (steep["width"] - k) / steep["width"] for k in steep["curve"]["k"]]
    return selection, steep


def test_macs_allocation_follows_the_curves():
    model = small_model("mobilenet_v2")
    full = count_macs_params(model, SMALL_INPUT)[0]
    selection, steep = steep_selection(model)
    widths, _ = budget.allocate(model, SMALL_INPUT, selection, 0.5 * full, align=8, min_share=0.0)
    assert widths[steep["id"]] == steep["width"]


def test_latency_allocation_follows_the_curves():
    model = small_model("mobilenet_v2")
    measure, _ = fake_latency(model)
    selection, steep = steep_selection(model)
    full_ms = measure({e["id"]: e["width"] for e in selection["groups"]})
    widths, _ = budget.allocate_latency(model, SMALL_INPUT, selection, 0.5 * full_ms, measure, min_share=0.0)
    assert widths[steep["id"]] == steep["width"]


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
@pytest.mark.parametrize("ratio, cost", [(0.5, "macs"), (0.25, "macs"), (0.1, "macs"), (0.25, "params")])
def test_macs_allocation_lands_just_under(name, ratio, cost):
    """Within 2% under the target on every zoo model at the default multiple of MACs and params targets, 8, which keeps
    narrow groups (MobileNetV3's 8-channel squeeze-excitation) whole."""
    model = small_model(name)
    index = 0 if cost == "macs" else 1
    full = count_macs_params(model, SMALL_INPUT)[index]
    selection = synthetic_selection(model)
    widths, report = budget.allocate(model, SMALL_INPUT, selection, ratio * full, cost=cost, align=8)
    arch = graph.make_arch(name, 10, 1, "small", SMALL_INPUT, widths)
    exact = count_macs_params(graph.build_from_arch(arch), SMALL_INPUT)[index]
    assert 0.98 * ratio * full <= exact <= ratio * full
    assert report["reached"] == exact
    assert all(widths[e["id"]] % 8 == 0 or widths[e["id"]] == e["width"] for e in selection["groups"])  # --align holds


def test_no_group_goes_under_half_the_uniform_ratio():
    """A curve that says a group is free to cut (as a one-group-at-a-time curve can) does not empty the group."""
    model = small_model("mobilenet_v2")
    full = count_macs_params(model, SMALL_INPUT)[0]
    selection = synthetic_selection(model)
    free = selection["groups"][3]
    free["curve"]["loss"] = [0.0] * len(free["curve"]["k"])
    widths, report = budget.allocate(model, SMALL_INPUT, selection, 0.25 * full, align=1, min_share=0.5)
    assert widths[free["id"]] >= 0.5 * report["uniform_ratio"] * free["width"]
    unguarded, _ = budget.allocate(model, SMALL_INPUT, selection, 0.25 * full, align=1, min_share=0.0)
    assert unguarded[free["id"]] == 1  # what the guard prevents


def test_min_share_one_keeps_the_uniform_widths():
    """At min_share 1.0 the guard is the uniform widths themselves: it fits the target, so it is never dropped."""
    model = small_model("mobilenet_v2")
    full = count_macs_params(model, SMALL_INPUT)[0]
    selection = synthetic_selection(model)
    uniform, _ = budget.uniform_widths(model, SMALL_INPUT, 0.25 * full)
    widths, report = budget.allocate(model, SMALL_INPUT, selection, 0.25 * full, align=1, min_share=1.0)
    assert all(widths[gid] >= uniform[gid] for gid in uniform)
    assert 0.98 * report["target"] <= report["reached"] <= report["target"]


def test_unreachable_macs_target_names_the_smallest():
    model = small_model("mobilenet_v2")
    with pytest.raises(UserError, match=r"target 1k MACs cannot be reached: the narrowest network pruning allows has "
                                        r"[0-9.]+[kM] MACs; ask for at least that"):
        budget.allocate(model, SMALL_INPUT, synthetic_selection(model), 1000, align=8)
    with pytest.raises(UserError, match="cannot be reached with one keep ratio in every group"):
        budget.uniform_widths(model, SMALL_INPUT, 1000)  # the benchmark's shapes: never silently over the target


def fake_latency(model):
    """A stand-in backend: affine in MACs, with a penalty for channel counts that are not multiples of 8."""
    from compress.macs import width_cost_model

    cost = width_cost_model(model, SMALL_INPUT, graph.list_groups(model, SMALL_INPUT))
    calls = []

    def measure(widths):
        calls.append(dict(widths))
        misaligned = sum(1 for w in widths.values() if w % 8)
        return 1.0 + cost(widths)[0] / 1e7 + 0.05 * misaligned

    return measure, calls


def test_latency_allocation_lands_in_window():
    model = small_model("mobilenet_v2")
    measure, calls = fake_latency(model)
    full_ms = measure({g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)})
    widths, report = budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), 0.5 * full_ms, measure)
    assert 0.9 * 0.5 * full_ms <= measure(widths) <= 0.5 * full_ms
    assert report["floor_ms"] < report["target_ms"] and report["probes"]
    # the most capacity the target allows: one cut fewer along the path was measured over the target
    chosen = next(p["cuts"] for p in report["probes"] if p["measured_ms"] == report["measured_ms"])
    assert any(p["cuts"] == chosen - 1 and p["measured_ms"] > report["target_ms"] for p in report["probes"])
    # a noise margin keeps the choice that much under the target
    widths, report = budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), 0.5 * full_ms, measure, margin=0.04)
    assert 0.9 * 0.5 * full_ms <= measure(widths) <= 0.96 * 0.5 * full_ms and report["margin"] == 0.04
    # aiming under the window (as noisy probes can make happen) falls back to the window's probe nearest the aim
    widths, report = budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), 0.5 * full_ms, measure, margin=0.11)
    inside = [p["measured_ms"] for p in report["probes"] if 0.9 * 0.5 * full_ms <= p["measured_ms"] <= 0.5 * full_ms]
    assert inside and measure(widths) == report["measured_ms"] == min(inside, key=lambda ms: abs(ms - 0.89 * 0.5 * full_ms))


def test_a_confirmation_over_the_target_moves_the_choice_to_more_cuts():
    """A lucky probe (stop18_final: probed 0.949, final bench 1.038): the re-timed choice decides, not the probe."""
    model = small_model("mobilenet_v2")
    measure, _ = fake_latency(model)
    target = 0.5 * measure({g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)})
    timed = []

    def confirm(widths):  # the first re-timing comes out 6% over the target, later ones as probed
        timed.append(dict(widths))
        return 1.06 * target if len(timed) == 1 else measure(widths)

    allocate = lambda **options: budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), target, measure,
                                                         margin=0.05, min_share=0.0, **options)  # room to cut past the choice
    probed, _ = allocate()
    widths, report = allocate(confirm_ms=confirm)
    first, last = report["confirmations"][0], report["confirmations"][-1]
    assert timed[0] == probed and first["confirmed_ms"] == 1.06 * target
    assert last["cuts"] > first["cuts"] and widths == timed[-1] != probed and sum(widths.values()) < sum(probed.values())
    assert report["measured_ms"] == last["confirmed_ms"] == measure(widths) and 0.9 * target <= measure(widths) <= target
    # a choice that re-times inside the window stays; one that stays over stops after max_confirmations
    assert len(allocate(confirm_ms=measure)[1]["confirmations"]) == 1
    _, report = allocate(confirm_ms=lambda widths: 2 * target, max_confirmations=3)
    cuts = [c["cuts"] for c in report["confirmations"]]
    assert len(cuts) == 3 and cuts == sorted(set(cuts)) and report["measured_ms"] == 2 * target


def test_a_confirmation_under_the_window_moves_the_choice_to_fewer_cuts():
    """stop19_2: a fast reference at the start put the choice 11% under the target; fewer cuts give the capacity back.
    Where every point with fewer cuts re-times over the target, the choice that met it stays: the target is a budget."""
    model = small_model("mobilenet_v2")
    measure, _ = fake_latency(model)
    target = 0.5 * measure({g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)})
    allocate = lambda **options: budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), target, measure,
                                                         margin=0.05, min_share=0.0, **options)
    probed, _ = allocate()
    widths, report = allocate(confirm_ms=lambda widths: 0.85 * target if widths == probed else measure(widths))
    first, second = report["confirmations"]
    assert second["cuts"] < first["cuts"] and sum(widths.values()) > sum(probed.values())
    assert report["measured_ms"] == measure(widths) and 0.9 * target <= measure(widths) <= target
    too_fast = lambda widths: 0.85 * target if sum(widths.values()) <= sum(probed.values()) else 1.05 * target
    widths, report = allocate(confirm_ms=too_fast)
    cuts = [c["cuts"] for c in report["confirmations"]]
    assert widths == probed and report["measured_ms"] == 0.85 * target and cuts[0] > max(cuts[1:]) and len(cuts) <= 4


def test_a_floor_that_re_times_over_the_target_moves_the_choice_past_it():
    """reports/allocation_speed_cpu/ new2: the path's end, the uniform widths, probed within the aim and re-timed 0.4% over
    the target. The floor's ratio was bisected on probes; a lower aligned ratio is what meets the target."""
    model = small_model("mobilenet_v2")
    measure, _ = fake_latency(model)
    full = {g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)}
    target = 0.5 * measure(full)
    allocate = lambda **options: budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), target, measure,
                                                         margin=0.05, **options)
    floor, report = allocate(confirm_ms=measure)
    assert report["cuts"] == report["probes"][0]["of"] and report["ratio_past_floor"] is None  # the floor is the choice
    slower = lambda widths: 1.06 * measure(widths)  # the back-to-back bench 6% slower than the probes
    widths, report = allocate(confirm_ms=slower)
    assert report["confirmations"][0]["confirmed_ms"] > target and report["cuts"] > report["probes"][0]["of"]
    assert report["ratio_past_floor"] < report["uniform_ratio"]
    assert 0.9 * target <= report["measured_ms"] == slower(widths) <= target
    assert widths == budget.aligned_widths(full, report["ratio_past_floor"], 8, full)
    assert all(widths[gid] <= floor[gid] for gid in full) and widths != floor


def test_probes_that_all_miss_the_window_are_settled_by_the_confirmation():
    """stop23's demo stopped with no probe in the window on a noisy VM: every probe within the target measured 20% fast,
    every one over it 10% slow. The choice under the window is re-timed, as any choice is, and lands inside."""
    model = small_model("mobilenet_v2")
    measure, _ = fake_latency(model)
    target = 0.5 * measure({g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)})
    noisy = lambda widths: measure(widths) * (0.8 if measure(widths) <= target else 1.1)
    allocate = lambda **options: budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), target, noisy,
                                                         margin=0.05, **options)
    with pytest.raises(UserError, match=r"could not land .* after \d+ probes \([\d., ]+ ms;"):
        allocate()  # nothing re-times the choice: the probes alone cannot land it
    widths, report = allocate(confirm_ms=measure)
    assert not any(0.9 * target <= p["measured_ms"] <= target for p in report["probes"])
    assert 0.9 * target <= report["measured_ms"] == measure(widths) <= target


def test_latency_allocation_keeps_the_uniform_widths_as_floor():
    """min_share 1.0: the curves decide which groups stay wider than the aligned uniform widths, never which go under."""
    model = small_model("mobilenet_v2")
    measure, _ = fake_latency(model)
    full = {g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)}
    selection = synthetic_selection(model)
    free = next(e for e in selection["groups"] if e["width"] >= 32)
    free["curve"]["loss"] = [0.0] * len(free["curve"]["k"])  # a curve that calls the group free to cut
    target = 0.5 * measure(full)
    widths, report = budget.allocate_latency(model, SMALL_INPUT, selection, target, measure, min_share=1.0)
    uniform = budget.aligned_widths(full, report["uniform_ratio"], 8, full)
    assert 0 < report["uniform_ratio"] < 1 and measure(uniform) <= target
    assert all(widths[gid] >= uniform[gid] for gid in full) and widths != full
    assert all(w % 8 == 0 or w == full[gid] for gid, w in widths.items())
    unguarded, _ = budget.allocate_latency(model, SMALL_INPUT, selection, target, measure, min_share=0.0)
    assert unguarded[free["id"]] == 8 < uniform[free["id"]]  # what the floor prevents


def test_the_path_search_finds_the_fewest_cuts_within_the_ceiling_with_few_probes_near_the_end():
    """Exponential search from the path's end: the fewest cuts within the ceiling wherever it lies, with 2 probes when
    the end is the answer (3 of the ten demos of stop 23 to 28), where bisection from the middle spent 7 to 9."""
    for length in (1, 2, 7, 222):
        for answer in range(length):  # the measured latency falls with every cut: path[i] stands for its cut count
            latency = lambda cuts: 10.0 - cuts + (0.5 if cuts < answer else 0.0)
            ceiling = latency(answer)
            probes, best, best_ms = budget.search_path(list(range(length)), latency, ceiling, max_probes=18)
            assert (best, best_ms) == (answer, ceiling) and len(probes) <= 2 + 2 * math.log2(length - answer + 1)
            assert any(p["cuts"] == answer and p["measured_ms"] > ceiling for p in probes) or answer == 0
    assert budget.search_path([0, 1], lambda cuts: 5.0, 1.0, max_probes=18)[1:] == (None, None)  # all over the ceiling
    assert budget.search_path([], lambda cuts: 5.0, 1.0, max_probes=18) == ([], None, None)
    assert len(budget.search_path(list(range(222)), lambda cuts: 10.0 - cuts, 9.5, max_probes=18)[0]) <= 18


def test_latency_target_under_floor():
    model = small_model("mobilenet_v2")
    measure, _ = fake_latency(model)
    with pytest.raises(UserError, match="below the floor"):
        budget.allocate_latency(model, SMALL_INPUT, synthetic_selection(model), 0.5, measure)


def test_capacity_curves_keep_macs_where_latency_is_cheap():
    """Random weights: the curves become MACs lost, and allocation cuts the group whose milliseconds are cheapest in MACs."""
    from compress.macs import width_cost_model

    model = small_model("mobilenet_v2")
    groups = graph.list_groups(model, SMALL_INPUT)
    cost = width_cost_model(model, SMALL_INPUT, groups)
    full = {g.id: g.width for g in groups}
    slow = "features.16.conv.0.0"  # a stand-in for a layer the backend runs badly: 0.02 ms per channel on top of its MACs
    measure = lambda widths: 1.0 + cost(widths)[0] / 1e7 + 0.02 * widths[slow]
    selection = budget.capacity_curves(model, SMALL_INPUT, synthetic_selection(model))
    curve = budget.monotone_curve(next(e for e in selection["groups"] if e["id"] == slow))
    assert curve[-1] == 0.0 < curve[0] and all(curve[:-1] >= curve[1:])
    widths, report = budget.allocate_latency(model, SMALL_INPUT, selection, 0.6 * measure(full), measure, min_share=0.0)
    uniform = budget.aligned_widths(full, report["uniform_ratio"], 8, full)
    assert widths[slow] < uniform[slow] and cost(widths)[0] > cost(uniform)[0]


def alignment_backend(model, rates, floor_ms=1.0):
    """(selection, measure_together, calls): a backend on which the probe of multiple A saves ``rates[A]`` ms per
    million MACs removed and A's narrowest network measures ``floor_ms[A]``; ``calls`` records each measurement's
    configurations."""
    selection = synthetic_selection(model)
    cost = macs.width_cost_model(model, SMALL_INPUT, graph.list_groups(model, SMALL_INPUT))
    full = {e["id"]: e["width"] for e in selection["groups"]}
    probes = {align: budget.aligned_widths(full, 0.6, align, full) for align in rates}
    floors = {align: {gid: min(align, w) for gid, w in full.items()} for align in rates}
    floor_ms = floor_ms if isinstance(floor_ms, dict) else dict.fromkeys(rates, floor_ms)
    calls = []

    def measure_together(configs):
        calls.append(configs)
        ms = []
        for widths in configs:
            probe = next((align for align, w in probes.items() if w == widths), None)
            floor = next((align for align, w in floors.items() if w == widths), None)
            ms.append(100.0 if widths == full else floor_ms[floor] if floor else
                      100.0 - rates[probe] * (cost(full)[0] - cost(widths)[0]) / 1e6)
        return ms

    return selection, measure_together, calls


@pytest.mark.parametrize("edge, expected", [(0.005, 16), (0.03, 32)])
def test_a_coarser_channel_multiple_must_beat_measurement_noise(edge, expected):
    """Timed together, 32 led the runner-up by 2.2 to 4.3% on ort-cpu in every round (reports/alignment_choice_cpu/):
    that wins; an edge under 1% does not, a coarser multiple costing the allocator granularity."""
    model = small_model("mobilenet_v2")
    selection, measure_together, calls = alignment_backend(model, {8: 0.8, 16: 1.0, 32: 1.0 + edge})
    align, measured = budget.best_alignment(model, SMALL_INPUT, selection, measure_together, target_ms=50.0)
    assert align == expected and measured["ms_saved_per_mmac"][32] == pytest.approx(1.0 + edge)
    configs = calls[0]  # one measurement, each network in it once, the unpruned network first
    assert len(calls) == 1 and all(a != b for i, a in enumerate(configs) for b in configs[:i])
    assert configs[0] == {e["id"]: e["width"] for e in selection["groups"]}


def test_the_chosen_multiple_keeps_the_target_reachable():
    """32 saves the most per MAC, but its narrowest network (every group at 32 channels) measures over the target."""
    model = small_model("mobilenet_v2")
    selection, measure_together, _ = alignment_backend(model, {8: 0.8, 16: 1.0, 32: 1.2}, floor_ms={8: 2.0, 16: 4.0, 32: 9.0})
    align, measured = budget.best_alignment(model, SMALL_INPUT, selection, measure_together, target_ms=5.0)
    assert align == 16 and measured["floor_ms"] == {8: 2.0, 16: 4.0, 32: 9.0}
    assert budget.best_alignment(model, SMALL_INPUT, selection, measure_together, target_ms=1.0)[0] == 8  # none: the finest


def test_a_fixed_cost_does_not_make_a_coarse_multiple_look_faster():
    """A backend indifferent to alignment: a fixed 2 ms plus time per MAC. Scored per MAC kept, 16 won here."""
    model = small_model("mobilenet_v2")
    cost = macs.width_cost_model(model, SMALL_INPUT, graph.list_groups(model, SMALL_INPUT))
    align, measured = budget.best_alignment(model, SMALL_INPUT, synthetic_selection(model),
                                            lambda configs: [2.0 + cost(widths)[0] / 1e7 for widths in configs], target_ms=50.0)
    assert align == 8 and measured["ms_saved_per_mmac"][8] == pytest.approx(measured["ms_saved_per_mmac"][32])


def test_the_alignment_probe_tells_the_multiples_apart_on_power_of_two_widths():
    """Half of 64, 128, 256 and 512 channels is a multiple of 8, 16 and 32 alike: probed at half, ResNet-18's three
    candidates were one network. At 0.6 they are three."""
    model = small_model("resnet18")
    full = {g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)}
    at = lambda ratio: [budget.aligned_widths(full, ratio, align, full) for align in (8, 16, 32)]
    assert at(0.5)[0] == at(0.5)[1] == at(0.5)[2]
    assert at(0.6)[0] != at(0.6)[1] != at(0.6)[2] != at(0.6)[0]


def test_relative_latency_target_is_judged_against_the_unpruned_network_measured_back_to_back():
    """stop16's demo: the VM slowed by 6% between the start and the final bench; 0.487x of the unpruned network
    measured beside it is inside the window for 0.5x, though 1.033 of the target fixed at the start."""
    verdict = report.latency_verdict("0.5x", start_ms=13.039, target_ms=6.5195, unpruned_ms=13.839, pruned_ms=6.736)
    assert verdict["inside"] and verdict["ratio"] == pytest.approx(6.736 / 6.9195)
    assert verdict["against_start_target"] == pytest.approx(1.033, abs=1e-3) and "13.839" in verdict["text"]
    slower = report.latency_verdict("0.5x", start_ms=13.039, target_ms=6.5195, unpruned_ms=13.039, pruned_ms=6.736)
    assert not slower["inside"] and "outside" in slower["text"]


def test_absolute_latency_target_is_judged_as_it_stands():
    verdict = report.latency_verdict("6.5ms", start_ms=13.0, target_ms=6.5, unpruned_ms=14.0, pruned_ms=6.6)
    assert not verdict["inside"] and verdict["ratio"] == pytest.approx(6.6 / 6.5)
    assert report.latency_verdict("6.5ms", start_ms=13.0, target_ms=6.5, unpruned_ms=12.0, pruned_ms=6.2)["inside"]


def test_l1_baselines_bracket_a_latency_their_rounding_jumps_over(tmp_path, monkeypatch):
    """When a baseline's ratios jump over the window (Torch-Pruning's round_to 32 went from 5.29 to 7.15 ms between two
    adjacent ratios on ort-cpu), the nearest ratio over the pruned model's latency is fine-tuned too; when the bisection
    lands inside the window, only that ratio is."""
    model = small_model("mobilenet_v2")
    arch = graph.make_arch("mobilenet_v2", 10, 1, "small", SMALL_INPUT)
    cliff = {"l1_ratio": 0.0, "tp_l1_ratio": 3.0}  # ms added above ratio 0.6: smooth for uniform L1, a jump for TP

    def fake_latency(make_networks, key):
        name, ratio = next((k, v) for k, v in key.items() if k.endswith("ratio"))
        return [10 * ratio + (cliff[name] if ratio > 0.6 else 0.0)]

    @contextlib.contextmanager
    def against_unpruned(config, unpruned, input_size, unpruned_ms, cache_path):
        yield fake_latency

    monkeypatch.setattr(timing, "latency_against_unpruned", against_unpruned)
    monkeypatch.setattr(pipeline, "fine_tune", lambda config, teacher, data, rebuilt, tuned: {"top1": 0.5})
    bench = {"rows": [{"model": "unpruned", "median_ms": 14.0}, {"model": "pruned", "median_ms": 7.0}]}
    rows = pipeline.compare_l1({}, model, arch, None, bench, 8, tmp_path)["baselines"]
    uniform = [row for row in rows if row["name"] == "uniform L1"]
    bracket = sorted((row for row in rows if row["name"].startswith("Torch-Pruning")), key=lambda row: row["measured_ms"])
    assert len(uniform) == 1 and 0.9 * 7.0 <= uniform[0]["measured_ms"] <= 7.0
    assert len(bracket) == 2 and bracket[0]["measured_ms"] <= 6.0 and bracket[1]["measured_ms"] > 9.0
    assert bracket[1]["ratio"] - bracket[0]["ratio"] < 0.01  # the neighbours of the jump, not any ratio over it
    assert (tmp_path / "tp_l1_over_rebuilt.pt").is_file() and not (tmp_path / "l1_over_rebuilt.pt").exists()


def test_the_guard_survives_a_channel_multiple():
    """--align 8 for a MACs target: the uniform widths rounded up to the multiple overshoot the budget, so the guard
    is rounded down instead of dropped. Dropped, a curve that calls a group free cut it to 8 channels."""
    model = small_model("mobilenet_v2")
    full = count_macs_params(model, SMALL_INPUT)[0]
    selection = synthetic_selection(model)
    free = selection["groups"][4]
    free["curve"]["loss"] = [0.0] * len(free["curve"]["k"])
    uniform, _ = budget.uniform_widths(model, SMALL_INPUT, 0.5 * full)
    widths, report = budget.allocate(model, SMALL_INPUT, selection, 0.5 * full, align=8, min_share=1.0)
    assert all(widths[gid] >= max(8, uniform[gid] // 8 * 8) for gid in uniform)
    assert widths[free["id"]] > 8
    assert 0.98 * report["target"] <= report["reached"] <= report["target"]


def test_the_allocation_names_every_group_that_cannot_shrink():
    """A group no wider than the channel multiple keeps its width as surely as one selection skipped; both are named,
    with the reason, in the allocation and the report (the multiple-32 runs once said 'none')."""
    model = small_model("mobilenet_v2")
    selection = synthetic_selection(model)
    skipped = selection["groups"].pop(5)
    narrow = sorted(e["id"] for e in selection["groups"] if e["width"] <= 16)
    assert narrow  # MobileNetV2's 16-channel stream
    measure, _ = fake_latency(model)
    full = {g.id: g.width for g in graph.list_groups(model, SMALL_INPUT)}
    full_ms = measure(full)
    full_macs = count_macs_params(model, SMALL_INPUT)[0]
    for widths, allocation in (budget.allocate(model, SMALL_INPUT, selection, 0.5 * full_macs, align=16),
                               budget.allocate_latency(model, SMALL_INPUT, selection, 0.6 * full_ms, measure, align=16)):
        fixed = allocation["cannot_shrink"]
        assert sorted(fixed) == sorted(narrow + [skipped["id"]])
        assert fixed[skipped["id"]] == "not selected" and all("multiple 16" in fixed[gid] for gid in narrow)
        assert all(widths[gid] == full[gid] for gid in fixed)  # kept whole
        assert f"{narrow[0]} ({fixed[narrow[0]]})" in report._fixed_groups_line(allocation)
    assert report._fixed_groups_line({"cannot_shrink": {}}) == "none"
