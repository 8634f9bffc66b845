#!/usr/bin/env python3
"""Generate `ttrec-parity-v1` fixtures for TT-EmbeddingBag (see shared spec tt-rec.md).

Each fixture is a safetensors file holding starting TT cores, a batch of bags (indices/offsets,
optional per-sample weights), an upstream gradient, and the expected pooled output, dense core
gradients and, when an optimizer is set, the cores (and Adagrad state) after one fused step.

Implementation used (recorded in each file's `source` metadata):
  * the reference FBTT-Embedding CUDA op (`tt_embeddings_ops.TTEmbeddingBag`, dense backward)
    when it is importable and a CUDA device is present and the case is one it supports
    (sum pooling, no per-sample weights, D % 4 == 0; mean pooling is done by dividing its sum);
  * otherwise a PyTorch float64 implementation of the reference's algorithm: per lookup, gather
    the core slices and run the left-to-right batched-matmul chain starting from core 0,
    [q0, R1] x [R1, q1 R2] -> [q0 q1, R2] x [R2, q2 R3] -> ... ; pool; autograd for the dense
    core gradients of sum(grad_output * output).
The optimizer step (SGD or Adagrad from zero state) is always done here in float64 from the
dense gradient. Everything is stored float32 (indices/offsets int64). Deterministic per seed.

Usage: python3 tools/parity/gen_fixtures.py --out tests/fixtures/parity [--seed 0] [--only NAME]
No network access.
"""

import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np
import torch

FORMAT = "ttrec-parity-v1"

# --------------------------------------------------------------------------------------------
# Optional reference CUDA op (FBTT-Embedding). Never required.
# --------------------------------------------------------------------------------------------
_REF_OPS = None
try:  # the FBTT-Embedding Python wrapper; it imports the compiled `tt_embeddings` extension
    import tt_embeddings  # noqa: F401
    import tt_embeddings_ops as _REF_OPS  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    try:
        from fbtt_embedding import tt_embeddings_ops as _REF_OPS  # type: ignore
    except Exception:
        _REF_OPS = None


def reference_op_available():
    return _REF_OPS is not None and torch.cuda.is_available()


def best_device():
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# --------------------------------------------------------------------------------------------
# PyTorch implementation of the reference algorithm
# --------------------------------------------------------------------------------------------
def full_ranks(ranks):
    return [1] + list(ranks) + [1]


def row_digits(indices, p):
    """C-order digits of the row index (core 0 most significant): list of d int64 tensors."""
    digits = []
    rem = indices.clone()
    for k in reversed(range(len(p))):
        digits.append(rem % p[k])
        rem = rem // p[k]
    digits.reverse()
    return digits


def tt_rows(cores, p, q, ranks, indices):
    """Rows W[indices, :] via the left-to-right bmm chain. cores[k]: [p_k, R_k q_k R_{k+1}]."""
    R = full_ranks(ranks)
    d = len(p)
    n = indices.numel()
    digits = row_digits(indices, p)
    # core 0 slice: [R0=1, q0, R1] -> [n, q0, R1]
    cur = cores[0].index_select(0, digits[0]).view(n, q[0], R[1])
    for k in range(1, d):
        sl = cores[k].index_select(0, digits[k]).view(n, R[k], q[k] * R[k + 1])
        cur = torch.bmm(cur, sl)  # [n, Q, q_k R_{k+1}]
        cur = cur.view(n, -1, R[k + 1])  # [n, Q q_k, R_{k+1}] (j_k less significant)
    return cur.view(n, -1)  # [n, D]


def bag_ids(offsets, nnz):
    """Bag index of every lookup from include-last offsets (B+1 entries)."""
    lengths = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=offsets.device), lengths), lengths


