#!/usr/bin/env python3
"""Per-tensor accuracy of float32 results against a float64 `ttrec-parity-v1` fixture.

For each fixture, prints the worst error of every expected tensor relative to max|want| (the
measure of tests/accuracy.rs) for:
  * `fbtt-fp32`: a float32 emulation of the FBTT-Embedding CUDA op's arithmetic (the reference's
    order of operations: per lookup, cuBLAS batched products that sum K in order with fused
    multiply-adds, the per-lookup gradient pieces added to the core gradient one lookup after
    the other, bag rows summed in order) -- an estimate of the CUDA op's own error where no CUDA
    golden exists;
  * `cuda`: the CUDA golden `cuda_<name>.safetensors` of --goldens DIR, when present;
  * each `LABEL=DIR` given: what `ttrec parity --dump DIR` computed (`actual.*` tensors).
The ratio columns divide by the CUDA golden's error, else by the emulation's.

Usage: python3 tools/parity/accuracy.py FIXTURE... [--goldens tests/fixtures/cuda]
           [--actual cpu=/tmp/dump-cpu --actual gpu=/tmp/dump-gpu] [--json]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures as gf  # noqa: E402

F32 = np.float32


def fma(a, b, c):
    """float32 fused multiply-add, emulated: the float64 product of two float32 values is exact
    and one rounding of product + c to float32 follows (a double rounding differs from a true
    fma in rare ties only, far below the errors measured here)."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(F32)


def gemm_fma(a, b):
    """Batched C[n] = A[n] (M x K) B[n] (K x N) in float32, each element summing k = 0..K-1 in
    order with fma from zero (how a cuBLAS thread accumulates its tile)."""
    n, m, k = a.shape
    acc = np.zeros((n, m, b.shape[2]), dtype=F32)
    for kk in range(k):
        acc = fma(a[:, :, kk:kk + 1], b[:, kk:kk + 1, :], acc)
    return acc


def emulate_fbtt(case):
    """float32 output and dense core gradients by the FBTT CUDA op's algorithm (dense
    backward, use_cache=False). Mean pooling as gen_fixtures.py does it with the op: the op's
    sum divided by the bag length; the op then sees grad_output / length."""
    p, q = case["p"], case["q"]
    R = gf.full_ranks(case["ranks"])
    d = len(p)
    idx = case["indices"].numpy()
    off = case["offsets"].numpy()
    cores = [c.numpy().astype(F32) for c in case["cores"]]
    nnz = idx.size
    B = off.size - 1
    D = int(np.prod(q))
    lengths = off[1:] - off[:-1]
    bag = np.repeat(np.arange(B), lengths)
    digits = [t.numpy() for t in gf.row_digits(case["indices"].clone(), p)]
    sl = [cores[k][digits[k]].reshape(nnz, R[k], q[k] * R[k + 1]) for k in range(d)]
    # Forward prefixes P_k [Q_k, R_k] (P_1 is core 0's slice).
    prefix = [None, sl[0].reshape(nnz, q[0], R[1])]
    for k in range(1, d):
        cur = gemm_fma(prefix[k], sl[k])  # [n, Q_k, q_k R_{k+1}]
        prefix.append(cur.reshape(nnz, -1, R[k + 1]))
    rows = prefix[d].reshape(nnz, D)
    out = np.zeros((B, D), dtype=F32)
    for n in range(nnz):  # reduce_output_kernel: a bag's rows added in order to zero
        out[bag[n]] = out[bag[n]] + rows[n]
    go = case["grad_output"].numpy().astype(F32)
    if case["pooling"] == "mean":
        scale = np.maximum(lengths, 1).astype(F32)
        out = (out / scale[:, None]).astype(F32)
        go = (go / scale[:, None]).astype(F32)
    grads = [np.zeros_like(c) for c in cores]
    dp = go[bag].reshape(nnz, D, 1)  # dP_d: [Q_d, R_d = 1]
    for k in reversed(range(1, d)):
        # piece_k = P_k^T [R_k, Q_k] x dP [Q_k, q_k R_{k+1}] (K = Q_k)
        dpk = dp.reshape(nnz, prefix[k].shape[1], q[k] * R[k + 1])
        piece = gemm_fma(np.ascontiguousarray(prefix[k].transpose(0, 2, 1)), dpk)
        add_pieces(grads[k], digits[k], piece.reshape(nnz, -1))
        # dP_k = dP [Q_k, q_k R_{k+1}] x G_k^T [q_k R_{k+1}, R_k] (K = q_k R_{k+1})
        dp = gemm_fma(dpk, np.ascontiguousarray(sl[k].transpose(0, 2, 1)))
    add_pieces(grads[0], digits[0], dp.reshape(nnz, -1))
    return out, grads


