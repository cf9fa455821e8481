#!/usr/bin/env python3
"""PyTorch solving examples/poisson.cpp's problem, for a side-by-side time per training step.

Usage: torch_pinn.py [--steps N] [--interior N] [--boundary N] [--threads N]
                     [--device cpu|cuda] [--modes autograd,func,compile]

The problem: -Δu = f on the unit square, u = 0 on its boundary, f = 2π² sin(πx) sin(πy); an MLP
2-32-32-32-1 with tanh, Adam (lr 2e-3, cosine schedule), each step a fresh draw of interior and
boundary points, loss = mean((-Δu - f)²) + mean(u_boundary²). The Laplacian, per mode:
  autograd  the usual PINN code: torch.autograd.grad twice with create_graph=True
  func      torch.func: vmap over the points of the Hessian's trace (jacfwd of jacrev)
  compile   the autograd step under torch.compile (modes it cannot compile are reported as such)
Prints one line per mode: steps per second, ms a step, the final relative L2 error on a 101 × 101
grid, the torch version and the CPU capability (torch.backends.cpu.get_cpu_capability()).
"""
import argparse
import math
import time

import torch


def tanh_mlp(widths, device):
    """Linear layers of these widths with tanh between them (none after the last), as descent's
    Mlp with tanh hidden layers (torch_burgers.py uses it too)."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i + 2 < len(widths):
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers).to(device)


def make_model(device):
    return tanh_mlp([2, 32, 32, 32, 1], device)


def laplacian_autograd(model, x):
    x = x.requires_grad_(True)
    u = model(x)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    lap = 0
    for k in range(x.shape[1]):
        (gk,) = torch.autograd.grad(g[:, k].sum(), x, create_graph=True)
        lap = lap + gk[:, k]
    return u[:, 0], lap


def laplacian_func(model, x):
    from torch.func import functional_call, hessian, vmap
    params = dict(model.named_parameters())

    def u_of(p, point):
        return functional_call(model, p, (point.unsqueeze(0),))[0, 0]

    lap = vmap(lambda point: torch.trace(hessian(u_of, argnums=1)(params, point)))(x)
    return model(x)[:, 0], lap


def draw(n_int, n_b, device, gen):
    xi = torch.rand(n_int, 2, generator=gen).to(device)
    f = 2 * math.pi**2 * torch.sin(math.pi * xi[:, 0]) * torch.sin(math.pi * xi[:, 1])
    s = torch.rand(n_b, generator=gen)
    side = torch.randint(0, 4, (n_b,), generator=gen)
    xb = torch.stack([torch.where(side < 2, s, (side == 2).float()),
                      torch.where(side < 2, (side == 1).float(), s)], 1).to(device)
    return xi, f, xb


def relative_error(model, device):
    g = torch.linspace(0, 1, 101)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).to(device)
    with torch.no_grad():
        u = model(pts)[:, 0].cpu()
    want = torch.sin(math.pi * pts[:, 0].cpu()) * torch.sin(math.pi * pts[:, 1].cpu())
    return float(torch.linalg.norm(u - want) / torch.linalg.norm(want))


def run(mode, args):
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    model = make_model(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    lap_of = laplacian_func if mode == "func" else laplacian_autograd

    def step(xi, f, xb):
        opt.zero_grad(set_to_none=True)
        _, lap = lap_of(model, xi)
        loss = ((-lap - f) ** 2).mean() + (model(xb) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        return loss

    if mode == "compile":
        step = torch.compile(step)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    step(*draw(args.interior, args.boundary, args.device, gen))  # warm-up (compiles)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps - 1):
        step(*draw(args.interior, args.boundary, args.device, gen))
    sync()
    seconds = time.perf_counter() - start
    return (args.steps - 1) / seconds, relative_error(model, args.device)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--interior", type=int, default=1024)
    ap.add_argument("--boundary", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--modes", default="autograd,func,compile")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else "cpu " + torch.backends.cpu.get_cpu_capability())
    for mode in args.modes.split(","):
        try:
            rate, err = run(mode, args)
            print(f"torch {torch.__version__} {mode} on {where}, {torch.get_num_threads()} threads: "
                  f"{rate:.1f} steps per second ({1e3 / rate:.3f} ms a step), "
                  f"relative L2 error {err:.4f}", flush=True)
        except Exception as e:  # a mode this torch cannot run is reported, not hidden
            print(f"torch {torch.__version__} {mode}: failed: {type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''}", flush=True)


if __name__ == "__main__":
    main()
