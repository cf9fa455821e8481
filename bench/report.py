#!/usr/bin/env python3
"""Merges bench_descent and PyTorch-peer JSON into docs/benchmarks.md, one section per machine.

Inputs: Google Benchmark JSON from `bench_descent --benchmark_out=x.json --benchmark_out_format=json`
(or gpu-check.sh's bench.json, {"bench_descent": {...}}), and JSON from
`bench/peers/torch_peer.py --out p.json`. Re-running for a machine replaces only its section
(between `<!-- machine: LABEL -->` and `<!-- end machine -->`) and its chart
docs/benchmarks-<slug>.svg; the other machines' sections are kept.

CPU (what tools/bench.sh does):
  bench/report.py --machine "CPU: <model>, N threads" --descent build/bench-cpu.json \\
      --peers build/peers-cpu.json
GPU, from a tools/gpu-check.sh run whose $OUT came back under FILES_AT:
  bench/report.py --machine "GPU: NVIDIA H200" --descent FILES_AT/bench.json \\
      --peers FILES_AT/peers.json --commit <the commit the GPU machine built>
(gpu-check.sh's defaults are short: for the table, run it with PEERS_ARGS="" and without
--descent_quick in BENCH_ARGS, and a GPU_CHECK_BUDGET that leaves the bench stages time.)

The target "wide bf16 step within 10% of its GEMMs alone" compares step/wide/bN/bf16 with a
benchmark named gemms/wide/bN/bf16 (the step's GEMMs alone); without both it reads "not measured".
"""
import argparse
import html
import json
import os
import re
import subprocess
import sys

TIME_SCALE_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
PREC_ORDER = {"fp32": 0, "tf32": 1, "bf16": 2}
COLORS = {"descent": "#1f77b4", "torch-eager": "#ff7f0e", "torch-compile-default": "#2ca02c",
          "torch-compile-reduce-overhead": "#9467bd", "torch-compile-max-autotune-no-cudagraphs": "#17becf", "torch-jit-trace": "#8c564b"}


def canonical(name):
    """step/fmnist/b256/fp32/iterations:3/manual_time -> step/fmnist/b256/fp32"""
    parts = [p for p in name.split("/") if not re.match(
        r"^(iterations|repeats|min_time|min_warmup_time|threads):|^(manual_time|real_time|process_time)$", p)]
    return "/".join(parts)