def tt_embedding_bag(cores, p, q, ranks, indices, offsets, pooling="sum", per_sample_weights=None):
    rows = tt_rows(cores, p, q, ranks, indices)
    B = offsets.numel() - 1
    D = rows.shape[1]
    bags, lengths = bag_ids(offsets, indices.numel())
    if per_sample_weights is not None:
        if pooling != "sum":
            raise ValueError("per_sample_weights require sum pooling")
        rows = rows * per_sample_weights.to(rows.dtype).unsqueeze(1)
    out = torch.zeros(B, D, dtype=rows.dtype, device=rows.device).index_add(0, bags, rows)
    if pooling == "mean":
        out = out / lengths.clamp(min=1).to(out.dtype).unsqueeze(1)
    elif pooling != "sum":
        raise ValueError(f"unknown pooling {pooling!r}")
    return out


def torch_forward_backward(case, device):
    """float64 output and dense core grads with the PyTorch implementation."""
    f64 = torch.float64
    cores = [c.to(device=device, dtype=f64).clone().requires_grad_(True) for c in case["cores"]]
    idx = case["indices"].to(device)
    off = case["offsets"].to(device)
    psw = case.get("per_sample_weights")
    psw = None if psw is None else psw.to(device=device, dtype=f64)
    out = tt_embedding_bag(cores, case["p"], case["q"], case["ranks"], idx, off, case["pooling"], psw)
    go = case["grad_output"].to(device=device, dtype=f64)
    grads = torch.autograd.grad((out * go).sum(), cores)
    src = f"ttrec tools/parity/gen_fixtures.py: PyTorch {torch.__version__} bmm chain, float64, {device.type}"
    return out.detach(), [g.detach() for g in grads], src


def reference_forward_backward(case):
    """Output and dense core grads from the FBTT-Embedding CUDA op (fp32), or None if the case
    is outside what the reference supports."""
    if not reference_op_available():
        return None
    D = int(np.prod(case["q"]))
    if case.get("per_sample_weights") is not None or D % 4 != 0:
        return None
    dev = torch.device("cuda")
    emb = _REF_OPS.TTEmbeddingBag(
        case["num_embeddings"], D, list(case["ranks"]), list(case["p"]), list(case["q"]),
        sparse=False, use_cache=False, weight_dist="normal",
    ).to(dev)
    with torch.no_grad():
        for k, c in enumerate(case["cores"]):
            emb.tt_cores[k].data = c.to(dev, torch.float32).reshape(emb.tt_cores[k].shape).contiguous()
    idx = case["indices"].to(dev)
    off = case["offsets"].to(dev)
    out = emb(idx, off)
    if case["pooling"] == "mean":
        lengths = (off[1:] - off[:-1]).clamp(min=1).to(out.dtype)
        out = out / lengths.unsqueeze(1)
    go = case["grad_output"].to(dev, torch.float32)
    (out * go).sum().backward()
    grads = [emb.tt_cores[k].grad.reshape(case["cores"][k].shape).double() for k in range(len(case["p"]))]
    src = (f"FBTT-Embedding CUDA op TTEmbeddingBag (fp32, dense backward) on "
           f"{torch.cuda.get_device_name(0)}, PyTorch {torch.__version__}; "
           f"optimizer step float64 in ttrec tools/parity/gen_fixtures.py")
    return out.detach().double(), grads, src


def optimizer_step(cores, grads, optimizer, lr, eps):
    """One fused step from the starting cores (float64). Returns (updated, state or None)."""
    if optimizer == "none":
        return None, None
    updated, states = [], []
    for w, g in zip(cores, grads):
        w = w.to(g.device, torch.float64)
        if optimizer == "sgd":
            updated.append(w - lr * g)
        elif optimizer == "adagrad":
            s = g * g  # s starts at 0
            updated.append(w - lr * g / (torch.sqrt(s) + eps))
            states.append(s)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}")
    return updated, (states if optimizer == "adagrad" else None)


