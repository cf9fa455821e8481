"""Prints the trajectories tests/backends/test_lbfgs.cpp compares LBfgs with: torch.optim.LBFGS on
f(a, b) = (a - 1)^4 + (a + 2b)^2 + b^2 / 2 from (-1.5, 2), max_iter 4, history_size 3, five step()
calls, with the strong-Wolfe line search (lr 1) and with fixed steps (lr 0.5): per call the loss
it returned, the parameters after it, state["func_evals"] and state["n_iter"]. float32 by
default; --float64 shows how far rounding alone moves the path (under 2e-6 here).

    .venv-peer/bin/python bench/peers/torch_lbfgs_reference.py [--float64]
"""
import sys

import torch

dtype = torch.float64 if "--float64" in sys.argv[1:] else torch.float32

for strong_wolfe, lr in ((True, 1.0), (False, 0.5)):
    x = torch.tensor([-1.5, 2.0], dtype=dtype, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=lr, max_iter=4, history_size=3,
                            line_search_fn="strong_wolfe" if strong_wolfe else None)

    def closure():
        opt.zero_grad()
        f = (x[0] - 1) ** 4 + (x[0] + 2 * x[1]) ** 2 + 0.5 * x[1] ** 2
        f.backward()
        return f

    print(f"torch {torch.__version__}, {dtype}, strong_wolfe={strong_wolfe}, lr={lr}:")
    for _ in range(5):
        loss = float(opt.step(closure).detach())
        state = opt.state[x]
        print("{%.9g, %.9g, %.9g, %d, %d}," % (loss, float(x[0].detach()), float(x[1].detach()),
                                               state["func_evals"], state["n_iter"]))
