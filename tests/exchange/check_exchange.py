#!/usr/bin/env python3
"""descent's exchange formats against the real tools (run by ctest as exchange.python_tools).

For several widths and every activation:
  - descent -> safetensors (fp32 and bf16, via `descent export`) read by safetensors + NumPy,
    rebuilt in float64 from the file alone (its metadata and the torch.nn.Sequential names),
    reproduces descent's forward pass to 1e-6 relative (bf16: against the widened values);
  - descent -> ONNX passes onnx.checker (full check) and ONNX Runtime's outputs equal descent's
    forward pass to 1e-5 relative, with each head (none, softmax, sigmoid);
  - a NumPy-made file in PyTorch's layout (with descent's metadata, and without it through
    `descent import --activation`) evaluates in descent as in float64 NumPy, and training
    continues from it: one SGD step on MSE equals NumPy's float64 step, and the loss falls;
  - with --torch (where PyTorch is installed): torch.nn.Sequential loads every file with
    load_state_dict(safetensors.torch.load_file(path)) and agrees with descent.
Prints one line per check and "N passed, N failed" at the end; exit status 1 on any failure.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

ACTIVATIONS = ["identity", "relu", "sigmoid", "tanh", "gelu"]
WIDTHS = [[5, 7, 3], [4, 16, 9, 2], [1, 1], [12, 33, 1]]
GELU_C, GELU_A = np.sqrt(2.0 / np.pi), 0.044715

results = {"passed": 0, "failed": 0}


def check(ok, what):
    results["passed" if ok else "failed"] += 1
    print(("ok      " if ok else "FAILED  ") + what, flush=True)


def rel(a, b):
    """Norm-wise relative difference of a from the reference b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def act(name, z):
    if name == "identity":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "gelu":  # descent's gelu: the tanh approximation
        return 0.5 * z * (1 + np.tanh(GELU_C * (z + GELU_A * z ** 3)))
    raise ValueError(name)


def act_grad(name, z):
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(np.float64)
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
    if name == "tanh":
        return 1 - np.tanh(z) ** 2
    if name == "gelu":
        t = np.tanh(GELU_C * (z + GELU_A * z ** 3))
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * z * z)
    raise ValueError(name)


def module_indices(activations):
    """The torch.nn.Sequential index of each layer's Linear: identity adds no module."""
    out, index = [], 0
    for a in activations:
        out.append(index)
        index += 1 if a == "identity" else 2
    return out


def read_bf16_widened(path):
    """The tensors of a file, BF16 widened to float32 by hand (NumPy has no bfloat16)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        if t["dtype"] == "BF16":
            bits = np.frombuffer(data[b:e], "<u2").astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(t["shape"])
        else:
            out[name] = np.frombuffer(data[b:e], "<f4").reshape(t["shape"])
    return out


def layers_from(tensors, metadata):
    """(weights, biases, activations) rebuilt from a file's names and metadata alone."""
    activations = metadata["descent.activations"].split(",")
    indices = module_indices(activations)
    weights = [np.asarray(tensors[f"{i}.weight"], np.float64) for i in indices]
    biases = [np.asarray(tensors[f"{i}.bias"], np.float64) for i in indices]
    return weights, biases, activations


def forward64(weights, biases, activations, x):
    h = np.asarray(x, np.float64)
    for w, b, a in zip(weights, biases, activations):
        h = act(a, h @ w.T + b)
    return h


def sgd_step64(weights, biases, activations, x, y, lr):
    """One SGD step on MSE (mean over all elements, as torch.nn.MSELoss) in float64."""
    hs, zs = [np.asarray(x, np.float64)], []
    for w, b, a in zip(weights, biases, activations):
        zs.append(hs[-1] @ w.T + b)
        hs.append(act(a, zs[-1]))
    dy = 2 * (hs[-1] - y) / y.size
    new_w, new_b = list(weights), list(biases)
    for l in reversed(range(len(weights))):
        dz = dy * act_grad(activations[l], zs[l])
        new_w[l] = weights[l] - lr * dz.T @ hs[l]
        new_b[l] = biases[l] - lr * dz.sum(axis=0)
        dy = dz @ weights[l]
    return new_w, new_b


