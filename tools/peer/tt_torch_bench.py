#!/usr/bin/env python3
"""PyTorch CPU performance peer for ttrec's TT-EmbeddingBag benchmark.

Same algorithm as the reference (FBTT-Embedding) in fp32 on the CPU:
  forward  = per core, gather the lookups' core slices with index_select; the left-to-right
             bmm chain over all lookups, [q0,R1] x [R1,q1 R2] -> [q0 q1,R2] x [R2,q2] -> D;
             sum pooling into bags with index_add_;
  backward = the chain rule by hand with bmm (reusing the forward's gathered slices and partial
             product), then a fused SGD step: index_add_ of the per-lookup slice gradients (with -lr folded
             into the upstream gradient)
             straight into each core (duplicates summed), i.e. W <- W - lr * g.
             `--backward dense` instead accumulates dense core gradients first and then applies
             W -= lr * g; `--backward autograd` uses torch.autograd for the gradients.
  fused/dense write every intermediate into persistent workspace tensors (out=), as a training
  loop would; fresh per-step allocations of the multi-MB slices cost page faults that made step
  times bimodal (up to 4x) on the measurement VM.

FLOPs are counted as the reference does: whole step = 3 x 2 x nnz x (q0 R1 q1 R2 + q0 q1 R2 q2),
forward = 1/3 of that, backward = 2/3.

Usage: python3 tools/peer/tt_torch_bench.py [--threads 2] [--configs fbtt,kaggle-r8] [--json]
No network access.
"""

import argparse
import json
import statistics
import sys
import time

import torch

CONFIGS = {
    # name: (N, p, q, ranks, bags, lookups per bag)
    "fbtt": (11_000_000, (200, 220, 250), (4, 4, 4), (32, 32), 512, 20),
    "kaggle-r8": (10_131_227, (200, 220, 250), (2, 2, 4), (8, 8), 2048, 1),
    "kaggle-r16": (10_131_227, (200, 220, 250), (2, 2, 4), (16, 16), 2048, 1),
    "kaggle-r32": (10_131_227, (200, 220, 250), (2, 2, 4), (32, 32), 2048, 1),
}
LR = 0.1


def step_flops(nnz, q, ranks):
    q0, q1, q2 = q
    r1, r2 = ranks
    return 3 * 2 * nnz * (q0 * r1 * q1 * r2 + q0 * q1 * r2 * q2)


class TTBag:
    """d = 3 TT-EmbeddingBag with sum pooling, cores stored [p_k, R_k q_k R_{k+1}] (fp32)."""

    def __init__(self, N, p, q, ranks, gen):
        self.N, self.p, self.q, self.ranks = N, p, q, ranks
        R = [1, *ranks, 1]
        self.R = R
        sigma = float(ranks[0] * ranks[1]) ** (-1.0 / 6)
        self.cores = [torch.randn(p[k], R[k] * q[k] * R[k + 1], generator=gen) * sigma for k in range(3)]
        self.D = q[0] * q[1] * q[2]
        self.ws = {}

    def buf(self, name, shape, dtype=torch.float32):
        """Persistent workspace tensor (reused across steps: no per-step allocation/page faults)."""
        t = self.ws.get(name)
        if t is None or tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            t = torch.empty(shape, dtype=dtype)
            self.ws[name] = t
        return t

    def forward(self, indices, bags, B):
        """Returns (pooled [B, D], saved tensors for backward). Outputs live in the workspace."""
        p, q, R = self.p, self.q, self.R
        n = indices.numel()
        i2 = torch.remainder(indices, p[2], out=self.buf("i2", (n,), torch.int64))
        rest = torch.div(indices, p[2], rounding_mode="floor", out=self.buf("rest", (n,), torch.int64))
        i1 = torch.remainder(rest, p[1], out=self.buf("i1", (n,), torch.int64))
        i0 = torch.div(rest, p[1], rounding_mode="floor", out=self.buf("i0", (n,), torch.int64))
        c0, c1, c2 = self.cores
        a0 = torch.index_select(c0, 0, i0, out=self.buf("a0", (n, c0.shape[1]))).view(n, q[0], R[1])
        a1 = torch.index_select(c1, 0, i1, out=self.buf("a1", (n, c1.shape[1]))).view(n, R[1], q[1] * R[2])
        a2 = torch.index_select(c2, 0, i2, out=self.buf("a2", (n, c2.shape[1]))).view(n, R[2], q[2])
        t1 = torch.bmm(a0, a1, out=self.buf("t1", (n, q[0], q[1] * R[2]))).view(n, q[0] * q[1], R[2])
        rows = torch.bmm(t1, a2, out=self.buf("rows", (n, q[0] * q[1], q[2]))).view(n, self.D)
        out = self.buf("out", (B, self.D)).zero_().index_add_(0, bags, rows)
        return out, (i0, i1, i2, a0, a1, a2, t1)

    def backward_sgd(self, d_out, bags, saved, lr, mode="fused"):
        """Gradients of sum(d_out * out) w.r.t. the cores, applied as one SGD step."""
        i0, i1, i2, a0, a1, a2, t1 = saved
        p, q, R = self.p, self.q, self.R
        n = a0.shape[0]
        g = torch.index_select(d_out, 0, bags, out=self.buf("g", (n, self.D))).view(n, q[0] * q[1], q[2])
        if mode == "fused":
            # fold -lr into the upstream gradient (everything below is linear in it): the slice
            # gradients are then the SGD deltas, and index_add_ avoids its slow alpha != 1 path
            g.mul_(-lr)
        d_a2 = torch.bmm(t1.transpose(1, 2), g, out=self.buf("d_a2", (n, R[2], q[2])))
        d_t1 = torch.bmm(g, a2.transpose(1, 2), out=self.buf("d_t1", (n, q[0] * q[1], R[2])))
        d_t1 = d_t1.view(n, q[0], q[1] * R[2])
        d_a1 = torch.bmm(a0.transpose(1, 2), d_t1, out=self.buf("d_a1", (n, R[1], q[1] * R[2])))
        d_a0 = torch.bmm(d_t1, a1.transpose(1, 2), out=self.buf("d_a0", (n, q[0], R[1])))
        for k, (core, idx, d) in enumerate(((self.cores[0], i0, d_a0), (self.cores[1], i1, d_a1),
                                            (self.cores[2], i2, d_a2))):
            if mode == "fused":  # W <- W - lr * g straight from the per-lookup (-lr * g) slices
                core.index_add_(0, idx, d.view(n, -1))
            else:  # dense gradient first, then W -= lr * g
                grad = self.buf(f"grad{k}", core.shape).zero_().index_add_(0, idx, d.view(n, -1))
                core.add_(grad, alpha=-lr)