def compute_expected(case, prefer_reference=True, device=None):
    """Expected tensors (float64, cpu) for a case: dict name -> tensor, plus the source string."""
    res = reference_forward_backward(case) if prefer_reference else None
    if res is None:
        res = torch_forward_backward(case, device or best_device())
    out, grads, src = res
    exp = {"expected.output": out.cpu()}
    for k, g in enumerate(grads):
        exp[f"expected.grad.cores.{k}"] = g.cpu()
    upd, state = optimizer_step(case["cores"], [g.cpu() for g in grads], case["optimizer"],
                                case["learning_rate"], case["eps"])
    if upd is not None:
        for k, w in enumerate(upd):
            exp[f"expected.updated.cores.{k}"] = w
    if state is not None:
        for k, s in enumerate(state):
            exp[f"expected.state.cores.{k}"] = s
    return exp, src


# --------------------------------------------------------------------------------------------
# Fixture file I/O
# --------------------------------------------------------------------------------------------
def fmt_float(x):
    return format(float(x), "g")


def case_metadata(case, source):
    return {
        "format": FORMAT,
        "num_embeddings": str(case["num_embeddings"]),
        "p_shapes": ",".join(map(str, case["p"])),
        "q_shapes": ",".join(map(str, case["q"])),
        "tt_ranks": ",".join(map(str, case["ranks"])),
        "pooling": case["pooling"],
        "optimizer": case["optimizer"],
        "learning_rate": fmt_float(case["learning_rate"]),
        "eps": fmt_float(case["eps"]),
        "source": source,
        "name": case["name"],
    }


def write_fixture(path, case, expected, source):
    t = {}
    for k, c in enumerate(case["cores"]):
        t[f"cores.{k}"] = c.to(torch.float32).contiguous()
    t["indices"] = case["indices"].to(torch.int64).contiguous()
    t["offsets"] = case["offsets"].to(torch.int64).contiguous()
    if case.get("per_sample_weights") is not None:
        t["per_sample_weights"] = case["per_sample_weights"].to(torch.float32).contiguous()
    t["grad_output"] = case["grad_output"].to(torch.float32).contiguous()
    for name, v in expected.items():
        t[name] = v.to(torch.float32).contiguous()
    save_safetensors_sorted(path, t, case_metadata(case, source))


_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def save_safetensors_sorted(path, tensors, metadata):
    """Write a safetensors file byte-for-byte reproducibly (header keys and tensors sorted by
    name; safetensors' own writer orders the metadata map arbitrarily)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, pos = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        code, np_dtype = _DTYPES[t.dtype]
        data = t.cpu().numpy().astype(np_dtype, copy=False).tobytes(order="C")
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_case(path):
    """Read a ttrec-parity-v1 file: (case dict with inputs, dict of expected tensors, metadata)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r} != {FORMAT}")
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    p, q, ranks = ints(meta["p_shapes"]), ints(meta["q_shapes"]), ints(meta["tt_ranks"])
    d = len(p)
    case = {
        "name": meta.get("name", os.path.splitext(os.path.basename(path))[0]),
        "num_embeddings": int(meta["num_embeddings"]),
        "p": p, "q": q, "ranks": ranks,
        "pooling": meta["pooling"], "optimizer": meta["optimizer"],
        "learning_rate": float(meta["learning_rate"]), "eps": float(meta["eps"]),
        "cores": [tensors.pop(f"cores.{k}") for k in range(d)],
        "indices": tensors.pop("indices"), "offsets": tensors.pop("offsets"),
        "per_sample_weights": tensors.pop("per_sample_weights", None),
        "grad_output": tensors.pop("grad_output"),
    }
    expected = {k: tensors.pop(k) for k in list(tensors) if k.startswith("expected.")}
    if tensors:
        raise ValueError(f"{path}: unknown tensors {sorted(tensors)}")
    return case, expected, meta