class Descent:
    def __init__(self, cli, tool, work):
        self.cli, self.tool, self.work = cli, tool, work

    def path(self, name):
        return os.path.join(self.work, name)

    def run(self, *args):
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: status {r.returncode}\n{r.stdout}{r.stderr}")
        return r.stdout

    def forward(self, model, x):
        xf, of = self.path("x.f32"), self.path("out.f32")
        np.asarray(x, "<f4").tofile(xf)
        self.run(self.tool, "forward", model, xf, str(x.shape[0]), of)
        return np.fromfile(of, "<f4").reshape(x.shape[0], -1)


def check_descent_models(d, rng, torch):
    for widths in WIDTHS:
        for hidden in ACTIVATIONS:
            activations = [hidden] * (len(widths) - 2) + ["identity"]
            if len(widths) == 2:
                activations = [hidden]  # a single layer with the activation as its output
            tag = f"{'-'.join(map(str, widths))} {','.join(activations)}"
            ckpt = d.path("m.ckpt")
            d.run(d.tool, "make", ckpt, ",".join(map(str, widths)), ",".join(activations), "7")
            st, st16, onx = d.path("m.safetensors"), d.path("m16.safetensors"), d.path("m.onnx")
            d.run(d.cli, "export", "--model", ckpt, "--safetensors", st, "--onnx", onx)
            d.run(d.cli, "export", "--model", ckpt, "--safetensors", st16, "--dtype", "bf16")
            x = rng.standard_normal((17, widths[0])).astype(np.float32)
            y_descent = d.forward(ckpt, x)

            tensors = load_file(st)
            with safe_open(st, "np") as f:
                metadata = f.metadata()
            weights, biases, acts = layers_from(tensors, metadata)
            check(acts == activations and metadata.get("format") == "pt",
                  f"{tag}: safetensors metadata names the architecture")
            e = rel(y_descent, forward64(weights, biases, acts, x))
            check(e <= 1e-6, f"{tag}: safetensors fp32 in float64 NumPy = descent ({e:.1e})")

            w16, b16, a16 = layers_from(read_bf16_widened(st16), metadata)
            e = rel(d.forward(st16, x), forward64(w16, b16, a16, x))
            check(e <= 1e-6, f"{tag}: safetensors bf16 widened in NumPy = descent ({e:.1e})")

            model = onnx.load(onx)
            try:
                onnx.checker.check_model(model, full_check=True)
                checked = model.opset_import[0].version == 17
            except Exception as err:  # noqa: BLE001 (the checker's own exception types vary)
                print(err)
                checked = False
            check(checked, f"{tag}: onnx.checker passes (opset 17)")
            session = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
            (y_ort,) = session.run(["output"], {"input": x})
            e = rel(y_ort, y_descent)
            check(e <= 1e-5, f"{tag}: ONNX Runtime = descent ({e:.1e})")
            if torch is not None:
                check_torch(torch, st, metadata, x, y_descent, tag)
        # The heads, on the last architecture of this width.
        for head in ["softmax", "sigmoid"]:
            onx = d.path(f"m.{head}.onnx")
            d.run(d.cli, "export", "--model", ckpt, "--onnx", onx, "--head", head)
            session = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
            (y_ort,) = session.run(["output"], {"input": x})
            z = y_descent.astype(np.float64)
            if head == "softmax":
                expected = np.exp(z - z.max(axis=1, keepdims=True))
                expected /= expected.sum(axis=1, keepdims=True)
            else:
                expected = 1 / (1 + np.exp(-z))
            e = rel(y_ort, expected)
            check(e <= 1e-5, f"{'-'.join(map(str, widths))}: ONNX head {head} ({e:.1e})")


def check_torch(torch, path, metadata, x, y_descent, tag):
    import safetensors.torch
    modules = []
    widths = [int(v) for v in metadata["descent.widths"].split(",")]
    for l, a in enumerate(metadata["descent.activations"].split(",")):
        modules.append(torch.nn.Linear(widths[l], widths[l + 1]))
        if a != "identity":
            modules.append({"relu": torch.nn.ReLU(), "sigmoid": torch.nn.Sigmoid(),
                            "tanh": torch.nn.Tanh(),
                            "gelu": torch.nn.GELU(approximate="tanh")}[a])
    net = torch.nn.Sequential(*modules).double()
    net.load_state_dict(safetensors.torch.load_file(path))
    with torch.no_grad():
        y = net(torch.from_numpy(np.asarray(x, np.float64))).numpy()
    check(str(net) != "" and rel(y_descent, y) <= 1e-6,
          f"{tag}: torch.nn.Sequential.load_state_dict(load_file(...)) = descent "
          f"({rel(y_descent, y):.1e})")


