#!/usr/bin/env python3
"""PyTorch taking examples/pinn.cpp's Burgers training step, for a side-by-side time per step.

Usage: torch_burgers.py [--steps N] [--points N] [--boundary N] [--threads N]
                        [--device cpu|cuda] [--modes autograd,func]
       torch_burgers.py --lbfgs N [--adam N] [--dtype float32|float64|mixed] [--points N] [--threads N]
                        [--seed N] [--boundary-sampling grid|uniform]

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

With --lbfgs N it trains instead, as examples/pinn.cpp does, to compare the accuracy reached:
--adam steps of Adam (lr 1e-3, default 0), then torch.optim.LBFGS (history 50, strong-Wolfe line
search, tolerance_grad 1e-9, tolerance_change 0) for up to N iterations in steps of 500, a stalled
step (fewer iterations than asked) restarted from a fresh history, three stalls in a row of fewer
than 10 iterations ending the run; Xavier-normal weights and zero biases (the published setup's
initialisation). It prints the relative L2 error on pinn's grid (t = 0..1 in 100 points, x in
256) against the Cole-Hopf solution evaluated by the same quadrature, in --dtype arithmetic
(mixed: the network in float32, L-BFGS on a float64 copy of the parameters).
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


def points(n, n_b, device, seed=0, grid=True):
    """Collocation points uniform in the domain; n_b initial/boundary points drawn without
    replacement from the error grid's 256 points at t = 0 and 100 on each of x = -1 and x = 1 (as
    the published code and pinn's default --boundary-sampling grid draw them), or with grid=False
    on x = -1, x = 1 and t = 0 in turn, uniform along each (pinn --boundary-sampling uniform)."""
    gen = torch.Generator().manual_seed(42 + seed)
    xf = torch.stack([torch.rand(n, generator=gen), -1 + 2 * torch.rand(n, generator=gen)], 1)
    if grid:
        f64 = torch.float64
        ts, xs = torch.linspace(0, 1, 100, dtype=f64), torch.linspace(-1, 1, 256, dtype=f64)
        pool = torch.cat([torch.stack([torch.zeros(256, dtype=f64), xs], 1),
                          torch.stack([ts, -torch.ones(100, dtype=f64)], 1),
                          torch.stack([ts, torch.ones(100, dtype=f64)], 1)])
        if n_b > len(pool):
            raise SystemExit(f"--boundary {n_b}: the grid has {len(pool)} points "
                             "(--boundary-sampling uniform draws any number)")
        chosen = pool[torch.randperm(len(pool), generator=gen)[:n_b]]
        t, x = chosen[:, 0], chosen[:, 1]
        ub = torch.where(t == 0, -torch.sin(math.pi * x), torch.zeros(n_b, dtype=f64))
        return xf.to(device), torch.stack([t, x], 1).float().to(device), ub.float().to(device)
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


def burgers_reference(t, x, n=2400):
    """pinn.cpp's burgers_reference, vectorised: the Cole-Hopf integrals by the trapezoidal rule
    in z over [-12, 12] in float64."""
    import numpy as np
    z = np.linspace(-12.0, 12.0, n + 1)
    w_end = np.ones_like(z)
    w_end[[0, -1]] = 0.5
    k = 1.0 / (2.0 * math.pi * NU)
    t = np.asarray(t, dtype=np.float64)[:, None]
    x = np.asarray(x, dtype=np.float64)[:, None]
    y = x - np.sqrt(4.0 * NU * np.maximum(t, 1e-300)) * z[None, :]
    w = np.exp(-k * np.cos(math.pi * y) - k - z[None, :] ** 2) * w_end
    u = -(np.sin(math.pi * y) * w).sum(1) / w.sum(1)
    return np.where(t[:, 0] <= 0.0, -np.sin(math.pi * x[:, 0]), u)


def train(args):
    import numpy as np
    dtype = torch.float32 if args.dtype == "mixed" else getattr(torch, args.dtype)
    torch.manual_seed(1 + args.seed)
    model = make_model(args.device).to(dtype)
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_normal_(m.weight)
            torch.nn.init.zeros_(m.bias)
    xf, xb, ub = (v.to(dtype) for v in points(args.points, args.boundary, args.device, args.seed,
                                                  args.boundary_sampling == "grid"))
    tg, xg = np.meshgrid(np.linspace(0.0, 1.0, 100), np.linspace(-1.0, 1.0, 256), indexing="ij")
    want = burgers_reference(tg.ravel(), xg.ravel())
    grid = torch.tensor(np.stack([tg.ravel(), xg.ravel()], 1), dtype=dtype, device=args.device)

    def error():
        with torch.no_grad():
            got = model(grid)[:, 0].double().cpu().numpy()
        return float(np.linalg.norm(got - want) / np.linalg.norm(want))

    def loss_of():
        u, u_t, u_x, u_xx = derivatives_autograd(model, xf.clone())
        r = u_t + u * u_x - NU * u_xx
        return (r ** 2).mean() + ((model(xb)[:, 0] - ub) ** 2).mean()

    start = time.perf_counter()
    print(f"torch {torch.__version__} {args.dtype}, {torch.get_num_threads()} threads: initial "
          f"error {error():.3e}", flush=True)
    if args.adam > 0:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(args.adam):
            opt.zero_grad(set_to_none=True)
            loss = loss_of()
            loss.backward()
            opt.step()
        print(f"adam {args.adam} steps: loss {float(loss):.3e}, error {error():.3e}, "
              f"{time.perf_counter() - start:.1f} s", flush=True)

    # --dtype mixed: the model evaluates in float32, L-BFGS iterates on a float64 copy of the
    # parameters (its history, directions and line search in float64), as scipy's L-BFGS-B drives
    # a float32 network in the published code.
    master = [p.detach().double().clone().requires_grad_(True) for p in model.parameters()]
    if args.dtype != "mixed":
        master = list(model.parameters())

    def make_lbfgs():
        return torch.optim.LBFGS(master, lr=1.0, max_iter=min(500, args.lbfgs - done),
                                 max_eval=1000,
                                 history_size=50, tolerance_grad=1e-9, tolerance_change=0.0,
                                 line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        if args.dtype == "mixed":
            with torch.no_grad():
                for p, m in zip(model.parameters(), master):
                    p.copy_(m)
        loss = loss_of()
        loss.backward()
        if args.dtype == "mixed":
            for p, m in zip(model.parameters(), master):
                m.grad = p.grad.double()
            return loss.double()
        return loss

    done, stalls = 0, 0
    opt = make_lbfgs()
    while done < args.lbfgs and stalls < 3:
        before = opt.state[master[0]].get("n_iter", 0)
        opt.step(closure)
        ran = opt.state[master[0]]["n_iter"] - before
        done += ran
        print(f"lbfgs {done:6d} iterations: loss {float(closure().detach()):.3e}, error {error():.3e}, "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        if ran < opt.defaults["max_iter"]:
            stalls = stalls + 1 if ran < 10 else 1
            opt = make_lbfgs()
        else:
            stalls = 0
    print(f"final relative L2 error {error():.3e} after {time.perf_counter() - start:.1f} s",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--points", type=int, default=10000)
    ap.add_argument("--boundary", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default="autograd,func")
    ap.add_argument("--lbfgs", type=int, default=0, help="train: L-BFGS iterations (see above)")
    ap.add_argument("--adam", type=int, default=0, help="train: Adam steps before L-BFGS")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "mixed"])
    ap.add_argument("--boundary-sampling", default="grid", choices=["grid", "uniform"],
                    help="initial/boundary points: from the error grid (default) or uniform")
    ap.add_argument("--seed", type=int, default=0,
                    help="train: other initial weights and points (0: those of the runs on record)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.lbfgs > 0:
        train(args)
        return
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