# --------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------
def make_case(rng, name, N, p, q, ranks, lengths, pooling="sum", optimizer="none", lr=0.1,
              eps=1e-10, weights=False, index_fn=None, zero_unused_rows=False, grad_scale=1.0):
    """Random case. `lengths`: bag lengths (list). Cores ~ N(0, sigma) with sigma chosen so a
    reconstructed entry has variance ~1 (values O(1)); grad_output ~ N(0, grad_scale^2).
    `zero_unused_rows`: core rows no lookup reads are zero (they change no result; a large core
    then compresses in git)."""
    assert int(np.prod(p)) >= N and len(p) == len(q) == len(ranks) + 1
    R = full_ranks(ranks)
    d = len(p)
    sigma = float(np.prod(ranks)) ** (-1.0 / (2 * d))
    cores = [torch.from_numpy(rng.normal(0.0, sigma, size=(p[k], R[k] * q[k] * R[k + 1])).astype(np.float32))
             for k in range(d)]
    lengths = np.asarray(lengths, dtype=np.int64)
    nnz = int(lengths.sum())
    idx = index_fn(rng, nnz) if index_fn else rng.integers(0, N, size=nnz)
    idx = np.asarray(idx, dtype=np.int64)
    assert idx.min(initial=0) >= 0 and idx.max(initial=0) < N
    if zero_unused_rows:
        digits = row_digits(torch.from_numpy(idx), list(p))
        for k in range(d):
            used = torch.zeros(p[k], dtype=torch.bool)
            used[digits[k]] = True
            cores[k][~used] = 0.0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    B = len(lengths)
    D = int(np.prod(q))
    case = {
        "name": name, "num_embeddings": N, "p": list(p), "q": list(q), "ranks": list(ranks),
        "pooling": pooling, "optimizer": optimizer, "learning_rate": lr, "eps": eps,
        "cores": cores,
        "indices": torch.from_numpy(idx), "offsets": torch.from_numpy(offsets),
        "per_sample_weights": (torch.from_numpy(rng.uniform(-1.5, 2.0, size=nnz).astype(np.float32))
                               if weights else None),
        "grad_output": torch.from_numpy((rng.normal(0.0, 1.0, size=(B, D)) * grad_scale)
                                        .astype(np.float32)),
    }
    return case