class TTBagAutograd(TTBag):
    """Same forward under autograd; backward = torch.autograd.grad + SGD."""

    def forward(self, indices, bags, B):
        cores = [c.requires_grad_(True) for c in self.cores]
        p, q, R = self.p, self.q, self.R
        n = indices.numel()
        i2 = indices % p[2]
        rest = indices // p[2]
        i1 = rest % p[1]
        i0 = rest // p[1]
        a0 = cores[0].index_select(0, i0).view(n, q[0], R[1])
        a1 = cores[1].index_select(0, i1).view(n, R[1], q[1] * R[2])
        a2 = cores[2].index_select(0, i2).view(n, R[2], q[2])
        t1 = torch.bmm(a0, a1).view(n, q[0] * q[1], R[2])
        rows = torch.bmm(t1, a2).view(n, self.D)
        out = torch.zeros(B, self.D).index_add(0, bags, rows)
        return out, (cores, out)

    def backward_sgd(self, d_out, bags, saved, lr, mode="autograd"):
        cores, out = saved
        grads = torch.autograd.grad(out, cores, grad_outputs=d_out)
        with torch.no_grad():
            for c, g in zip(cores, grads):
                c.add_(g, alpha=-lr)


def median_time(fn, min_iters, min_seconds):
    times = []
    start = time.perf_counter()
    while len(times) < min_iters or (time.perf_counter() - start) < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10_000:
            break
    return statistics.median(times), len(times)