def add_pieces(grad, digits, pieces):
    """update_d_tt_cores_kernel: every lookup's piece atomically added to its row (here in
    lookup order; the CUDA order is the scheduler's)."""
    for n in range(pieces.shape[0]):
        grad[digits[n]] = grad[digits[n]] + pieces[n]


def expected_of(case, out, grads):
    """The fixture's expected.* tensors from an output and gradients (optimizer step in float64
    from the float32 gradient, as gen_fixtures.py does with the CUDA op)."""
    import torch

    exp = {"expected.output": out.astype(np.float64)}
    tg = [torch.from_numpy(g.astype(np.float64)) for g in grads]
    for k, g in enumerate(grads):
        exp[f"expected.grad.cores.{k}"] = g.astype(np.float64)
    upd, state = gf.optimizer_step(case["cores"], tg, case["optimizer"], case["learning_rate"],
                                   case["eps"])
    for k, w in enumerate(upd or []):
        exp[f"expected.updated.cores.{k}"] = w.numpy()
    for k, s in enumerate(state or []):
        exp[f"expected.state.cores.{k}"] = s.numpy()
    return exp


def rel_err(got, want):
    want = np.asarray(want, dtype=np.float64).ravel()
    got = np.asarray(got, dtype=np.float64).ravel()
    if got.shape != want.shape:
        return float("nan")
    scale = max(np.abs(want).max(initial=0.0), 1e-30)
    return float(np.abs(got - want).max(initial=0.0)) / scale


def load_tensors(path):
    from safetensors.numpy import load_file

    return load_file(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fixtures", nargs="+", help="float64 ttrec-parity-v1 fixture files")
    ap.add_argument("--goldens", help="directory of CUDA goldens cuda_<name>.safetensors")
    ap.add_argument("--actual", action="append", default=[], metavar="LABEL=DIR",
                    help="a `ttrec parity --dump` directory (repeatable)")
    ap.add_argument("--json", action="store_true", help="one JSON line per tensor")
    args = ap.parse_args(argv)
    actuals = [a.split("=", 1) for a in args.actual]
    for path in args.fixtures:
        case, expected, _ = gf.load_case(path)
        file = os.path.basename(path)
        columns = {}
        if not (case.get("per_sample_weights") is not None or int(np.prod(case["q"])) % 4):
            columns["fbtt-fp32"] = expected_of(case, *emulate_fbtt(case))
        golden = args.goldens and os.path.join(args.goldens, "cuda_" + file)
        if golden and os.path.exists(golden):
            columns["cuda"] = {k: v for k, v in load_tensors(golden).items()
                               if k.startswith("expected.")}
        for label, d in actuals:
            f = os.path.join(d, file)
            if os.path.exists(f):
                columns[label] = {k.replace("actual.", "expected.", 1): v
                                  for k, v in load_tensors(f).items()}
        base = "cuda" if "cuda" in columns else "fbtt-fp32"
        if not args.json:
            print(f"{case['name']}: " + "  ".join(f"{c:>10}" for c in columns)
                  + (f"  (ratios to {base})" if base in columns else ""))
        for name in sorted(expected):
            want = expected[name].numpy()
            errs = {c: rel_err(t[name], want) for c, t in columns.items() if name in t}
            if args.json:
                print(json.dumps({"fixture": case["name"], "tensor": name, "rel_err": errs}))
                continue
            ref = errs.get(base)
            ratios = "  ".join(f"{c} {e / ref:5.2f}" for c, e in errs.items()
                               if ref and c != base)
            print(f"  {name:<26} " + "  ".join(f"{errs.get(c, float('nan')):10.2e}"
                                               for c in columns) + f"  {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
