#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (tests/fuzz/corpus/<target>/): small valid and nearly
valid inputs in each target's input format (see the comment at the top of each fuzz_*.cpp)."""
import gzip
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def idx_images(count, rows, cols, pixels=None):
    data = pixels if pixels is not None else bytes((i * 37) % 256 for i in range(count * rows * cols))
    return struct.pack(">IIII", 0x803, count, rows, cols) + data


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- idx: mode byte, images, labels (from the last 00 00 08 01)
images, labels = idx_images(3, 2, 2), idx_labels([0, 1, 2])
put("idx", "raw", b"\x00" + images + labels)
put("idx", "gzip-in-harness", b"\x03" + images + labels)
put("idx", "gzip-in-file", b"\x00" + gz(images) + labels)
put("idx", "limit-classes", b"\x0c" + idx_images(4, 3, 1) + idx_labels([9, 1, 0, 3]))
put("idx", "two-members", b"\x00" + gz(images[:9]) + gz(images[9:]) + labels)
put("idx", "short-header", b"\x00" + images[:10] + labels)
put("idx", "count-mismatch", b"\x00" + idx_images(2, 2, 2) + labels)
put("idx", "declares-more", b"\x01" + struct.pack(">IIII", 0x803, 60000, 28, 28) + labels)

# ---- csv: options byte, file
put("csv", "header-label-last", b"\x00" + b"a,b,label\n1,2,0\n3.5,-4e2,1\n")
put("csv", "no-header", b"\x04" + b"0.5,1.5,2\n1,2,3\n")
put("csv", "regression", b"\x01" + b"x,y\n1,2.25\n3,4\r\n")
put("csv", "label-first-semicolon", b"\x18" + b"1;2;3\n0;5;6\n")
put("csv", "label-by-name-bom", b"\x20" + b"\xef\xbb\xbfx,label,y\n1,0,2\n\n3,1,4\n")
put("csv", "quoted-limit-classes", b"\xc0" + b"\"1\",\"2\",0\n3,4,2\n5,6,1\n")
put("csv", "bad-fields", b"\x00" + b"1,2,0\n1,nan,1\n1,x,0\n1,2\n")


# ---- checkpoint: mode byte, file (mode bit 0: the harness fixes size and CRC)
def checkpoint(widths, acts, params, optimizer=None, metadata=()):
    p = struct.pack("<I", len(acts))
    p += b"".join(struct.pack("<q", w) for w in widths)
    p += b"".join(struct.pack("<I", a) for a in acts)
    p += struct.pack("<Q", len(params)) + b"".join(struct.pack("<f", v) for v in params)
    if optimizer is None:
        p += b"\x00"
    else:
        momentum = optimizer
        p += b"\x01" + struct.pack("<ffffBB", 0.1, 0.9, 0.0, 0.0, 0, 0)
        p += struct.pack("<IqfqfQ", 1, 10, 0.5, 0, 0.0, 7)
        p += struct.pack("<Q", len(momentum)) + b"".join(struct.pack("<f", v) for v in momentum)
    p += struct.pack("<I", len(metadata))
    for k, v in metadata:
        p += struct.pack("<I", len(k)) + k + struct.pack("<I", len(v)) + v
    head = b"DSCNTCKP" + struct.pack("<IQ", 1, len(p)) + p
    return head + struct.pack("<I", zlib.crc32(head))


small = [0.5 * i - 1 for i in range(3)]
put("checkpoint", "linear", b"\x00" + checkpoint([2, 1], [0], small))
put("checkpoint", "linear-fixup", b"\x01" + checkpoint([2, 1], [0], small))
mlp = [0.01 * i for i in range(3 * 4 + 4 + 4 * 2 + 2)]
put("checkpoint", "mlp-sgd-metadata",
    b"\x01" + checkpoint([3, 4, 2], [1, 0], mlp, optimizer=[0.0] * len(mlp),
                         metadata=[(b"loss", b"softmax_cross_entropy"), (b"scale", b"0.0039")]))
put("checkpoint", "sgd-no-momentum", b"\x01" + checkpoint([2, 1], [4], small, optimizer=[]))
put("checkpoint", "bad-crc", b"\x00" + checkpoint([2, 1], [0], small)[:-1] + b"\x00")


def safetensors(tensors, metadata=None):
    """A safetensors file: little-endian u64 header length, the JSON header, the F32 data."""
    import json
    header, data = {}, b""
    for name, shape, values in tensors:
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


mlp = [("0.weight", [3, 2], [0.5, -0.25, 1.0, 0.75, -1.5, 0.125]), ("0.bias", [3], [0.0, 0.5, -0.5]),
       ("2.weight", [1, 3], [1.0, -1.0, 0.5]), ("2.bias", [1], [0.25])]
put("safetensors", "mlp-metadata", b"\x00" + safetensors(mlp, {
    "descent.widths": "2,3,1", "descent.activations": "tanh,identity", "format": "pt",
    "descent.module": "Sequential(Linear(2, 3), Tanh(), Linear(3, 1))"}))
put("safetensors", "mlp-torch", b"\x03" + safetensors(mlp))
put("safetensors", "linear", b"\x01" + safetensors([("0.weight", [1, 2], [1.0, 2.0]),
                                                     ("0.bias", [1], [0.5])]))
put("safetensors", "short-length", b"\x00" + safetensors(mlp)[:40])