def bench_config(name, threads, warmup, min_iters, min_seconds, backward, seed):
    N, p, q, ranks, B, L = CONFIGS[name]
    gen = torch.Generator().manual_seed(seed)
    model = (TTBagAutograd if backward == "autograd" else TTBag)(N, p, q, ranks, gen)
    nnz = B * L
    indices = torch.randint(0, N, (nnz,), generator=gen, dtype=torch.int64)
    bags = torch.arange(B, dtype=torch.int64).repeat_interleave(L)
    # Upstream gradient: small (like a batch-averaged loss gradient) and sign-alternating between
    # steps, so repeated SGD steps on the same batch keep the cores bounded (no overflow/denormals).
    d_out_pos = torch.randn(B, model.D, generator=gen) * 1e-3
    d_out_neg = -d_out_pos
    flip = [0]

    def next_d_out():
        flip[0] ^= 1
        return d_out_pos if flip[0] else d_out_neg

    def fwd():
        if backward == "autograd":
            with torch.no_grad():
                return model.forward(indices, bags, B)
        return model.forward(indices, bags, B)

    state = {}

    def prep():
        state["saved"] = model.forward(indices, bags, B)[1]

    def bwd():
        model.backward_sgd(next_d_out(), bags, state["saved"], LR, backward)

    def step():
        _, saved = model.forward(indices, bags, B)
        model.backward_sgd(next_d_out(), bags, saved, LR, backward)

    for _ in range(warmup):
        step()
    t_fwd, n_fwd = median_time(fwd, min_iters, min_seconds)
    # backward alone: forward outside the timed region, each backward on fresh saved tensors
    bwd_times = []
    start = time.perf_counter()
    while len(bwd_times) < min_iters or (time.perf_counter() - start) < min_seconds:
        prep()
        t0 = time.perf_counter()
        bwd()
        bwd_times.append(time.perf_counter() - t0)
        if len(bwd_times) >= 10_000:
            break
    t_bwd = statistics.median(bwd_times)
    t_step, n_step = median_time(step, min_iters, min_seconds)

    if not all(bool(torch.isfinite(c).all()) for c in model.cores):
        raise RuntimeError(f"{name}: cores became non-finite during the benchmark")
    flops = step_flops(nnz, q, ranks)
    return {
        "config": name,
        "impl": "pytorch-cpu",
        "threads": threads,
        "torch_version": torch.__version__,
        "backward": backward,
        "nnz": nnz,
        "us_per_lookup": t_step * 1e6 / nnz,
        "gflops": flops / t_step / 1e9,
        "fwd_us_per_lookup": t_fwd * 1e6 / nnz,
        "fwd_gflops": flops / 3 / t_fwd / 1e9,
        "bwd_us_per_lookup": t_bwd * 1e6 / nnz,
        "bwd_gflops": flops * 2 / 3 / t_bwd / 1e9,
        "step_ms": t_step * 1e3,
        "iters": {"fwd": n_fwd, "bwd": len(bwd_times), "step": n_step},
    }


def best_of(runs):
    """Per phase, the run with the lowest median time (us_per_lookup is proportional to time)."""
    best = dict(min(runs, key=lambda r: r["us_per_lookup"]))
    for phase in ("fwd", "bwd"):
        b = min(runs, key=lambda r: r[f"{phase}_us_per_lookup"])
        best[f"{phase}_us_per_lookup"] = b[f"{phase}_us_per_lookup"]
        best[f"{phase}_gflops"] = b[f"{phase}_gflops"]
    best["repeat"] = len(runs)
    best["step_ms_all"] = [round(r["step_ms"], 3) for r in runs]
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="PyTorch CPU peer benchmark of TT-EmbeddingBag (fp32 forward, backward + fused "
                    "SGD) on the configs of ttrec's benchmark. Reports median times per lookup and "
                    "GFLOP/s counted as the reference does (step = 3 x 2 x nnz x (q0 R1 q1 R2 + "
                    "q0 q1 R2 q2); forward 1/3, backward 2/3).")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of {','.join(CONFIGS)} (default all)")
    ap.add_argument("--backward", choices=["fused", "dense", "autograd"], default="fused",
                    help="fused: index_add_ of -lr*grad into the cores (default); dense: dense "
                         "grads then W -= lr*g; autograd: torch.autograd.grad then SGD")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up steps per config (default 3)")
    ap.add_argument("--iters", type=int, default=10, help="minimum timed iterations (default 10)")
    ap.add_argument("--min-seconds", type=float, default=2.0,
                    help="keep timing each phase until this many seconds have passed (default 2)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each config this many times and keep, per phase, the lowest "
                         "median (robust to other load on a shared machine; default 1)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per config per line")
    args = ap.parse_args(argv)

    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    torch.set_num_threads(args.threads)
    if not args.json:
        print(f"torch {torch.__version__}, {args.threads} threads, backward={args.backward}")
        print(f"{'config':12s} {'step us/lookup':>15s} {'GFLOP/s':>8s} {'fwd us/lookup':>14s} "
              f"{'GFLOP/s':>8s} {'bwd+sgd us/lkp':>15s} {'GFLOP/s':>8s} {'step ms':>8s}")
    with torch.inference_mode(False):
        for name in names:
            runs = [bench_config(name, args.threads, args.warmup, args.iters, args.min_seconds,
                                 args.backward, args.seed) for _ in range(max(1, args.repeat))]
            r = best_of(runs)
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print(f"{name:12s} {r['us_per_lookup']:15.3f} {r['gflops']:8.2f} "
                      f"{r['fwd_us_per_lookup']:14.3f} {r['fwd_gflops']:8.2f} "
                      f"{r['bwd_us_per_lookup']:15.3f} {r['bwd_gflops']:8.2f} {r['step_ms']:8.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
