#!/usr/bin/env python3
"""Float64 reference of dlrm's quotient-remainder embedding (QREmbeddingBag, mode "sum") for
ttrec's tests (tests/qr.rs).

Writes tests/fixtures/baselines/qr_f64.json: per case (one per operation: mult, add, concat) a
QR table of `rows` ids with `collisions` collisions, its quotient table weight_q
[ceil(rows / collisions), part] and remainder table weight_r [collisions, part] (values
f32-representable, stored exactly), bags of variable lengths (empty ones, repeated ids) as
indices and offsets, an output gradient dout [B, D], and numpy's float64:

- out [B, D]: per bag, the quotient rows (id // collisions) summed, the remainder rows
  (id % collisions) summed, combined as dlrm does: mult (elementwise product of the two pooled
  vectors), add, or concat (quotient part then remainder part, each D / 2);
- grad_q, grad_r: the gradients of sum(dout * out) w.r.t. weight_q and weight_r (dense).

Written from dlrm's tricks/qr_embedding_bag.py (forward) and the chain rule, apart from ttrec's
Rust. Usage: python3 tools/baselines/qr_reference.py [--out tests/fixtures/baselines/qr_f64.json]
Needs only numpy.
"""

import argparse
import json

import numpy as np


def pool(weight, ids, offsets):
    """EmbeddingBag mode sum: an empty bag pools to zeros."""
    out = np.zeros((len(offsets) - 1, weight.shape[1]))
    for b in range(len(offsets) - 1):
        for i in ids[offsets[b]:offsets[b + 1]]:
            out[b] += weight[i]
    return out


def pool_grad(rows, ids, offsets, dpooled):
    grad = np.zeros((rows, dpooled.shape[1]))
    for b in range(len(offsets) - 1):
        for i in ids[offsets[b]:offsets[b + 1]]:
            grad[i] += dpooled[b]
    return grad


def qr_case(rng, name, rows, collisions, dim, operation, bag_lengths):
    part = dim // 2 if operation == "concat" else dim
    q_rows = -(-rows // collisions)
    # f32-representable values (the Rust side reads them as f32 exactly).
    weight_q = rng.uniform(-1, 1, (q_rows, part)).astype(np.float32).astype(np.float64)
    weight_r = rng.uniform(-1, 1, (collisions, part)).astype(np.float32).astype(np.float64)
    offsets = np.concatenate([[0], np.cumsum(bag_lengths)]).astype(np.int64)
    ids = rng.integers(0, rows, int(offsets[-1]))
    if len(ids) > 3:
        ids[1] = ids[0]  # a repeated id inside a bag
        ids[-1] = rows - 1  # the last id (a short last quotient row when rows % c != 0)
    iq = ids // collisions
    ir = ids % collisions
    eq = pool(weight_q, iq, offsets)
    er = pool(weight_r, ir, offsets)
    if operation == "mult":
        out = eq * er
    elif operation == "add":
        out = eq + er
    else:
        out = np.concatenate([eq, er], axis=1)
    dout = rng.uniform(-1, 1, out.shape).astype(np.float32).astype(np.float64)
    if operation == "mult":
        deq, der = dout * er, dout * eq
    elif operation == "add":
        deq, der = dout, dout
    else:
        deq, der = dout[:, :part], dout[:, part:]
    return {
        "name": name,
        "rows": rows,
        "collisions": collisions,
        "dim": dim,
        "operation": operation,
        "weight_q": weight_q.ravel().tolist(),
        "weight_r": weight_r.ravel().tolist(),
        "indices": ids.tolist(),
        "offsets": offsets.tolist(),
        "dout": dout.ravel().tolist(),
        "out": out.ravel().tolist(),
        "grad_q": pool_grad(q_rows, iq, offsets, deq).ravel().tolist(),
        "grad_r": pool_grad(collisions, ir, offsets, der).ravel().tolist(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/baselines/qr_f64.json")
    args = ap.parse_args()
    rng = np.random.default_rng(20261205)
    lengths = [2, 0, 3, 1, 5, 0, 1, 4]
    cases = [
        qr_case(rng, "mult", 23, 4, 8, "mult", lengths),
        qr_case(rng, "add", 50, 7, 4, "add", lengths),
        qr_case(rng, "concat", 31, 3, 8, "concat", lengths),
    ]
    with open(args.out, "w") as f:
        json.dump({"format": "ttrec-qr-f64-v1", "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