def load_descent(paths):
    """(context, {name: entry}, [(name, error)]) from Google Benchmark files of either shape."""
    context, results, errors, rounds = {}, {}, [], {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        runs = [doc] if "benchmarks" in doc else [v for v in doc.values() if isinstance(v, dict) and "benchmarks" in v]
        for run in runs:
            for k, v in run.get("context", {}).items():
                context.setdefault(k, v)
            for b in run["benchmarks"]:
                name = canonical(b.get("run_name", b["name"]))
                if b.get("error_occurred"):
                    errors.append((name, b.get("error_message", "error")))
                    continue
                if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
                    continue
                if b.get("run_type") == "iteration" and name in results and results[name].get("_median"):
                    continue
                e = dict(b)
                e["ms"] = b["real_time"] * TIME_SCALE_MS[b.get("time_unit", "ns")]
                e["_median"] = b.get("run_type") == "aggregate"
                rounds.setdefault(name, []).append(e)
    for name, entries in rounds.items():
        results[name] = median_of_rounds(entries)
    return context, results, errors


def median_of_rounds(entries):
    """The round with the median time (the lower one of an even count), with the spread of all
    rounds as lo_ms/hi_ms: several files (tools/bench.sh's alternating rounds) become one entry."""
    by_time = sorted(entries, key=lambda e: e["ms"])
    e = dict(by_time[(len(by_time) - 1) // 2])
    e["lo_ms"], e["hi_ms"], e["rounds"] = by_time[0]["ms"], by_time[-1]["ms"], len(by_time)
    return e


def load_peers(paths):
    """(context, {key: {mode: entry}}) where key matches the descent name (ops drop their /fp32)."""
    context, peers, rounds = {}, {}, {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        for k, v in doc.get("context", {}).items():
            context.setdefault(k, v)
        for b in doc["benchmarks"]:
            base, _, mode = b["name"].rpartition("/torch-")
            if base.startswith("op/") and base.endswith("/fp32"):
                base = base[:-5]
            rounds.setdefault((base, "torch-" + mode), []).append(dict(b, ms=b["seconds"] * 1e3))
    for (base, mode), entries in rounds.items():
        peers.setdefault(base, {})[mode] = median_of_rounds(entries)
    return context, peers


def si(x, unit):
    if x is None:
        return "—"
    for p, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g} {s}{unit}"
    return f"{x:.3g} {unit}"


def ms(x):
    if x is None:
        return "—"
    return f"{x / 1e3:.4g} s" if x >= 1e3 else f"{x:.4g} ms" if x >= 0.01 else f"{x * 1e3:.3g} µs"


def spread(e):
    """'12.3 ms (12.1–12.9, 3 rounds)' for an entry from several rounds, else its time."""
    if not e:
        return "—"
    if e.get("rounds", 1) < 2:
        return ms(e["ms"])
    return f"{ms(e['ms'])} ({ms(e['lo_ms'])}–{ms(e['hi_ms'])}, {e['rounds']} rounds)"


def frac(x):
    return "—" if x is None else f"{x:.2f}"


def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def times(x):
    return "—" if x is None else f"{x:.2f}×"


def step_key(name):
    _, workload, batch, prec = name.split("/")[:4]
    return workload, int(batch.lstrip("b")), PREC_ORDER.get(prec, 9), prec


def best(modes, prefix="torch-"):
    cands = [(e["ms"], m) for m, e in modes.items() if m.startswith(prefix)]
    return min(cands) if cands else (None, None)


def slug(label):
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:60] or "machine"


def git_commit():
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return h + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def targets(gpu, steps, res, peers, torch_version):
    """[(target, measured text, met: True/False/None)]"""
    out = []

    def step(name):
        return res.get(name), peers.get(name, {})

    d, p = step("step/fmnist/b256/fp32")
    eager = p.get("torch-eager", {}).get("ms")
    best_ms, best_mode = best(p)
    comp_ms, comp_mode = best(p, "torch-compile")
    if not gpu:
        # Every step ≥ 1.2× PyTorch's best mode (fp32: eager or any torch.compile mode; bf16:
        # the same under bf16 autocast), and the large fmnist step ≥ 80% of the sgemm ceiling.
        for n in steps:
            dn, pn = step(n)
            bm, bmode = best(pn)
            s = ratio(bm, dn and dn["ms"])
            out.append((f"{n[5:]} step ≥ 1.2× PyTorch's best mode",
                        f"{times(s)} vs {bmode[6:]} ({ms(bm)})" if s else "not measured", s and s >= 1.2))
        d, _ = step("step/fmnist/b4096/fp32")
        f = d and d.get("frac_gemm_ceiling")
        out.append(("fmnist b4096 fp32 step ≥ 80% of the sgemm ceiling",
                    f"{f:.0%} of the sgemm ceiling" if f is not None else "not measured", None if f is None else f >= 0.8))
        return out
    s = ratio(eager, d and d["ms"])
    out.append(("fmnist b256 fp32 step ≥ 3× faster than PyTorch eager",
                f"{times(s)} ({ms(d['ms'])} vs {ms(eager)})" if s else "not measured", s and s >= 3))
    s = ratio(comp_ms, d and d["ms"])
    out.append(("fmnist b256 fp32 step ≥ 1.3× faster than the best torch.compile mode",
                f"{times(s)} vs {comp_mode[6:]} ({ms(comp_ms)})" if s else "not measured", s and s >= 1.3))
    wide = [n for n in steps if n.startswith("step/wide/") and n.endswith("/bf16")]
    text, met = "not measured", None
    for n in wide:
        g = res.get("gemms" + n[4:])  # a gemms/wide/bN/bf16 benchmark: the step's GEMMs alone
        if n in res and g:
            over = res[n]["ms"] / g["ms"] - 1
            text, met = f"{n[5:]}: step {ms(res[n]['ms'])}, GEMMs alone {ms(g['ms'])} (+{over:.0%})", over <= 0.10
        elif n in res:
            text = f"{n[5:]}: step {ms(res[n]['ms'])}; not measured: no GEMMs-alone benchmark"
    out.append(("wide bf16 step within 10% of its GEMMs alone", text, met))
    for prefix, goal, label in (("op/sgd_momentum/", 0.9, "SGD (momentum) update ≥ 90% of copy bandwidth"),
                                ("op/adamw/", 0.9, "AdamW update ≥ 90% of copy bandwidth"),
                                ("op/sgd_momentum/", 0.9, "SGD (momentum) update ≥ 90% of the read-modify-write ceiling"),
                                ("op/adamw/", 0.9, "AdamW update ≥ 90% of the read-modify-write ceiling"),
                                ("op/softmax_cross_entropy/", 0.8,
                                 "softmax cross-entropy forward+backward ≥ 80% of its bandwidth floor")):
        e = next((res[n] for n in res if n.startswith(prefix)), None)
        rmw = "read-modify-write" in label
        if rmw and not (e and "frac_update_ceiling" in e):
            continue  # that ceiling is measured on the CPU only
        f = e and e.get("frac_update_ceiling" if rmw else "frac_copy_ceiling")
        what = "of the update ceiling" if rmw else "of copy"
        out.append((label, f"{f:.0%} {what} ({si(e['bytes_per_s'], 'B/s')})" if f is not None else "not measured",
                    None if f is None else f >= goal))
    return out


def svg_chart(steps, res, peers, title):
    """Horizontal bars per step (each step on its own scale): ms per step, shorter is better."""
    rows = []
    for n in steps:
        bars = [("descent", res[n]["ms"] if n in res else None)]
        bars += sorted(((m, e["ms"]) for m, e in peers.get(n, {}).items()), key=lambda b: list(COLORS).index(b[0]) if b[0] in COLORS else 99)
        rows.append((n[5:], bars))
    bar_h, gap, label_w, plot_w, width = 16, 4, 230, 420, 800
    y = 48
    body = []
    for name, bars in rows:
        body.append(f'<text x="8" y="{y + 12}" font-weight="bold">{html.escape(name)}</text>')
        y += 18
        top = max(v or 0 for _, v in bars) or 1
        for mode, v in bars:
            w = 0 if v is None else max(1.0, plot_w * v / top)
            body.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end">{html.escape(mode)}</text>'
                        f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLORS.get(mode, "#7f7f7f")}"/>'
                        f'<text x="{label_w + w + 6:.1f}" y="{y + 12}">{html.escape(ms(v) if v else "not measured")}</text>')
            y += bar_h + gap
        y += 12
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 8}" '
            f'font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n'
            f'<text x="8" y="20" font-size="15" font-weight="bold">{html.escape(title)}</text>\n'
            f'<text x="8" y="38" fill="#555">time per training step, shorter is better (each step on its own scale)</text>\n')
    return head + "\n".join(body) + "\n</svg>\n"


