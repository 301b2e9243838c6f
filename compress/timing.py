"""How a run times networks on its target backend: in turns with the unpruned network, cached in the run directory.

Every stage that needs a latency (the baseline, the reach check, the allocation's probes, the final bench, the L1
baselines) goes through these, so a resumed run reads back what an earlier one timed, and networks compared with each
other are timed under one protocol.
"""
import contextlib
import functools
import hashlib
import json
import tempfile
from pathlib import Path

from bench import latency
from compress import graph, io
from compress.errors import UserError
from export.tensorrt import TIMING_CACHE


def time_model(config, model, input_size, cache_path, key):
    """Latency statistics of ``model`` on the target backend, each the median of ``bench_rounds`` rounds (one round
    of a second read the unpruned teacher at 18.4 ms where the final bench read 23.6, reports/demo_cpu/stop24_ort_eval/),
    cached under ``key`` in the run directory."""
    return cached_timing(config, input_size, cache_path, lambda: time_back_to_back(config, [model], input_size)[0], key)


def cached_timing(config, input_size, cache_path, measure, *key):
    """``measure()``, kept in the run directory's latency cache under the timing settings and ``key``, so resuming
    the run does not time it again."""
    cache = io.read_json(cache_path) if cache_path.exists() else {}
    if not isinstance(cache, dict):  # edited outside the toolkit: its timings are unknown, so none is read back
        raise UserError(f"'{cache_path}' is not the latency cache this toolkit writes; delete it and run the same command "
                        "with --resume to time again")
    settings = latency.settings(config["backend"], config["batch_size"], config["precision"], input_size, config["threads"])
    full_key = json.dumps([settings, *key], sort_keys=True)
    if full_key not in cache:
        cache[full_key] = measure()
        io.write_json(cache_path, cache)
    return cache[full_key]


@contextlib.contextmanager
def latency_against_unpruned(config, unpruned, input_size, unpruned_ms, cache_path):
    """Yields ``measure(make_networks, key, rounds=1)``: for each network of the list ``make_networks()`` builds, its
    median latency (over ``rounds`` rounds) over the unpruned network's, all of them taking turns every iteration, times
    ``unpruned_ms``; cached under ``key`` in the run directory, and built only when the cache lacks it.

    A ratio, not a latency timed on its own: on a VM whose speed switches within seconds, one network timed
    alone measured 9.7 or 12.1 ms minutes apart, which moved the allocation's floor under its target and its slopes
    into the noise, while its ratio to the unpruned network timed in turns stayed within 0.44 to 0.56 over 50 trials
    (reports/paired_timing_cpu/). Networks to be compared with each other are best timed in one list: a drift then
    moves them alike (reports/alignment_choice_cpu/). The unpruned network is made deployable once (exported, or built
    on TensorRT) when a measurement is not in the cache.
    """
    with tempfile.TemporaryDirectory() as scratch:
        reference = functools.cache(lambda: latency.deployable(unpruned, config["backend"], config["batch_size"],
                                                               config["precision"], input_size, Path(scratch),
                                                               timing_cache(config)))

        def measure(make_networks, key, rounds=1):
            def in_turns():
                unpruned_timing, *timings = time_back_to_back(config, [reference(), *make_networks()], input_size, rounds)
                return {"unpruned": unpruned_timing, "networks": timings}

            timed = cached_timing(config, input_size, cache_path, in_turns, "in turns with the unpruned network", key,
                                 rounds)
            return [timing["median_ms"] / timed["unpruned"]["median_ms"] * unpruned_ms for timing in timed["networks"]]

        yield measure


def timing_cache(config):
    """TensorRT's timing cache of the run: every engine it builds shares it, and a new target keeps it (TARGET_FREE)."""
    return Path(config["out"]) / TIMING_CACHE


def time_widths(measure, arch, width_configs, rounds=1):
    """``measure`` (yielded by ``latency_against_unpruned``) of ``arch`` at each of ``width_configs`` (a list of
    {group: width}), cached under the widths themselves: a stage timing the networks another stage timed reads them
    back."""
    return measure(lambda: [graph.build_from_arch({**arch, "widths": widths}) for widths in width_configs],
                   key=hashlib.sha256(json.dumps(width_configs, sort_keys=True).encode()).hexdigest(), rounds=rounds)


def time_back_to_back(config, models, input_size, rounds=None):
    """Uncached statistics of ``models`` in interleaved rounds, each the median over them: by default ``bench_rounds``
    of them, the final bench's protocol."""
    per_model = latency.measure_rounds(models, config["backend"], config["batch_size"], config["precision"], input_size,
                                       rounds=rounds or config["bench_rounds"], min_iters=config["bench_iters"],
                                       min_seconds=config["bench_seconds"], warmup_seconds=config["bench_warmup"],
                                       threads=config["threads"], timing_cache=timing_cache(config))
    return [latency.median_over_rounds(model_rounds) for model_rounds in per_model]
