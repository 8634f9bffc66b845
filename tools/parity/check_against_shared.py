#!/usr/bin/env python3
"""Cross-check gen_fixtures.py's implementation against existing ttrec-parity-v1 fixtures.

For every fixture in the given directories, re-run this generator's implementation (float64
PyTorch bmm chain, or the FBTT CUDA op when available and not disabled) on the fixture's inputs
and compare every expected tensor. A tensor the checker does not know is an error. Reports the
worst element of each tensor: absolute error and error relative to max|want|.

Usage: python3 tools/parity/check_against_shared.py [DIR_OR_FILE ...]
       (default: /work/shared/fixtures/parity). Exit status 1 if any tensor fails
       |got - want| <= rtol * max|want| + atol (defaults rtol 1e-5, atol 1e-6).
"""

import argparse
import glob
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fixtures as gf  # noqa: E402


def expected_names(case):
    d = len(case["p"])
    names = {"expected.output"} | {f"expected.grad.cores.{k}" for k in range(d)}
    if case["optimizer"] in ("sgd", "adagrad"):
        names |= {f"expected.updated.cores.{k}" for k in range(d)}
    if case["optimizer"] == "adagrad":
        names |= {f"expected.state.cores.{k}" for k in range(d)}
    return names


def dense_expected(case):
    """Independent recomputation: rows of the used indices from the logical cores
    [R_k, p_k, q_k, R_{k+1}] by einsum, pooled with torch.nn.functional.embedding_bag;
    gradients by autograd; optimizer step as in the spec."""
    f64 = torch.float64
    p, q = case["p"], case["q"]
    R = gf.full_ranks(case["ranks"])
    d = len(p)
    cores = [c.double().clone().requires_grad_(True) for c in case["cores"]]
    logical = [cores[k].view(p[k], R[k], q[k], R[k + 1]).permute(1, 0, 2, 3) for k in range(d)]
    uniq, inverse = torch.unique(case["indices"], return_inverse=True)
    digits, rem = [], uniq.clone()
    for k in reversed(range(d)):
        digits.insert(0, rem % p[k])
        rem = rem // p[k]
    letters = "abcdefgh"
    # W[u, j0..j_{d-1}] = sum_r prod_k G_k[r_k, i_k(u), j_k, r_{k+1}]
    ops, subs = [], []
    for k in range(d):
        ops.append(logical[k][:, digits[k]])  # [R_k, u, q_k, R_{k+1}]
        subs.append(f"{letters[k]}u{letters[k].upper()}{letters[k + 1]}")
    expr = ",".join(subs) + "->u" + "".join(letters[k].upper() for k in range(d))
    W = torch.einsum(expr, *ops)
    W = W.reshape(uniq.numel(), -1)  # boundary ranks (size 1) are summed away
    psw = case.get("per_sample_weights")
    out = torch.nn.functional.embedding_bag(
        inverse, W, case["offsets"][:-1], mode=case["pooling"],
        per_sample_weights=None if psw is None else psw.double())
    grads = torch.autograd.grad((out * case["grad_output"].double()).sum(), cores)
    exp = {"expected.output": out.detach()}
    for k, g in enumerate(grads):
        exp[f"expected.grad.cores.{k}"] = g
    upd, state = gf.optimizer_step(case["cores"], list(grads), case["optimizer"],
                                   case["learning_rate"], case["eps"])
    for k, w in enumerate(upd or []):
        exp[f"expected.updated.cores.{k}"] = w
    for k, st in enumerate(state or []):
        exp[f"expected.state.cores.{k}"] = st
    return exp, "independent einsum rows + F.embedding_bag, float64, cpu"


def check_file(path, rtol, atol, use_reference, dense=False):
    case, want, meta = gf.load_case(path)
    known = expected_names(case)
    problems = []
    unknown = set(want) - known
    missing = known - set(want)
    if unknown:
        problems.append(f"unknown tensors {sorted(unknown)}")
    if missing:
        problems.append(f"missing tensors {sorted(missing)}")
    if dense:
        got, source = dense_expected(case)
    else:
        got, source = gf.compute_expected(case, prefer_reference=use_reference)
    rows = []
    worst_rel = 0.0
    for name in sorted(set(want) & known):
        w = want[name].double()
        g = got[name].double().cpu()
        if w.shape != g.shape:
            problems.append(f"{name}: shape {tuple(g.shape)} != {tuple(w.shape)}")
            continue
        # compare against the float32 rounding of our float64 result too: that is what a file holds
        diff = (g - w).abs()
        scale = w.abs().max().item() if w.numel() else 0.0
        i = int(diff.argmax()) if diff.numel() else 0
        abs_err = diff.max().item() if diff.numel() else 0.0
        rel = abs_err / scale if scale > 0 else abs_err
        worst_rel = max(worst_rel, rel)
        ok = bool((diff <= rtol * scale + atol).all())
        # distance in float32 ulps between the float32 rounding of our result and the file
        ulps = (g.float().view(torch.int32).long() - w.float().view(torch.int32).long()).abs()
        max_ulp = int(ulps.max()) if ulps.numel() else 0
        if not ok:
            problems.append(f"{name}: max abs err {abs_err:.3e} > tolerance")
        rows.append((name, tuple(w.shape), abs_err, rel, scale, i, ok, max_ulp))
    return case, meta, source, rows, problems, worst_rel


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", default=["/work/shared/fixtures/parity"],
                    help="fixture files or directories (default /work/shared/fixtures/parity)")
    ap.add_argument("--rtol", type=float, default=1e-5, help="tolerance relative to max|want|")
    ap.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance")
    ap.add_argument("--no-reference", action="store_true",
                    help="use the PyTorch implementation even if the FBTT CUDA op is available")
    ap.add_argument("--dense", action="store_true",
                    help="recompute with an independent einsum + F.embedding_bag path instead of "
                         "gen_fixtures.py's bmm chain (checks our own fixtures' semantics)")
    args = ap.parse_args(argv)

    files = []
    for p in args.paths:
        files += sorted(glob.glob(os.path.join(p, "*.safetensors"))) if os.path.isdir(p) else [p]
    if not files:
        print("no fixtures found", file=sys.stderr)
        return 2
    failed = 0
    overall = 0.0
    for f in files:
        case, meta, source, rows, problems, worst = check_file(f, args.rtol, args.atol, not args.no_reference, args.dense)
        overall = max(overall, worst)
        print(f"== {os.path.basename(f)}  (file source: {meta.get('source')!r})")
        print(f"   recomputed with: {source}")
        for name, shape, abs_err, rel, scale, i, ok, max_ulp in rows:
            print(f"   {'ok ' if ok else 'BAD'} {name:28s} {str(shape):14s} max|want|={scale:9.3e} "
                  f"worst abs={abs_err:9.3e} rel={rel:9.3e} (flat index {i}) f32 ulps<={max_ulp}")
        for pr in problems:
            print(f"   PROBLEM: {pr}")
        failed += bool(problems)
    print(f"{len(files) - failed}/{len(files)} fixtures match; worst relative error {overall:.3e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