def section(args, dctx, res, errors, pctx, peers, svg_name):
    gpu = str(dctx.get("descent_device", pctx.get("device", ""))).startswith("cuda")
    steps = sorted({n for n in list(res) + list(peers) if n.startswith("step/")}, key=step_key)
    ops = sorted({n for n in list(res) + list(peers) if n.startswith("op/")})
    tv = pctx.get("torch", "not run")
    L = [f"<!-- machine: {args.machine} -->", f"## {args.machine}", ""]
    hw = pctx.get("card") if gpu else f"{dctx.get('num_cpus', '?')} CPUs at {dctx.get('mhz_per_cpu', '?')} MHz"
    L += [f"- Date: {dctx.get('date', '?')} (descent), {pctx.get('date', '—')} (PyTorch)",
          f"- Commit: `{args.commit or git_commit()}`",
          f"- descent: device `{dctx.get('descent_device', '?')}`, CPU GEMM {dctx.get('descent_cpu_gemm', '?')}, "
          f"{dctx.get('descent_threads', '?')} threads",
          f"- PyTorch {tv}: device `{pctx.get('device', '—')}`, {pctx.get('threads', '?')} threads"
          + (f"; {pctx['torch_config']}; CPU capability {pctx.get('cpu_capability', '?')}" if pctx.get("torch_config") else "")
          + (f"; eager mode's SGD/AdamW update: {pctx['eager_update']}" if pctx.get("eager_update") else ""),
          f"- {'Card' if gpu else 'CPU'}: {hw} (host {dctx.get('host_name', '?')})"]
    if not gpu and pctx.get("cpu_flags"):
        L.append(f"- CPU extensions: {pctx['cpu_flags']} (no `amx*`: no AMX on this CPU)"
                 if "amx" not in pctx["cpu_flags"] else f"- CPU extensions: {pctx['cpu_flags']}")
    if not gpu and dctx.get("descent_cpu_isa"):
        L.append(f"- descent's CPU paths: {dctx['descent_cpu_isa']}")
    if not gpu and dctx.get("load_avg"):
        L.append(f"- Load average when descent started: {', '.join(f'{x:.2f}' for x in dctx['load_avg'])}"
                 " (other work on the machine slows every number)")
    if not gpu and pctx and str(pctx.get("threads")) != str(dctx.get("descent_threads", pctx.get("threads"))):
        L.append(f"- **Thread counts differ** (descent {dctx.get('descent_threads')}, PyTorch {pctx.get('threads')}):"
                 " the comparison is not like for like")
    L += ["",
          f"![steps]({svg_name})", "", "### Training steps", "",
          "Forward + loss + backward + SGD (momentum) per step. Speed-up = PyTorch ms / descent ms.", "",
          "| step | descent | FLOP/s | of GEMM ceiling | PyTorch eager | best PyTorch | vs eager | vs best compile |",
          "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for n in steps:
        d, p = res.get(n), peers.get(n, {})
        dm = d and d["ms"]
        eager = p.get("torch-eager", {}).get("ms")
        bm, bmode = best(p)
        cm, _ = best(p, "torch-compile")
        L.append(f"| {n[5:]} | {spread(d) if d else 'not measured'} | {si(d and d.get('flop_per_s'), 'FLOP/s')} | "
                 f"{frac(d and d.get('frac_gemm_ceiling'))} | {spread(p.get('torch-eager'))} | "
                 f"{f'{bmode[6:]} {spread(p[bmode])}' if bmode else '—'} | {times(ratio(eager, dm))} | {times(ratio(cm, dm))} |")
    if not any(m.startswith("torch-compile") for p in peers.values() for m in p):
        L += ["", f"No torch.compile modes: PyTorch {tv} has none (or they were not run)."]
    fwd = sorted(n for n in res if n.startswith("forward/"))
    if fwd:
        L += ["", "### Forward passes (inference)", "",
              "| forward | descent | FLOP/s | of GEMM ceiling | samples/s |", "| --- | ---: | ---: | ---: | ---: |"]
        for n in fwd:
            d = res[n]
            L.append(f"| {n[8:]} | {ms(d['ms'])} | {si(d.get('flop_per_s'), 'FLOP/s')} | "
                     f"{frac(d.get('frac_gemm_ceiling'))} | {si(d.get('samples_per_s'), '/s')} |")
    L += ["", "### Ops", "", "| op | descent | bytes/s | of copy ceiling | of update ceiling | PyTorch | vs PyTorch |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in ops:
        d, t = res.get(n), peers.get(n, {}).get("torch-eager", {}).get("ms")
        L.append(f"| {n[3:]} | {ms(d['ms']) if d else 'not measured'} | {si(d and d.get('bytes_per_s'), 'B/s')} | "
                 f"{frac(d and d.get('frac_copy_ceiling'))} | {frac(d and d.get('frac_update_ceiling'))} | "
                 f"{ms(t)} | {times(ratio(t, d and d['ms']))} |")
    L += ["", "### Ceilings (measured in the same run)", "", "| ceiling | time | rate |", "| --- | ---: | ---: |"]
    for n, e in res.items():
        if n.startswith("ceiling/"):
            rate = si(e["flop_per_s"], "FLOP/s") if "flop_per_s" in e else si(e.get("bytes_per_s"), "B/s")
            L.append(f"| {n[8:]} | {ms(e['ms'])} | {rate} |")
    L += ["", "### Targets", "", "| target | measured | result |", "| --- | --- | --- |"]
    for goal, text, met in targets(gpu, steps, res, peers, tv):
        L.append(f"| {goal} | {text} | {'met' if met else 'not measured' if met is None else 'not met'} |")
    if errors:
        L += ["", "Not measured:", ""] + [f"- `{n}`: {m}" for n, m in errors]
    return "\n".join(L + ["<!-- end machine -->"]) + "\n", svg_chart(steps, res, peers, args.machine)


HEADER = """# Benchmarks

descent against PyTorch on the same workloads (bench/workloads.json), one section per machine.
Generated by `bench/report.py` (CPU: `tools/bench.sh`); rates are also given as fractions of
ceilings measured in the same run (a large GEMM, a large copy). Numbers from different sections
are not comparable with each other.
"""


def merge(doc, label, text):
    """Replaces the machine's section in doc (or appends it)."""
    pat = re.compile(r"<!-- machine: " + re.escape(label) + r" -->.*?<!-- end machine -->\n?", re.S)
    if pat.search(doc):
        return pat.sub(lambda _: text, doc, count=1)
    return doc.rstrip("\n") + "\n\n" + text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machine", required=True, help='section label, e.g. "GPU: NVIDIA H200"')
    ap.add_argument("--descent", action="append", default=[], help="bench_descent JSON (repeatable)")
    ap.add_argument("--peers", action="append", default=[], help="torch_peer.py JSON (repeatable)")
    ap.add_argument("--commit", help="commit measured (default: this checkout's HEAD)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md"))
    args = ap.parse_args()
    if not args.descent and not args.peers:
        ap.error("give --descent and/or --peers")
    dctx, res, errors = load_descent(args.descent)
    pctx, peers = load_peers(args.peers)
    svg_name = f"benchmarks-{slug(args.machine)}.svg"
    text, svg = section(args, dctx, res, errors, pctx, peers, svg_name)
    out = os.path.normpath(args.out)
    doc = open(out).read() if os.path.exists(out) else HEADER
    with open(out, "w") as f:
        f.write(merge(doc, args.machine, text))
    with open(os.path.join(os.path.dirname(out) or ".", svg_name), "w") as f:
        f.write(svg)
    print(f"wrote {out} and {svg_name} ({len(res)} descent results, {len(errors)} not measured, "
          f"{sum(map(len, peers.values()))} PyTorch results)", file=sys.stderr)


if __name__ == "__main__":
    main()
