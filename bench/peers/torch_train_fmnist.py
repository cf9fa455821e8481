#!/usr/bin/env python3
"""PyTorch running descent's main job: `descent train` with its defaults, on the CPU.

The same recipe: Fashion-MNIST from the IDX files (bytes mapped to [0, 1]), a 784-512-256-10
relu MLP with PyTorch's default initialisation, SGD (lr 0.05, momentum 0.9, weight decay 5e-4),
a cosine schedule over every step of the run stepped per batch, batch 128 reshuffled every
epoch with the last partial batch kept, 25 epochs, the test set evaluated after every epoch.
Prints one line per epoch (cumulative wall time, training and evaluation) and the time at which
the test accuracy first reached --target, for comparison with the `descent train` lines.

Usage: torch_train_fmnist.py [--threads N] [--precision fp32|bf16] [--compile] [--fused]
                             [--epochs 25] [--data /usr/share/datasets/fashion-mnist]
                             [--target 0.90]
bf16 runs under torch.autocast("cpu", torch.bfloat16) with fp32 master weights.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch


def read_idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load(folder, prefix):
    x = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), 16).reshape(-1, 784)
    y = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), 8)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model and its loss (forward and backward graphs; the "
                         "optimizer step stays eager: its learning rate changes every step)")
    ap.add_argument("--fused", action="store_true",
                    help="SGD(fused=True): the update in one kernel")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--target", type=float, default=0.90)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data, "train")
    xte, yte = load(a.data, "t10k")
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    steps_per_epoch = (len(xtr) + a.batch - 1) // a.batch
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4,
                          fused=True if a.fused else None)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs * steps_per_epoch)
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = a.precision == "bf16"

    def forward_loss(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return loss_fn(model(x), y)

    if a.compile:
        forward_loss = torch.compile(forward_loss)

    def step(x, y):
        loss = forward_loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def accuracy():
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for i in range(0, len(xte), 1000):
                correct += (model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
        model.train()
        return correct / len(xte)

    print(f"torch {torch.__version__}, {a.threads} threads, {a.precision}"
          f"{', torch.compile' if a.compile else ''}{', fused SGD' if a.fused else ''}; "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    reached = None
    start = time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        order = torch.randperm(len(xtr))
        total = 0.0
        for i in range(0, len(xtr), a.batch):
            idx = order[i:i + a.batch]
            total += step(xtr[idx], ytr[idx]).item() * len(idx)
            sched.step()
        acc = accuracy()
        now = time.perf_counter() - start
        if reached is None and acc >= a.target:
            reached = (epoch, now)
        print(f"epoch {epoch:2d}/{a.epochs}  train loss {total / len(xtr):.4f}  "
              f"test acc {100 * acc:.2f}%  {now:.1f} s", flush=True)
    print(f"done: {a.epochs} epochs in {time.perf_counter() - start:.1f} s, test accuracy "
          f"{100 * acc:.2f}%; {100 * a.target:.0f}% first reached "
          + (f"after epoch {reached[0]} at {reached[1]:.1f} s" if reached else "never"))


if __name__ == "__main__":
    main()
