#!/usr/bin/env python3
"""PyTorch running descent's benchmark workloads (bench/workloads.json), for side-by-side numbers.

Usage: torch_peer.py --device cpu|cuda [--out FILE.json] [--threads N] [--quick]
                     [--only NAMES] [--modes eager,compile-default,...] [--precisions fp32,bf16]
Modes: eager (torch.optim.SGD with fused=True where this torch has it, on the CPU as on the GPU:
its fastest eager update), and where torch.compile exists, every
compile mode: compile-default, compile-max-autotune-no-cudagraphs and compile-reduce-overhead
(on the CPU the last has no CUDA graph to use and runs as Inductor's default code). bf16 rows run
under torch.autocast(device, torch.bfloat16), fp32 master weights, as PyTorch users train in
bf16. Times are medians of CUDA-event (GPU) or perf_counter (CPU) measurements after warm-up;
inputs rotate among several batches. The JSON's context says which torch, BLAS/oneDNN and CPU
ISA ran (torch.__config__.show(), torch.backends.cpu.get_cpu_capability(), /proc/cpuinfo).

The pinned PyPI wheel is what tools/bench.sh installs into .venv-peer (see PEER_TORCH there).
"""
import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def step_flops(widths, batch):
    # forward 2·B·n_in·n_out per layer, backward 4·B·n_in·n_out except the first layer's dX.
    total = 0
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        total += (4 if i == 0 else 6) * batch * a * b
    return total


def make_model(widths, activation, device):
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
           "gelu": lambda: torch.nn.GELU(approximate="tanh")}[activation]
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i + 2 < len(widths):
            layers.append(act())
    return torch.nn.Sequential(*layers).to(device)


class Timer:
    def __init__(self, device):
        self.cuda = device == "cuda"

    def run(self, fn, warmup, repeats):
        for _ in range(warmup):
            fn()
        times = []
        if self.cuda:
            torch.cuda.synchronize()
            for _ in range(repeats):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
        else:
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)


def set_precision(precision, device):
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def make_optimizer(cls, params, fused, **kwargs):
    """cls(params, fused=True, ...) where this torch has a fused kernel for it on this device (the
    fastest eager update; 2.15 has one on the CPU too), else cls(params, ...)."""
    params = list(params)
    if fused:
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            pass
    return cls(params, **kwargs)


def fused_name(opt):
    return "fused" if opt.defaults.get("fused") else "default"


def bench_step(w, batch, precision, mode, device, timer, quick):
    torch.manual_seed(0)
    widths = w["widths"]
    model = make_model(widths, w["activation"], device)
    # Compiled CPU steps leave the update to Inductor, which writes its own loop for it; on the GPU
    # every mode keeps the fused kernel (as the GPU runs so far measured it).
    opt = make_optimizer(torch.optim.SGD, model.parameters(), mode == "eager" or device == "cuda",
                         lr=0.01, momentum=0.9)
    rotate = 4
    xs = [torch.randn(batch, widths[0], device=device) for _ in range(rotate)]
    if w["loss"] == "softmax_cross_entropy":
        ys = [torch.randint(0, widths[-1], (batch,), device=device) for _ in range(rotate)]
        loss_fn = torch.nn.functional.cross_entropy
    else:
        ys = [torch.randn(batch, widths[-1], device=device) for _ in range(rotate)]
        loss_fn = torch.nn.functional.mse_loss
    dtype = torch.bfloat16 if precision == "bf16" else None

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        if dtype is not None:
            with torch.autocast(device_type=device, dtype=dtype):
                loss = loss_fn(model(x), y)
        else:
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    if mode != "eager":
        if not hasattr(torch, "compile"):
            return None
        torch._dynamo.reset()  # each configuration compiles afresh (no recompile limit hit)
        step = torch.compile(step, mode=None if mode == "compile-default" else mode[len("compile-"):])
    counter = [0]

    def one():
        i = counter[0] % rotate
        counter[0] += 1
        step(xs[i], ys[i])

    warmup, repeats = (3, 10) if quick else (10, 50)
    if mode != "eager":
        warmup += 5
    seconds = timer.run(one, warmup, repeats)
    return seconds, step_flops(widths, batch)


def bench_op(op, device, timer, quick):
    cpu = device == "cpu"
    name = op["name"]
    warmup, repeats = (3, 10) if quick else (10, 50)
    if name == "sgd_momentum":
        n = op["cpu_params" if cpu else "params"]
        p = torch.randn(n, device=device, requires_grad=True)
        p.grad = torch.randn(n, device=device)
        opt = make_optimizer(torch.optim.SGD, [p], True, lr=0.01, momentum=0.9)
        opt.step()
        # reads p, g, m; writes p, m
        return timer.run(opt.step, warmup, repeats), 0, 20 * n, f"n={n}"
    if name == "adamw":
        n = op["cpu_params" if cpu else "params"]
        p = torch.randn(n, device=device, requires_grad=True)
        p.grad = torch.randn(n, device=device)
        opt = make_optimizer(torch.optim.AdamW, [p], True, lr=1e-3, weight_decay=0.01)
        opt.step()
        # reads p, g, m, v; writes p, m, v
        return timer.run(opt.step, warmup, repeats), 0, 28 * n, f"n={n}"
    if name == "clip_grad_norm":
        n = op["cpu_params" if cpu else "params"]
        p = torch.randn(n, device=device, requires_grad=True)
        p.grad = torch.randn(n, device=device)
        # reads the gradient for the norm (torch then also scales it in place when clipping)
        fn = lambda: torch.nn.utils.clip_grad_norm_([p], 1e9)
        return timer.run(fn, warmup, repeats), 0, 4 * n, f"n={n}"
    rows = op["cpu_rows" if cpu else "rows"]
    cols = op["cols"]
    x = torch.randn(rows, cols, device=device, requires_grad=True)
    if name == "softmax_cross_entropy":
        y = torch.randint(0, cols, (rows,), device=device)
        fn = lambda: torch.nn.functional.cross_entropy(x, y).backward()
        nbytes = 8 * rows * cols + 4 * rows
    else:
        y = torch.randn(rows, cols, device=device)
        fn = lambda: torch.nn.functional.mse_loss(x, y).backward()
        nbytes = 12 * rows * cols
    return timer.run(fn, warmup, repeats), 0, nbytes, f"{rows}x{cols}"


