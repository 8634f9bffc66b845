#!/usr/bin/env python3
"""Float64 reference of dlrm's mixed-dimension embeddings (tricks/md_embedding_bag.py), the
independent check of ttrec's `--embedding md` (src/nn/md.rs, its twin src/twin/md.rs).

PrEmbeddingBag: a table E [N, m] pooled per bag (sum; an empty bag pools to zeros), then
projected to D by a bias-free linear layer: out = pooled @ W^T, W [D, m]. Given dout [B, D]:
  dW = dout^T @ pooled            [D, m]
  dE[i] = sum over lookups of i of (dout @ W)[bag]   [N, m]
and md_solver (alpha-power rule anchored at the smallest table, torch.round, optional power-of-
two rounding) computed in float32 as torch computes it.

Writes tests/fixtures/baselines/md_reference.json (small; regenerate with
`python3 tools/baselines/md_reference.py`). Needs only numpy.
"""

import json
import os

import numpy as np


def md_forward(table, proj, indices, offsets):
    """(pooled [B, m], out [B, D]) in float64."""
    b = len(offsets) - 1
    pooled = np.zeros((b, table.shape[1]))
    for bag in range(b):
        for n in range(offsets[bag], offsets[bag + 1]):
            pooled[bag] += table[indices[n]]
    return pooled, pooled @ proj.T


def md_backward(table, proj, indices, offsets, pooled, dout):
    """(table gradient [N, m], projection gradient [D, m]) in float64."""
    dpooled = dout @ proj
    grad_table = np.zeros_like(table)
    for bag in range(len(offsets) - 1):
        for n in range(offsets[bag], offsets[bag + 1]):
            grad_table[indices[n]] += dpooled[bag]
    return grad_table, dout.T @ pooled


def md_solver(rows, alpha, d0, round_dim):
    """dlrm's md_solver(n, alpha, d0, round_dim) in float32, as torch: sort by rows, the
    smallest keeps d0, the others d0 * n0^alpha * n^-alpha (at least 1), rounded half to even,
    then 2^round(log2 d) when round_dim."""
    n = np.array(rows, dtype=np.int64)
    order = np.argsort(n, kind="stable")
    nf = n[order].astype(np.float32)
    a = np.float32(alpha)
    lamb = np.float32(d0) * (nf[0] ** a)
    d = np.ones(len(n), dtype=np.float32) * lamb * (nf ** np.float32(-alpha))
    for i in range(len(d)):
        if i == 0:
            d[i] = np.float32(d0)
        else:
            d[i] = np.float32(1) if d[i] < 1 else d[i]
    d = np.round(d).astype(np.int64)
    if round_dim:
        d = (np.float32(2) ** np.round(np.log2(d.astype(np.float32)))).astype(np.int64)
    out = np.zeros(len(n), dtype=np.int64)
    out[order] = d
    return [int(x) for x in out]


def case(rng, rows, dim, out_dim, bags, max_len):
    """One table with random non-zero values, bags of 0..max_len lookups (some empty)."""
    table = rng.uniform(-1, 1, size=(rows, dim)).astype(np.float32)
    proj = rng.uniform(-1, 1, size=(out_dim, dim)).astype(np.float32)
    lengths = rng.integers(0, max_len + 1, size=bags)
    lengths[1] = 0  # at least one empty bag
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = rng.integers(0, rows, size=int(offsets[-1])).astype(np.int64)
    dout = rng.uniform(-1, 1, size=(bags, out_dim)).astype(np.float32)
    t64, p64 = table.astype(np.float64), proj.astype(np.float64)
    pooled, out = md_forward(t64, p64, indices, offsets)
    grad_table, grad_proj = md_backward(t64, p64, indices, offsets, pooled, dout.astype(np.float64))
    flat = lambda a: [float(x) for x in np.asarray(a).reshape(-1)]
    return {
        "rows": rows,
        "dim": dim,
        "table": flat(table),
        "proj": flat(proj),
        "indices": [int(i) for i in indices],
        "offsets": [int(o) for o in offsets],
        "dout": flat(dout),
        "out": flat(out),
        "grad_table": flat(grad_table),
        "grad_proj": flat(grad_proj),
    }


def main():
    rng = np.random.default_rng(20261205)
    out_dim, bags = 8, 6
    cases = [case(rng, 11, 3, out_dim, bags, 3), case(rng, 9, 6, out_dim, bags, 4), case(rng, 5, 1, out_dim, bags, 2)]
    solver = []
    for rows, alpha, d0, round_dim in [
        ([1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
          27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572], 0.3, 16, False),
        ([1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145], 0.3, 16, True),
        ([1500, 3, 10000000], 0.3, 16, False),
        ([10, 1000, 77, 5], 0.25, 64, True),
        ([5, 50, 500], 0.0, 16, False),
    ]:
        solver.append({"rows": rows, "alpha": alpha, "d0": d0, "round_dim": round_dim,
                       "dims": md_solver(rows, alpha, d0, round_dim)})
    fixture = {"format": "ttrec-md-reference-v1", "out_dim": out_dim, "bags": bags,
               "cases": cases, "md_solver": solver}
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tests", "fixtures", "baselines", "md_reference.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)
    print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
