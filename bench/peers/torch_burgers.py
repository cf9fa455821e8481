#!/usr/bin/env python3
"""PyTorch taking examples/pinn.cpp's Burgers training step, for a side-by-side time per step.

Usage: torch_burgers.py [--steps N] [--points N] [--boundary N] [--threads N]
                        [--device cpu|cuda] [--modes autograd,func]

The problem and network are pinn's: u_t + u u_x - (0.01/pi) u_xx = 0 on t in [0, 1],
x in [-1, 1], u(0, x) = -sin(pi x), u(t, +-1) = 0; an MLP 2-20x9-1 with tanh (inputs (t, x)),
10,000 fixed collocation and 100 fixed initial/boundary points, Adam (lr 1e-3); a step is the
residual's mean square plus the boundary MSE, its gradient, and the update. The derivatives,
per mode:
  autograd  the usual PINN code: torch.autograd.grad for (u_t, u_x), then again for u_xx, all with
            create_graph=True
  func      torch.func: vmap over the points of jacrev for the gradient and of the Hessian
            (jacfwd of jacrev) for u_xx
Prints one line per mode: ms a step over --steps steps after one warm-up step, the torch version,
its threads and CPU capability.
"""
import argparse
import math
import time

import torch

from torch_pinn import tanh_mlp

NU = 0.01 / math.pi


def make_model(device):
    return tanh_mlp([2] + [20] * 9 + [1], device)


def derivatives_autograd(model, x):
    x = x.requires_grad_(True)
    u = model(x)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    u_t, u_x = g[:, 0], g[:, 1]
    (gx,) = torch.autograd.grad(u_x.sum(), x, create_graph=True)
    return u[:, 0], u_t, u_x, gx[:, 1]


def derivatives_func(model, x):
    from torch.func import functional_call, hessian, jacrev, vmap
    params = dict(model.named_parameters())

    def u_of(p, point):
        return functional_call(model, p, (point.unsqueeze(0),))[0, 0]

    g = vmap(lambda point: jacrev(u_of, argnums=1)(params, point))(x)
    h = vmap(lambda point: hessian(u_of, argnums=1)(params, point))(x)
    return model(x)[:, 0], g[:, 0], g[:, 1], h[:, 1, 1]


def points(n, n_b, device):
    gen = torch.Generator().manual_seed(42)
    xf = torch.stack([torch.rand(n, generator=gen), -1 + 2 * torch.rand(n, generator=gen)], 1)
    side = torch.arange(n_b) % 3
    t = torch.where(side == 2, torch.zeros(n_b), torch.rand(n_b, generator=gen))
    x = torch.where(side == 0, -torch.ones(n_b),
                    torch.where(side == 1, torch.ones(n_b), -1 + 2 * torch.rand(n_b, generator=gen)))
    ub = torch.where(side == 2, -torch.sin(math.pi * x), torch.zeros(n_b))
    return xf.to(device), torch.stack([t, x], 1).to(device), ub.to(device)


def run(mode, args):
    torch.manual_seed(1)
    model = make_model(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xf, xb, ub = points(args.points, args.boundary, args.device)
    of = derivatives_func if mode == "func" else derivatives_autograd

    def step():
        opt.zero_grad(set_to_none=True)
        u, u_t, u_x, u_xx = of(model, xf)
        r = u_t + u * u_x - NU * u_xx
        loss = (r ** 2).mean() + ((model(xb)[:, 0] - ub) ** 2).mean()
        loss.backward()
        opt.step()
        return loss

    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    step()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync()
    return (time.perf_counter() - start) / args.steps, float(loss.detach())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--boundary", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default="autograd,func")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else "cpu " + torch.backends.cpu.get_cpu_capability())
    for mode in args.modes.split(","):
        try:
            seconds, loss = run(mode, args)
            print(f"torch {torch.__version__} {mode} on {where}, {torch.get_num_threads()} threads: "
                  f"{1e3 * seconds:.3f} ms a step (loss {loss:.3e})", flush=True)
        except Exception as e:  # a mode this torch cannot run is reported, not hidden
            print(f"torch {torch.__version__} {mode}: failed: {type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''}", flush=True)


if __name__ == "__main__":
    main()