COMPILE_MODES = ["compile-default", "compile-max-autotune-no-cudagraphs", "compile-reduce-overhead"]


def cpu_flags():
    """The matrix and vector extensions this CPU reports (amx*, avx512*), sorted."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((l.split(":", 1)[1].split() for l in f if l.startswith("flags")), [])
    except OSError:
        return ""
    return " ".join(sorted(x for x in set(flags) if x.startswith(("amx", "avx512")) or x in ("avx2", "fma")))


def build_config():
    """The lines of torch.__config__.show() that name the BLAS, oneDNN and CPU capability."""
    lines = [l.strip(" -") for l in torch.__config__.show().splitlines()]
    keep = [l for l in lines if re.search(r"Math Kernel Library|MKL-DNN|oneDNN|OpenBLAS|CPU capability", l)]
    blas = re.search(r"BLAS_INFO=([^,]+)", torch.__config__.show())
    if blas:
        keep.append("BLAS_INFO=" + blas.group(1))
    return "; ".join(keep)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--workloads", default=os.path.join(HERE, "..", "workloads.json"))
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--modes", default="", help="comma-separated modes (default: eager and every compile mode)")
    ap.add_argument("--precisions", default="", help="comma-separated precisions (default: workloads.json's)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    spec = json.load(open(args.workloads))
    device = args.device
    timer = Timer(device)
    only = set(filter(None, args.only.split(",")))
    precisions = spec["precisions"]["cpu" if device == "cpu" else "cuda"]
    if args.precisions:
        precisions = args.precisions.split(",")
    modes = ["eager"] + (COMPILE_MODES if hasattr(torch, "compile") else [])
    if args.modes:
        modes = [m for m in args.modes.split(",") if m in modes]
    results = []
    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu_model)
    except OSError:
        pass
    context = {"tool": "torch_peer", "torch": torch.__version__, "device": device,
               "card": torch.cuda.get_device_name() if device == "cuda" else cpu_model,
               "torch_config": build_config(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "cpu_flags": cpu_flags(), "threads": torch.get_num_threads(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    probe = torch.zeros(1, device=device, requires_grad=True)
    context["eager_update"] = fused_name(make_optimizer(torch.optim.SGD, [probe], True, lr=0.1))
    print(f"torch {context['torch']} ({context['torch_config']}); {context['cpu_capability']}; "
          f"eager SGD/AdamW update: {context['eager_update']}; "
          f"{context['card']}: {context['cpu_flags']}; {context['threads']} threads", flush=True)

    def save():
        # Written after every result, so a run cut short by a time limit keeps what it measured.
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"context": context, "benchmarks": results}, f, indent=1)

    set_precision("fp32", device)
    for op in spec["ops"]:
        if only and op["name"] not in only:
            continue
        if op["name"].startswith("jet_"):  # no such op in PyTorch: torch_burgers.py times the step
            continue
        seconds, flops, nbytes, shape = bench_op(op, device, timer, args.quick)
        results.append({"name": f"op/{op['name']}/{shape}/fp32/torch-eager", "seconds": seconds,
                        "bytes_per_s": nbytes / seconds})
        print(f"{results[-1]['name']:55s} {seconds * 1e3:9.3f} ms  {nbytes / seconds / 1e9:8.1f} GB/s", flush=True)
        save()
    for w in spec["steps"]:
        if only and w["name"] not in only:
            continue
        for batch in w["cpu_batches" if device == "cpu" else "batches"]:
            for precision in precisions:
                set_precision(precision, device)
                for mode in modes:
                    try:
                        r = bench_step(w, batch, precision, mode, device, timer, args.quick)
                    except Exception as e:  # a mode that fails is reported, not fatal
                        print(f"step/{w['name']}/b{batch}/{precision}/{mode}: failed: {e}", file=sys.stderr)
                        continue
                    if r is None:
                        continue
                    seconds, flops = r
                    results.append({"name": f"step/{w['name']}/b{batch}/{precision}/torch-{mode}",
                                    "seconds": seconds, "flops_per_s": flops / seconds,
                                    "samples_per_s": batch / seconds})
                    print(f"{results[-1]['name']:55s} {seconds * 1e3:9.3f} ms  {flops / seconds / 1e12:8.3f} TFLOP/s", flush=True)
                    save()


if __name__ == "__main__":
    main()