def with_duplicates(N, dup_frac=0.25):
    """Uniform indices < N, with a fraction re-drawn from a small pool (duplicates)."""
    def f(rng, nnz):
        idx = rng.integers(0, N, size=nnz)
        pool = rng.integers(0, N, size=max(2, nnz // 10))
        m = rng.random(nnz) < dup_frac
        idx[m] = rng.choice(pool, size=int(m.sum()))
        return idx
    return f


def fixture_specs():
    """(name, builder(rng)) for every fixture, in a fixed order."""
    specs = []

    def add(name, **kw):
        specs.append((name, kw))

    # d = 2, 3, 4 with sum pooling, no optimizer.
    add("d2_sum", N=90, p=(10, 9), q=(4, 4), ranks=(6,), lengths=("rand", 24, 0, 6),
        index_fn=with_duplicates(90))
    add("d3_sum", N=336, p=(6, 7, 8), q=(2, 2, 4), ranks=(5, 7), lengths=("rand", 32, 1, 6),
        index_fn=with_duplicates(336))
    add("d4_sum", N=120, p=(2, 3, 4, 5), q=(2, 2, 2, 2), ranks=(3, 4, 5), lengths=("rand", 20, 0, 5),
        index_fn=with_duplicates(120))
    # Padded rows: prod(p) = 1100 > N = 1000, indices concentrated near N-1.
    add("d3_padded_rows", N=1000, p=(11, 10, 10), q=(2, 2, 2), ranks=(4, 4), lengths=("rand", 24, 1, 5),
        index_fn=lambda rng, n: np.where(rng.random(n) < 0.7, rng.integers(970, 1000, size=n),
                                         rng.integers(0, 1000, size=n)))
    # Mean pooling (with some empty bags in the middle: mean of an empty bag is 0).
    add("d3_mean", N=210, p=(5, 6, 7), q=(2, 3, 2), ranks=(4, 6), pooling="mean",
        lengths=[3, 1, 0, 7, 2, 5, 0, 4, 1, 6, 2, 3, 9, 1, 0, 2, 4, 3, 1, 5],
        index_fn=with_duplicates(210))
    # Per-sample weights (sum) with SGD.
    add("d2_weighted_sgd", N=140, p=(12, 12), q=(4, 2), ranks=(8,), optimizer="sgd", lr=0.05,
        weights=True, lengths=("rand", 28, 0, 6), index_fn=with_duplicates(140))
    # Empty bags, including the first and the last bag.
    add("d3_empty_bags", N=160, p=(4, 5, 8), q=(2, 2, 2), ranks=(3, 5), optimizer="sgd", lr=0.1,
        lengths=[0, 0, 3, 1, 0, 0, 0, 4, 2, 0, 5, 1, 0, 2, 0, 0],
        index_fn=with_duplicates(160))
    # Hot rows: one index repeated many times within and across bags.
    add("d3_hot_rows_sgd", N=400, p=(7, 8, 8), q=(2, 2, 4), ranks=(6, 6), optimizer="sgd", lr=0.02,
        lengths=("rand", 24, 2, 10),
        index_fn=lambda rng, n: np.where(rng.random(n) < 0.6, 123,
                                         np.where(rng.random(n) < 0.3, 377, rng.integers(0, 400, size=n))))
    # Adagrad.
    add("d3_adagrad", N=300, p=(6, 7, 8), q=(2, 2, 2), ranks=(4, 5), optimizer="adagrad", lr=0.1,
        eps=1e-10, lengths=("rand", 24, 0, 6), index_fn=with_duplicates(300))
    # Large p (>= 200 on every core; core 0 rows >= 130 must be updated) with SGD.
    add("d3_large_p_kaggle_r16x8_sgd", N=10131227, p=(200, 220, 250), q=(2, 2, 4), ranks=(16, 8),
        optimizer="sgd", lr=0.1, lengths=("rand", 256, 0, 2),
        index_fn=lambda rng, n: np.where(rng.random(n) < 0.5,
                                         rng.integers(130 * 55000, 10131227, size=n),  # core-0 digit >= 130
                                         rng.integers(0, 10131227, size=n)))
    # Rank 64, d = 2.
    add("d2_rank64_sgd", N=70, p=(8, 9), q=(4, 4), ranks=(64,), optimizer="sgd", lr=0.01,
        lengths=("rand", 16, 1, 6), index_fn=with_duplicates(70))
    # D not divisible by 4: q = (3, 1, 2) -> D = 6 (padded rows too: 120 > 100).
    add("d3_odd_dim_q312", N=100, p=(4, 5, 6), q=(3, 1, 2), ranks=(4, 5), lengths=("rand", 20, 0, 5),
        optimizer="sgd", lr=0.1, index_fn=with_duplicates(100))
    # d = 4, mean pooling + Adagrad, with empty first/last bags.
    add("d4_mean_adagrad", N=117, p=(3, 4, 2, 5), q=(2, 3, 2, 2), ranks=(3, 5, 4), pooling="mean",
        optimizer="adagrad", lr=0.05, eps=1e-8,
        lengths=[0, 2, 4, 1, 3, 0, 6, 2, 1, 5, 3, 2, 1, 4, 0],
        index_fn=with_duplicates(117))
    # Exactness (issue 18 item 8). The reference benchmark's table: p 200x220x250, q 4x4x4
    # (D = 64), ranks 32, 64 bags of about 18 lookups, SGD. Core-1 digits come from 20 of the 220
    # rows and unused rows are zero, so the 3.6 MB core 1 (and its gradient and update) compress
    # to a few hundred KiB in git; cores 0 and 2 see uniform digits (~5 lookups a row).
    add("d3_bench_q444_r32_sgd", N=10131227, p=(200, 220, 250), q=(4, 4, 4), ranks=(32, 32),
        optimizer="sgd", lr=0.1, lengths=("rand", 64, 14, 22), zero_unused_rows=True,
        index_fn=digit_pool((200, 220, 250), core=1, pool=20, N=10131227))
    # The same with uniform digits everywhere (11.5 MB: not committed; `--only` makes it).
    add("d3_bench_q444_r32_sgd_uniform", optional=True, N=10131227, p=(200, 220, 250),
        q=(4, 4, 4), ranks=(32, 32), optimizer="sgd", lr=0.1, lengths=("rand", 64, 14, 22))
    # Adagrad with padded rows: prod(p) = 1100 > N = 1050, so core 0's last row block (digit 10:
    # rows 1000..1099) is half beyond the table; most lookups fall in it. grad_output ~ N(0, 1e-6)
    # (a mean loss's gradient over ~1000 samples) and eps 1e-8: a few gradient elements of core 1
    # lie within a few eps of zero, where g / (sqrt(g^2) + eps) magnifies the gradient's float32
    # rounding error (the float32 reference op's own step misses the plain parity tolerance on
    # updated core 1 by 6.7x; tools/parity/accuracy.py). 26 bags: of 13 bag counts tried (16 to
    # 40), 5 had such an element; this is one of them.
    add("d3_padded_adagrad", N=1050, p=(11, 10, 10), q=(2, 4, 2), ranks=(8, 8), optimizer="adagrad",
        lr=0.1, eps=1e-8, grad_scale=1e-3, lengths=("rand", 26, 1, 6),
        index_fn=lambda rng, n: np.where(rng.random(n) < 0.7, rng.integers(1000, 1050, size=n),
                                         rng.integers(0, 1050, size=n)))
    return specs


def digit_pool(p, core, pool, N):
    """Uniform indices < N whose digit of `core` is one of `pool` fixed random values."""
    def f(rng, nnz):
        allowed = rng.choice(p[core], size=pool, replace=False)
        stride = int(np.prod(p[core + 1:]))
        out = np.empty(0, dtype=np.int64)
        while out.size < nnz:
            idx = rng.integers(0, N, size=nnz)
            idx = idx + (allowed[rng.integers(0, pool, size=nnz)] - (idx // stride) % p[core]) * stride
            out = np.concatenate([out, idx[idx < N]])
        return out[:nnz]
    return f


def build_case(name, kw, seed):
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    kw = dict(kw)
    kw.pop("optional", None)
    lengths = kw.pop("lengths")
    if isinstance(lengths, tuple) and lengths[0] == "rand":
        _, B, lo, hi = lengths
        lengths = rng.integers(lo, hi + 1, size=B)
    return make_case(rng, name, lengths=lengths, **kw)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Write ttrec-parity-v1 fixtures (safetensors) for TT-EmbeddingBag parity tests. "
                    "Uses the FBTT-Embedding CUDA op when importable with a CUDA device, else a "
                    "float64 PyTorch implementation of the reference algorithm.")
    ap.add_argument("--out", required=True, help="output directory (e.g. tests/fixtures/parity)")
    ap.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    ap.add_argument("--only", action="append", default=None, metavar="NAME",
                    help="generate only this fixture (repeatable)")
    ap.add_argument("--no-reference", action="store_true",
                    help="never use the FBTT-Embedding CUDA op even if it is available")
    ap.add_argument("--list", action="store_true", help="list fixture names and exit")
    args = ap.parse_args(argv)

    specs = fixture_specs()
    if args.list:
        for name, _ in specs:
            print(name)
        return 0
    if args.only:
        unknown = set(args.only) - {n for n, _ in specs}
        if unknown:
            ap.error(f"unknown fixture(s): {sorted(unknown)}")
        specs = [(n, kw) for n, kw in specs if n in args.only]
    else:  # optional fixtures (too large to commit) only when named
        specs = [(n, kw) for n, kw in specs if not kw.get("optional")]
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, kw in specs:
        case = build_case(name, kw, args.seed)
        expected, source = compute_expected(case, prefer_reference=not args.no_reference)
        path = os.path.join(args.out, f"{name}.safetensors")
        write_fixture(path, case, expected, source)
        size = os.path.getsize(path)
        total += size
        B = case["offsets"].numel() - 1
        print(f"{name}: N={case['num_embeddings']} p={tuple(case['p'])} q={tuple(case['q'])} "
              f"ranks={tuple(case['ranks'])} B={B} nnz={case['indices'].numel()} "
              f"pooling={case['pooling']} opt={case['optimizer']} {size} bytes  [{source}]")
    print(f"total {total} bytes in {len(specs)} fixtures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
