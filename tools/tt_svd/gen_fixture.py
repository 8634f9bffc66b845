#!/usr/bin/env python3
"""Float64 TT-SVD reference for ttrec's tests (tests/compress.rs).

Writes tests/fixtures/tt_svd/tt_svd_f64.json: a few small tables (f32-representable values,
stored exactly), and for each case the float64 TT-SVD by numpy: every singular value of each
unfolding, the ranks kept, the norm of what each truncation discarded, and the relative
Frobenius error of the reconstructed table (over the table's rows, and over the padded rows
too, where it equals the discarded values' norm). The algorithm is written out independently of
ttrec's Rust (numpy's LAPACK SVD), following Oseledets (2011), with ttrec's layout:

- the table (rows x D) is padded with zero rows to prod(p) and reshaped to the tensor of index
  order (i_0, j_0, i_1, j_1, ...), row digits over p and column digits over q, the first digit
  most significant;
- step k unfolds the remainder to (R_k p_k q_k) x rest, keeps R_{k+1} left singular vectors;
- ranks are fixed, or the smallest whose discarded tail is within tol / sqrt(d-1) * ||W||_F.

Usage: python3 tools/tt_svd/gen_fixture.py [--out tests/fixtures/tt_svd/tt_svd_f64.json]
Needs only numpy.
"""

import argparse
import json
import math

import numpy as np


def interleaved(table, p, q):
    d = len(p)
    rows, dim = table.shape
    padded = np.zeros((int(np.prod(p)), dim))
    padded[:rows] = table
    t = padded.reshape(list(p) + list(q))
    order = []
    for k in range(d):
        order += [k, d + k]
    return t.transpose(order).copy()


def tt_svd(table, p, q, ranks=None, tol=None):
    d = len(p)
    a = interleaved(table, p, q)
    norm = np.linalg.norm(a)
    budget = None if tol is None else tol / math.sqrt(d - 1) * norm
    rest = a.reshape(-1)
    r_prev = 1
    cores, svals, kept, discarded = [], [], [], []
    for k in range(d - 1):
        m = r_prev * p[k] * q[k]
        mat = rest.reshape(m, -1)
        u, s, vt = np.linalg.svd(mat, full_matrices=False)
        if ranks is not None:
            r = ranks[k]
        else:
            r = len(s)
            tail = 0.0
            while r > 1 and math.sqrt(tail + s[r - 1] ** 2) <= budget:
                tail += s[r - 1] ** 2
                r -= 1
        r = min(r, len(s))
        svals.append(s.tolist())
        kept.append(int(r))
        discarded.append(float(math.sqrt(np.sum(s[r:] ** 2))))
        cores.append(u[:, :r].reshape(r_prev, p[k], q[k], r))
        rest = (s[:r, None] * vt[:r]).reshape(-1)
        r_prev = r
    cores.append(rest.reshape(r_prev, p[-1], q[-1], 1))
    # Multiply out: contract the rank indices, giving (i_0, j_0, ..., i_{d-1}, j_{d-1}).
    full = cores[0].reshape(p[0], q[0], -1)
    for k in range(1, d):
        g = cores[k]
        full = np.tensordot(full, g, axes=([full.ndim - 1], [0]))
    full = full.reshape([x for k in range(d) for x in (p[k], q[k])])
    # Back to (i_0..i_{d-1}, j_0..j_{d-1}) then rows x D.
    back = [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]
    w = full.transpose(back).reshape(int(np.prod(p)), int(np.prod(q)))
    padded = np.zeros_like(w)
    padded[: table.shape[0]] = table
    # Over the padded rows too: the truncations' error is exactly the discarded values' norm.
    err_padded = np.linalg.norm(w - padded) / norm
    err = np.linalg.norm(w[: table.shape[0]] - table) / np.linalg.norm(table)
    return svals, kept, discarded, float(norm), float(err), float(err_padded)


def table(seed, rows, dim, rank, noise):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, rank))
    b = rng.standard_normal((rank, dim))
    w = a @ b / math.sqrt(rank) + noise * rng.standard_normal((rows, dim))
    # f32-representable, so ttrec's f32 input is the same table.
    return w.astype(np.float32).astype(np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/tt_svd/tt_svd_f64.json")
    args = ap.parse_args()
    w3 = table(1, 60, 8, 4, 0.1)
    w2 = table(2, 30, 4, 2, 0.05)
    w4 = table(3, 14, 16, 3, 0.2)
    cases = [
        ("d3_fixed", w3, [4, 4, 4], [2, 2, 2], [3, 5], None),
        ("d3_tolerance", w3, [4, 4, 4], [2, 2, 2], None, 0.3),
        ("d2_fixed", w2, [5, 6], [2, 2], [3], None),
        ("d4_fixed", w4, [2, 2, 2, 2], [2, 2, 2, 2], [2, 3, 2], None),
        ("d4_tolerance", w4, [2, 2, 2, 2], [2, 2, 2, 2], None, 0.1),
    ]
    out = []
    for name, w, p, q, ranks, tol in cases:
        svals, kept, discarded, norm, err, err_padded = tt_svd(w, p, q, ranks, tol)
        out.append({
            "name": name,
            "rows": w.shape[0],
            "p": p,
            "q": q,
            "ranks": ranks,
            "tolerance": tol,
            "table": [float(x) for x in w.reshape(-1)],
            "singular_values": svals,
            "kept_ranks": kept,
            "discarded": discarded,
            "table_norm": norm,
            "relative_error": err,
            "padded_relative_error": err_padded,
        })
    doc = {
        "format": "ttrec-tt-svd-f64-v1",
        "source": "tools/tt_svd/gen_fixture.py, numpy %s float64 LAPACK SVD" % np.__version__,
        "cases": out,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