def check_numpy_made(d, rng):
    for hidden in ACTIVATIONS:
        widths = [6, 10, 8, 3]
        activations = [hidden, hidden, "identity"]
        indices = module_indices(activations)
        tensors = {}
        for l in range(3):
            bound = 1 / np.sqrt(widths[l])
            tensors[f"{indices[l]}.weight"] = rng.uniform(
                -bound, bound, (widths[l + 1], widths[l])).astype(np.float32)
            tensors[f"{indices[l]}.bias"] = rng.uniform(-bound, bound, widths[l + 1]).astype(
                np.float32)
        weights = [tensors[f"{i}.weight"].astype(np.float64) for i in indices]
        biases = [tensors[f"{i}.bias"].astype(np.float64) for i in indices]
        x = rng.standard_normal((11, 6)).astype(np.float32)
        y = rng.standard_normal((11, 3)).astype(np.float32)
        expected = forward64(weights, biases, activations, x)

        named = d.path("numpy.safetensors")
        save_file(tensors, named, metadata={"descent.activations": ",".join(activations)})
        e = rel(d.forward(named, x), expected)
        check(e <= 1e-6, f"NumPy-made file with metadata ({hidden}): descent = NumPy ({e:.1e})")

        bare, ckpt = d.path("bare.safetensors"), d.path("imported.ckpt")
        save_file(tensors, bare)
        if hidden == "identity":
            d.run(d.cli, "import", "--safetensors", bare, "--checkpoint", ckpt)
        else:
            d.run(d.cli, "import", "--safetensors", bare, "--checkpoint", ckpt, "--activation",
                  hidden)
        e = rel(d.forward(ckpt, x), expected)
        check(e <= 1e-6, f"NumPy-made file without metadata, descent import ({hidden}): "
                         f"descent = NumPy ({e:.1e})")

        # Training continues: one SGD step as in float64, then the loss falls.
        xf, yf, out = d.path("tx.f32"), d.path("ty.f32"), d.path("trained.safetensors")
        x.astype("<f4").tofile(xf)
        y.astype("<f4").tofile(yf)
        lr = 0.1
        d.run(d.tool, "train", named, xf, yf, "11", "1", str(lr), out)
        trained = load_file(out)
        new_w, new_b = sgd_step64(weights, biases, activations, x.astype(np.float64), y, lr)
        delta, delta_ref = [], []
        for l, i in enumerate(indices):
            for key, old, new in (("weight", weights[l], new_w[l]), ("bias", biases[l], new_b[l])):
                delta.append(np.ravel(trained[f"{i}.{key}"].astype(np.float64) - old))
                delta_ref.append(np.ravel(new - old))
        delta, delta_ref = np.concatenate(delta), np.concatenate(delta_ref)
        e = rel(delta, delta_ref)
        check(e <= 1e-4, f"NumPy-made file ({hidden}): descent's SGD step = float64 ({e:.1e})")
        losses = [float(v) for v in d.run(d.tool, "train", named, xf, yf, "11", "30", str(lr),
                                          out).split()]
        check(losses[-1] < losses[0], f"NumPy-made file ({hidden}): training goes on, loss "
                                      f"{losses[0]:.4f} -> {losses[-1]:.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cli", required=True, help="the descent command")
    p.add_argument("--tool", required=True, help="tests/exchange/exchange_tool")
    p.add_argument("--work", required=True, help="a scratch folder")
    p.add_argument("--torch", action="store_true", help="also load every file into PyTorch")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch = None
    if a.torch:
        import torch  # noqa: PLC0415 (only where PyTorch is installed)
    print(f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}"
          + (f", torch {torch.__version__}" if torch is not None else ""))
    d = Descent(a.cli, a.tool, a.work)
    rng = np.random.default_rng(20261127)
    check_descent_models(d, rng, torch)
    check_numpy_made(d, rng)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
