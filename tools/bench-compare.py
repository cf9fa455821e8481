#!/usr/bin/env python3
"""Compares a benchmark run of bench_descent with a stored baseline from the same device.

    tools/bench-compare.py BASELINE.json CURRENT.json [--max-regression 10] [--filter '^step/']

Both files are bench_descent's JSON (--benchmark_out=x.json --benchmark_out_format=json), in
the schema of docs/bench-json.md (context.descent_bench_schema == "1"), or an object mapping
binary names to such JSON (tools/gpu-check.sh's bench.json). The benchmarks whose stable name
matches --filter (default: the whole training steps) are compared by real time per step; the
command fails when one is slower than its baseline by more than --max-regression percent, when
one of the baseline's is missing from the current run, or when the two runs are not from the
same device (context.descent_device_name: the GPU model or the CPU model) unless --any-device.

Exit status: 0 no regression, 1 a regression or a missing benchmark, 2 unusable input.
Python 3 standard library only.
"""
import argparse
import json
import re
import sys

SCHEMA = "1"
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
# Google Benchmark appends run options to a name; the stable name leaves them out.
RUN_OPTIONS = re.compile(r"/(iterations|repeats|threads|min_time|min_warmup_time):[^/]+|/manual_time|/real_time")


class InputError(Exception):
    pass


def stable_name(name):
    return RUN_OPTIONS.sub("", name)


def load_runs(path):
    """The bench_descent runs in a file: one Google Benchmark JSON, or a map of several."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read benchmark JSON: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(data).__name__}")
    if "benchmarks" in data:
        return [(path, data)]
    runs = [(f"{path}:{key}", value) for key, value in data.items()
            if isinstance(value, dict) and "benchmarks" in value]
    if not runs:
        raise InputError(f"{path}: no 'benchmarks' array (not bench_descent --benchmark_out JSON)")
    return runs


def read_file(path):
    """(context of the first run, {stable name: seconds per step}) of one file."""
    context = None
    times = {}
    for where, run in load_runs(path):
        ctx = run.get("context", {})
        schema = ctx.get("descent_bench_schema")
        if schema != SCHEMA:
            raise InputError(f"{where}: context.descent_bench_schema is {schema!r}, expected "
                             f"{SCHEMA!r} (docs/bench-json.md); rerun the benchmark with this "
                             f"version of bench_descent")
        if context is None:
            context = ctx
        for b in run["benchmarks"]:
            if b.get("error_occurred"):
                continue
            # With repetitions, compare medians; otherwise the single iteration run.
            if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                continue
            unit = b.get("time_unit", "ns")
            if unit not in UNIT_SECONDS or not isinstance(b.get("real_time"), (int, float)):
                raise InputError(f"{where}: benchmark {b.get('name')!r} has no usable real_time/time_unit")
            name = stable_name(b.get("run_name", b["name"]))
            if b.get("run_type") == "aggregate" or name not in times:
                times[name] = b["real_time"] * UNIT_SECONDS[unit]
    return context or {}, times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("baseline")
    p.add_argument("current")
    p.add_argument("--max-regression", type=float, default=10.0, metavar="PERCENT",
                   help="largest allowed slowdown of one benchmark, in percent (default 10)")
    p.add_argument("--filter", default=r"^step/", metavar="REGEX",
                   help="benchmarks to compare, by stable name (default '^step/': training steps)")
    p.add_argument("--any-device", action="store_true",
                   help="compare runs from different devices (the result means little)")
    p.add_argument("--allow-missing", action="store_true",
                   help="a baseline benchmark missing from the current run is not a failure")
    args = p.parse_args(argv)
    try:
        base_ctx, base = read_file(args.baseline)
        cur_ctx, cur = read_file(args.current)
        selected = re.compile(args.filter)
    except (InputError, re.error) as e:
        print(f"bench-compare: {e}", file=sys.stderr)
        return 2

    for key in ("descent_device_name", "descent_device"):
        b, c = base_ctx.get(key), cur_ctx.get(key)
        if b != c and not args.any_device:
            print(f"bench-compare: the runs are from different devices ({key}: baseline {b!r}, "
                  f"current {c!r}); store a baseline from this device, or pass --any-device",
                  file=sys.stderr)
            return 2
    print(f"baseline: {args.baseline} ({base_ctx.get('descent_device_name')}, descent "
          f"{base_ctx.get('descent_version')} {base_ctx.get('descent_git_commit')})")
    print(f"current:  {args.current} ({cur_ctx.get('descent_device_name')}, descent "
          f"{cur_ctx.get('descent_version')} {cur_ctx.get('descent_git_commit')})")

    names = sorted(n for n in base if selected.search(n))
    if not names:
        print(f"bench-compare: no baseline benchmark matches --filter {args.filter!r}", file=sys.stderr)
        return 2
    failures = []
    width = max(len(n) for n in names)
    print(f"{'benchmark':<{width}}  {'baseline':>12}  {'current':>12}  {'change':>8}")
    for name in names:
        if name not in cur:
            print(f"{name:<{width}}  {base[name] * 1e3:>10.4f}ms  {'missing':>12}")
            if not args.allow_missing:
                failures.append(f"{name}: missing from the current run")
            continue
        change = (cur[name] / base[name] - 1.0) * 100.0
        verdict = ""
        if change > args.max_regression:
            verdict = f"  REGRESSION (> {args.max_regression:g}%)"
            failures.append(f"{name}: {change:+.1f}% ({base[name] * 1e3:.4f} ms -> {cur[name] * 1e3:.4f} ms)")
        print(f"{name:<{width}}  {base[name] * 1e3:>10.4f}ms  {cur[name] * 1e3:>10.4f}ms  {change:>+7.1f}%{verdict}")
    new = sorted(n for n in cur if selected.search(n) and n not in base)
    for name in new:
        print(f"{name:<{width}}  {'new':>12}  {cur[name] * 1e3:>10.4f}ms")
    if failures:
        print(f"bench-compare: FAILED, {len(failures)} of {len(names)} benchmarks:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print(f"bench-compare: passed ({len(names)} benchmarks within {args.max_regression:g}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
