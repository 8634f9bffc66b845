#!/usr/bin/env python3
"""A small PyTorch (CPU) DLRM training run on raw Criteo data: the accuracy peer of `ttrec train`
and `examples/train_kaggle.rs` with `--embedding dense`.

The model is dlrm's `dlrm_s_pytorch.py` DLRM exactly as tools/dlrm/gen_fixtures.py defines it
(bottom MLP with ReLU after every layer, one `nn.EmbeddingBag(mode="sum")` per table with one id
per sample, "dot" interaction without self terms in the order i = 1..F-1, j = 0..i-1,
R = cat([x, Zflat]), top MLP with ReLU after all but the last layer, mean BCE with logits), trained
with plain SGD on every parameter. The data path reproduces ttrec's (src/data/reader.rs,
src/data/preprocess.rs, src/train/): the same malformed-line rules, dense log(max(x,0)+1), hex
categoricals (optionally % --max-ind-range) numbered per column in order of first appearance over
all valid lines, the same split (the last round(n * F) rows evaluated), whole batches only, an
evaluation at the end of every epoch (and every --test-freq batches), and the same metrics
(log loss with probabilities clamped to [1e-7, 1-1e-7], accuracy of p > 0.5, exact ROC AUC with
tied scores given their average rank), computed in float64 on float32 probabilities.

What cannot be the same: the parameter initialisation (same distributions as dlrm and ttrec,
drawn here with numpy.random.default_rng(seed)) and the order of the training rows (ttrec
shuffles with ChaCha8 seeded by a hash of (seed, epoch); here numpy.random.default_rng([seed, 1,
epoch]).permutation, or file order with --no-shuffle, which `ttrec train` does not offer).
See tools/dlrm/README.md.

Usage:
  python3 tools/dlrm/torch_train.py --data train.txt --test-fraction 0.2 --mini-batch-size 16 \
      --nepochs 5 [--no-shuffle] [--summary-json out.json]
  python3 tools/dlrm/torch_train.py --data train.txt --preprocess-only   # counts + table sizes
  python3 tools/dlrm/torch_train.py --selfcheck     # AUC vs brute force, parser, model vs fixtures
No network access; not part of the tests.
"""

import argparse
import gzip
import importlib.util
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))

# The fixture generator's model is the model trained here; it is loaded by path under its own
# module name (it loads tools/parity/gen_fixtures.py the same way) and used for the shared
# helpers and, in --selfcheck, as the reference forward/backward.
_spec = importlib.util.spec_from_file_location(
    "ttrec_dlrm_gen_fixtures", os.path.join(HERE, "gen_fixtures.py"))
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

NUM_DENSE = 13
NUM_SPARSE = 26
NUM_FIELDS = 1 + NUM_DENSE + NUM_SPARSE
MAX_LINE = 64 * 1024  # ttrec's reader: a longer line is malformed (field_count)
I64_MAX = (1 << 63) - 1
LOG_LOSS_EPS = 1e-7
MALFORMED_KINDS = ("field_count", "bad_integer", "bad_hex", "bad_label")

# ------------------------------------------------------------------------------------------------
# Reading and preprocessing (ttrec src/data/reader.rs + preprocess.rs)
# ------------------------------------------------------------------------------------------------
_INT_RE = re.compile(rb"-?[0-9]{1,19}")
_HEX_RE = re.compile(rb"[0-9a-fA-F]{1,8}")
# Fast path: a whole valid line in one match. Only an accelerator: every line it rejects goes
# through parse_fields, which decides; every line it accepts parse_fields would accept too
# (the i64 overflow of 19-digit integers is checked after it).
_LINE_RE = re.compile(
    rb"([01])"
    + rb"".join([rb"\t(-?[0-9]{1,19})?"] * NUM_DENSE)
    + rb"".join([rb"\t([0-9a-fA-F]{1,8})?"] * NUM_SPARSE))


def _parse_int(field):
    """ttrec parse_int: optional leading '-', 1..19 ASCII digits, no i64 overflow."""
    if not _INT_RE.fullmatch(field):
        return None
    v = int(field)
    return v if abs(v) <= I64_MAX else None


def _parse_hex(field):
    """ttrec parse_hex: 1..8 hex digits, either case."""
    return int(field, 16) if _HEX_RE.fullmatch(field) else None


def strip_line_end(line):
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def parse_fields(line):
    """The authoritative parse of one line (line end already removed), in ttrec's order: field
    count, then fields left to right, the first bad one deciding the kind. Returns
    (label, dense list of int|None, sparse list of int|None) or the malformed kind (a str)."""
    if line.count(b"\t") + 1 != NUM_FIELDS:
        return "field_count"
    fields = line.split(b"\t")
    if fields[0] == b"0":
        label = 0
    elif fields[0] == b"1":
        label = 1
    else:
        return "bad_label"
    dense = []
    for f in fields[1:1 + NUM_DENSE]:
        if f:
            v = _parse_int(f)
            if v is None:
                return "bad_integer"
            dense.append(v)
        else:
            dense.append(None)
    sparse = []
    for f in fields[1 + NUM_DENSE:]:
        if f:
            v = _parse_hex(f)
            if v is None:
                return "bad_hex"
            sparse.append(v)
        else:
            sparse.append(None)
    return label, dense, sparse


def parse_line(raw):
    """One raw line (with its line end, if any) -> (label, dense, sparse) or a malformed kind."""
    line = strip_line_end(raw)
    if len(line) > MAX_LINE:
        return "field_count"
    m = _LINE_RE.fullmatch(line)
    if m is not None:
        g = m.groups()
        dense = [None if f is None else int(f) for f in g[1:1 + NUM_DENSE]]
        if all(v is None or abs(v) <= I64_MAX for v in dense):
            sparse = [None if f is None else int(f, 16) for f in g[1 + NUM_DENSE:]]
            return int(g[0]), dense, sparse
    return parse_fields(line)


def open_maybe_gzip(path):
    """Plain or gzip (recognised by its magic bytes, like ttrec; multi-member gzip works)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb", buffering=1 << 20)


class RawData:
    """Valid lines of a file: labels [n] uint8, dense features [n, 13] float32 (already
    transformed: missing -> 0, log(max(x, 0) + 1)), raw categorical values [n, 26] uint32
    (missing -> 0, % max_ind_range applied). About 57 bytes a row (Kaggle: 2.6 GB)."""

    def __init__(self, labels, dense, cats, lines, malformed, examples):
        self.labels, self.dense, self.cats = labels, dense, cats
        self.lines, self.malformed, self.examples = lines, malformed, examples


def read_criteo(path, max_ind_range=None, chunk=1 << 16):
    lab_chunks, den_chunks, cat_chunks = [], [], []
    labs, dens, cats = [], [], []
    malformed = dict.fromkeys(MALFORMED_KINDS, 0)
    examples = {k: [] for k in MALFORMED_KINDS}
    lines = 0
    mod = max_ind_range if max_ind_range else None

    def flush():
        if labs:
            lab_chunks.append(np.array(labs, dtype=np.uint8))
            # Raw integers only live for one chunk: they need int64 (or Python ints) exactly.
            den_chunks.append(dense_transform(np.array(dens, dtype=np.int64).reshape(-1, NUM_DENSE)))
            cat_chunks.append(np.array(cats, dtype=np.uint32).reshape(-1, NUM_SPARSE))
            labs.clear()
            dens.clear()
            cats.clear()

    with open_maybe_gzip(path) as f:
        for raw in f:
            lines += 1
            r = parse_line(raw)
            if isinstance(r, str):
                malformed[r] += 1
                if len(examples[r]) < 5:
                    examples[r].append(lines)
                continue
            label, dense, sparse = r
            labs.append(label)
            dens.extend(0 if v is None else v for v in dense)
            if mod is None:
                cats.extend(0 if v is None else v for v in sparse)
            else:
                cats.extend(0 if v is None else v % mod for v in sparse)
            if len(labs) >= chunk:
                flush()
    flush()
    valid = sum(len(c) for c in lab_chunks)
    bad = sum(malformed.values())
    if bad > valid:
        raise SystemExit(f"error: {path}: not a Criteo file: {bad} of {lines} lines are malformed "
                         f"({malformed})")
    if valid == 0:
        raise SystemExit(f"error: {path}: no valid lines")
    labels = np.concatenate(lab_chunks)
    lab_chunks.clear()
    dense = np.concatenate(den_chunks)
    den_chunks.clear()
    cats = np.concatenate(cat_chunks)
    cat_chunks.clear()
    return RawData(labels, dense, cats, lines, malformed, examples)


def dense_transform(raw):
    """ttrec dense_transform: v > 0 -> ln(1 + v) in f64 stored as f32; else (missing, <= 0) 0."""
    x = np.where(raw > 0, raw, 0).astype(np.float64)
    return np.log1p(x).astype(np.float32)


def first_appearance_ids(col):
    """Dense ids of one categorical column, numbered in order of first appearance (ttrec's
    Dictionary). Returns (ids int64 [n], number of distinct values)."""
    uniq, first, inverse = np.unique(col, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inverse.reshape(-1)], len(uniq)


def preprocess(raw):
    """-> labels float32 [n], dense float32 [n, 13], ids int32 [n, 26], table sizes [26].
    The ids overwrite the raw values column by column (ids < n < 2^31)."""
    sizes = []
    for c in range(NUM_SPARSE):
        ids, k = first_appearance_ids(raw.cats[:, c])
        raw.cats[:, c] = ids
        sizes.append(k)
    return raw.labels.astype(np.float32), raw.dense, raw.cats.view(np.int32), sizes


CACHE_VERSION = "torch_train-cache-v1"


def cache_key(path, max_ind_range):
    st = os.stat(path)
    return {"version": CACHE_VERSION, "source": os.path.abspath(path), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "max_ind_range": max_ind_range}


def load_data(path, max_ind_range, cache=None):
    """Read + preprocess, or reuse `cache` (an .npz written by an earlier run of the same file,
    size, mtime and --max-ind-range). -> (labels, dense, ids, sizes, info)."""
    key = cache_key(path, max_ind_range)
    if cache and os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            if info.get("key") == key:
                print(f"data: reusing the preprocessed cache {cache}")
                return (z["labels"], z["dense"], z["ids"], [int(v) for v in z["sizes"]], info)
        print(f"data: the cache {cache} is stale; rebuilding it")
    raw = read_criteo(path, max_ind_range)
    info = {"key": key, "lines": raw.lines, "malformed": raw.malformed, "examples": raw.examples}
    labels, dense, ids, sizes = preprocess(raw)
    if cache:
        tmp = cache + ".tmp.npz"
        np.savez(tmp, labels=labels, dense=dense, ids=ids, sizes=np.array(sizes, dtype=np.int64),
                 info=np.array(json.dumps(info)))
        os.replace(tmp, cache)
        print(f"data: wrote the preprocessed cache {cache}")
    return labels, dense, ids, sizes, info


def rust_round(x):
    """f64::round: half away from zero (Python's round() is half to even)."""
    r = math.floor(x)
    return r + 1 if x - r >= 0.5 else r


def split_rows(n, test_fraction):
    """ttrec's split: (train_end, eval range). With a fraction F: the last round(n * F) rows
    (the cache halves them into test/val but `ttrec train` evaluates both). Without: dlrm's 7 days,
    the last day n // 7 rows, evaluated on its first half (rounded up)."""
    if test_fraction is not None:
        ev = min(int(rust_round(float(n) * test_fraction)), n)
        train_end = n - ev
        eval_rows = (train_end, n)
    else:
        ev = n // 7
        train_end = n - ev
        eval_rows = (train_end, train_end + (ev + 1) // 2)
    if train_end == 0 or eval_rows[1] == eval_rows[0]:
        raise SystemExit(f"error: {n} valid samples are too few to split into training and "
                         "evaluation sets")
    return train_end, eval_rows


# ------------------------------------------------------------------------------------------------
# Metrics (ttrec src/metrics.rs), float64 on float32 probabilities
# ------------------------------------------------------------------------------------------------
def _check(labels, scores):
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores)
    if labels.size == 0 or labels.shape != scores.shape:
        raise ValueError("metrics need equally many labels and predictions, at least one")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(scores)):
        raise ValueError("non-finite prediction")
    return labels, scores


def log_loss(labels, probs):
    labels, probs = _check(labels, probs)
    p = np.clip(probs.astype(np.float64), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(np.mean(np.where(labels == 1, -np.log(p), -np.log(1.0 - p))))


def accuracy(labels, probs):
    labels, probs = _check(labels, probs)
    return float(np.mean((probs > 0.5) == (labels == 1)))


def roc_auc(labels, scores):
    """Exact ROC AUC (Mann-Whitney U): the sum of the positives' ranks, tied scores sharing their
    average rank, so a tied positive/negative pair counts one half."""
    labels, scores = _check(labels, scores)
    pos = int(np.sum(labels == 1))
    neg = labels.size - pos
    if pos == 0 or neg == 0:
        raise ValueError(f"ROC AUC needs both classes, got {pos} positives and {neg} negatives")
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    # Group boundaries by value (-0.0 == 0.0 is one group).
    starts = np.concatenate([[0], np.flatnonzero(s[1:] != s[:-1]) + 1])
    ends = np.concatenate([starts[1:], [s.size]])
    mean_rank = (starts + 1 + ends) / 2.0  # 1-based ranks start+1..end
    is_pos = (labels[order] == 1).astype(np.int64)
    pos_per_group = np.add.reduceat(is_pos, starts)
    rank_sum = float(np.sum(mean_rank * pos_per_group))
    return (rank_sum - pos * (pos + 1) / 2.0) / (float(pos) * float(neg))


def roc_auc_bruteforce(labels, scores):
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    sp = scores[labels == 1][:, None]
    sn = scores[labels == 0][None, :]
    return float(np.sum(sp > sn) + 0.5 * np.sum(sp == sn)) / (sp.size * sn.size)


def evaluate(labels, probs):
    return {"samples": int(len(labels)), "logloss": log_loss(labels, probs),
            "accuracy": accuracy(labels, probs), "auc": roc_auc(labels, probs)}


# ------------------------------------------------------------------------------------------------
# The model (dlrm_s_pytorch.py's DLRM; parameter names as gen_fixtures.py / dlrm)
# ------------------------------------------------------------------------------------------------
def ints(s):
    return fixtures.ints(s)


class DLRM(nn.Module):
    def __init__(self, D, bot, top_full, sizes, sparse_grad=False):
        super().__init__()
        layers = []
        for i in range(len(bot) - 1):
            layers += [nn.Linear(bot[i], bot[i + 1]), nn.ReLU()]  # ReLU after every bottom layer
        self.bot_l = nn.Sequential(*layers)
        layers = []
        for i in range(len(top_full) - 1):
            layers.append(nn.Linear(top_full[i], top_full[i + 1]))
            if i < len(top_full) - 2:
                layers.append(nn.ReLU())  # none after the last (logit) layer
        self.top_l = nn.Sequential(*layers)
        self.emb_l = nn.ModuleList(
            nn.EmbeddingBag(n, D, mode="sum", sparse=sparse_grad) for n in sizes)
        li, lj = fixtures.interaction_pairs(len(sizes) + 1)
        self.register_buffer("li", torch.tensor(li, dtype=torch.long), persistent=False)
        self.register_buffer("lj", torch.tensor(lj, dtype=torch.long), persistent=False)

    def forward(self, dense, ids):
        """dense [B, 13], ids [B, T] int64 -> logits [B]."""
        x = self.bot_l(dense)
        B, D = x.shape
        offsets = torch.arange(B, dtype=torch.long)
        ly = [emb(ids[:, t], offsets) for t, emb in enumerate(self.emb_l)]
        T = torch.cat([x] + ly, dim=1).view(B, -1, D)
        Z = torch.bmm(T, torch.transpose(T, 1, 2))
        R = torch.cat([x, Z[:, self.li, self.lj]], dim=1)
        return self.top_l(R).squeeze(1)


def init_dlrm(model, seed):
    """dlrm's distributions, drawn with numpy default_rng(seed) in the order bottom MLP, top MLP
    (W then b per layer), tables in order: W ~ N(0, sqrt(2/(in+out))), b ~ N(0, sqrt(1/out)),
    table rows U(-1/sqrt(N), 1/sqrt(N)). Drawn in float64, rounded to the model's dtype."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for seq in (model.bot_l, model.top_l):
            for m in seq:
                if isinstance(m, nn.Linear):
                    n_out, n_in = m.weight.shape
                    w = rng.normal(0.0, math.sqrt(2.0 / (n_in + n_out)), size=(n_out, n_in))
                    b = rng.normal(0.0, math.sqrt(1.0 / n_out), size=n_out)
                    m.weight.copy_(torch.from_numpy(w))
                    m.bias.copy_(torch.from_numpy(b))
        for emb in model.emb_l:
            N, D = emb.weight.shape
            a = math.sqrt(1.0 / N)
            step = 1 << 20
            for r0 in range(0, N, step):  # row chunks: the largest Kaggle table has 10M rows
                r1 = min(N, r0 + step)
                emb.weight[r0:r1].copy_(torch.from_numpy(rng.uniform(-a, a, size=(r1 - r0, D))))


# ------------------------------------------------------------------------------------------------
# Training run (ttrec src/train/mod.rs)
# ------------------------------------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="PyTorch CPU DLRM training on raw Criteo data (the peer of `ttrec train`).")
    ap.add_argument("--data", help="raw Criteo TSV file (plain or gzip)")
    ap.add_argument("--test-fraction", type=float, default=None, metavar="F",
                    help="evaluate on the last round(n*F) valid rows (default: dlrm's 7-day split, "
                         "the first half of the last day, as ttrec)")
    ap.add_argument("--mini-batch-size", type=int, default=256)
    ap.add_argument("--test-mini-batch-size", type=int, default=16384)
    ap.add_argument("--nepochs", type=int, default=1)
    ap.add_argument("--num-batches", type=int, default=None,
                    help="training batches per epoch at most (default: all whole batches)")
    ap.add_argument("--learning-rate", type=float, default=0.2)
    ap.add_argument("--arch-sparse-feature-size", type=int, default=16)
    ap.add_argument("--arch-mlp-bot", default="13-512-256-64-16")
    ap.add_argument("--arch-mlp-top", default="512-256-1",
                    help="top MLP widths without the input width (D + F(F-1)/2)")
    ap.add_argument("--max-ind-range", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--no-shuffle", action="store_true", help="train in file order")
    ap.add_argument("--float64", action="store_true", help="train in float64 (default float32)")
    ap.add_argument("--sparse-grad", action="store_true",
                    help="sparse embedding gradients (same SGD update up to the order of float "
                         "additions; needed for speed at Kaggle's table sizes)")
    ap.add_argument("--test-freq", type=int, default=None, metavar="N",
                    help="also evaluate every N training batches")
    ap.add_argument("--print-freq", type=int, default=128, metavar="N")
    ap.add_argument("--summary-json", default=None, metavar="PATH")
    ap.add_argument("--cache", default=None, metavar="PATH.npz",
                    help="keep the preprocessed arrays here and reuse them on later runs of the "
                         "same file (checked by path, size, mtime and --max-ind-range)")
    ap.add_argument("--preprocess-only", action="store_true",
                    help="read and preprocess, print counts and table sizes, stop")
    ap.add_argument("--selfcheck", action="store_true",
                    help="AUC vs brute force, parser cases, model vs gen_fixtures.forward")
    args = ap.parse_args(argv)
    if args.selfcheck:
        return args
    if not args.data:
        ap.error("--data is required")
    if not os.path.isfile(args.data):
        ap.error(f"--data {args.data}: no such file")
    if args.test_fraction is not None and not (0.0 < args.test_fraction < 1.0):
        ap.error("--test-fraction must be between 0 and 1 (exclusive)")
    for name in ("mini_batch_size", "test_mini_batch_size", "nepochs", "print_freq", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("num_batches", "test_freq", "max_ind_range"):
        v = getattr(args, name)
        if v is not None and v < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        ap.error("--learning-rate must be a positive number")
    return args


def run(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = torch.float64 if args.float64 else torch.float32
    D = args.arch_sparse_feature_size
    bot = ints(args.arch_mlp_bot)
    top = ints(args.arch_mlp_top)
    if len(bot) < 2 or bot[0] != NUM_DENSE or bot[-1] != D:
        raise SystemExit(f"error: --arch-mlp-bot {args.arch_mlp_bot} must start with 13 and end "
                         f"with --arch-sparse-feature-size {D}")
    if not top or top[-1] != 1:
        raise SystemExit(f"error: --arch-mlp-top {args.arch_mlp_top} must end with 1")

    # Data.
    t0 = time.perf_counter()
    labels, dense, ids, sizes, info = load_data(args.data, args.max_ind_range, args.cache)
    n = len(labels)
    malformed, lines_read = info["malformed"], info["lines"]
    bad = sum(malformed.values())
    kinds = ", ".join(f"{k}: {v}" for k, v in malformed.items() if v)
    print(f"data: {lines_read} lines read, {bad} malformed skipped{f' ({kinds})' if kinds else ''}"
          f", {n} valid; read and preprocessed in {time.perf_counter() - t0:.1f} s")
    for k, ex in info["examples"].items():
        if ex:
            print(f"data: {k} first at lines {', '.join(map(str, ex))}")
    print(f"table sizes (C1..C26): {', '.join(map(str, sizes))} (sum {sum(sizes)})")
    sizes_model = [max(1, s) for s in sizes]  # a column with no value still needs one row
    if args.preprocess_only:
        return {"valid_lines": n, "lines_read": lines_read, "malformed_lines": bad,
                "malformed_by_kind": malformed, "table_sizes": sizes}
    train_end, (ev0, ev1) = split_rows(n, args.test_fraction)
    bs = args.mini_batch_size
    per_epoch = train_end // bs
    if per_epoch == 0:
        raise SystemExit(f"error: {train_end} training samples do not make one batch of "
                         f"--mini-batch-size {bs}")
    batches = per_epoch if args.num_batches is None else min(args.num_batches, per_epoch)
    print(f"data: {n} samples, {train_end} for training, {ev1 - ev0} for evaluation (rows "
          f"{ev0}..{ev1}); {batches} batches of {bs} per epoch "
          f"({'file order' if args.no_shuffle else f'numpy shuffle, seed {args.seed}'})")

    # Model.
    Fn = NUM_SPARSE + 1
    top_full = [D + Fn * (Fn - 1) // 2] + top
    model = DLRM(D, bot, top_full, sizes_model, sparse_grad=args.sparse_grad).to(dtype)
    init_dlrm(model, args.seed)
    opt = torch.optim.SGD(model.parameters(), lr=args.learning_rate)
    emb_params = sum(s * D for s in sizes_model)
    mlp_params = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("emb_l"))
    print(f"model: bottom MLP {args.arch_mlp_bot}, top MLP {top_full[0]}-{args.arch_mlp_top}, "
          f"D = {D}, {len(sizes_model)} dense tables, {emb_params} embedding parameters, "
          f"{mlp_params} MLP parameters; {str(dtype).replace('torch.', '')}, SGD lr "
          f"{args.learning_rate}, {'sparse' if args.sparse_grad else 'dense'} embedding "
          f"gradients, {torch.get_num_threads()} threads, PyTorch {torch.__version__}")

    dense_t = torch.from_numpy(dense).to(dtype)
    ids_t = torch.from_numpy(ids)
    labels_t = torch.from_numpy(labels).to(dtype)
    eval_labels = labels[ev0:ev1]
    test_n = ev1 - ev0
    eval_batches = max(1, -(-test_n // args.test_mini_batch_size))
    eval_batch = max(1, -(-test_n // eval_batches))  # balanced, as ttrec
    best = {"auc": float("nan")}
    eval_seconds = [0.0]

    def evaluate_now(epoch, batch):
        t = time.perf_counter()
        model.eval()
        probs = []
        with torch.no_grad():
            for s in range(ev0, ev1, eval_batch):
                e = min(ev1, s + eval_batch)
                z = model(dense_t[s:e], ids_t[s:e].long())
                probs.append(torch.sigmoid(z).to(torch.float32).numpy())
        model.train()
        ev = evaluate(eval_labels, np.concatenate(probs))
        eval_seconds[0] += time.perf_counter() - t
        if math.isnan(best["auc"]) or ev["auc"] > best["auc"]:
            best["auc"] = ev["auc"]
        print(f"Testing at {batch}/{batches} of epoch {epoch + 1}: loss {ev['logloss']:.6f}, "
              f"accuracy {100 * ev['accuracy']:.3f} %, auc {ev['auc']:.4f}, best auc "
              f"{best['auc']:.4f}", flush=True)
        return ev

    train_samples = 0
    steps = 0
    not_training = 0.0
    last_eval = None
    loop_start = time.perf_counter()
    for epoch in range(args.nepochs):
        if args.no_shuffle:
            order = np.arange(train_end)
        else:
            order = np.random.default_rng([args.seed, 1, epoch]).permutation(train_end)
        order_t = torch.from_numpy(order)
        interval_start = time.perf_counter()
        interval_samples = 0
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(batches):
            rows = order_t[b * bs:(b + 1) * bs]
            x, s, y = dense_t[rows], ids_t[rows].long(), labels_t[rows]
            z = model(x, s)
            loss = nn.functional.binary_cross_entropy_with_logits(z, y, reduction="mean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            train_samples += bs
            interval_samples += bs
            loss_sum += float(loss.detach()) * bs
            correct += int(((z.detach() > 0) == (y > 0.5)).sum())
            seen += bs
            pos = b + 1
            at_end = pos == batches
            if pos % args.print_freq == 0 or at_end:
                mean = loss_sum / seen
                if not math.isfinite(mean):
                    raise SystemExit(f"error: training stopped: the loss is {mean} "
                                     f"(epoch {epoch + 1}, batch {pos})")
                rate = interval_samples / max(time.perf_counter() - interval_start, 1e-9)
                print(f"Finished training it {pos}/{batches} of epoch {epoch + 1}, {rate:.0f} "
                      f"samples/s, loss {mean:.6f}, accuracy {100 * correct / seen:.3f} %",
                      flush=True)
                loss_sum, correct, seen = 0.0, 0, 0
                interval_start = time.perf_counter()
                interval_samples = 0
            if at_end or (args.test_freq is not None and pos % args.test_freq == 0):
                paused = time.perf_counter()
                last_eval = (evaluate_now(epoch, pos), steps)
                not_training += time.perf_counter() - paused
                interval_start = time.perf_counter()
                interval_samples = 0
    train_seconds = time.perf_counter() - loop_start - not_training
    ev = last_eval[0] if last_eval and last_eval[1] == steps else evaluate_now(args.nepochs - 1, batches)
    rate = train_samples / max(train_seconds, 1e-9)
    print(f"final evaluation on {ev['samples']} samples: log loss {ev['logloss']:.6f}, accuracy "
          f"{100 * ev['accuracy']:.3f} %, AUC {ev['auc']:.4f} (best {best['auc']:.4f})")
    print(f"training: {steps} steps, {train_samples} samples in {train_seconds:.1f} s = {rate:.0f} "
          f"samples/s; PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads")
    summary = {
        "auc": ev["auc"], "logloss": ev["logloss"], "accuracy": ev["accuracy"],
        "best_auc": best["auc"], "train_samples_per_s": rate, "eval_samples": ev["samples"],
        "train_samples": train_samples, "train_seconds": train_seconds, "steps": steps,
        "epochs": args.nepochs, "train_rows": train_end, "valid_lines": n,
        "lines_read": lines_read, "malformed_lines": bad, "malformed_by_kind": malformed,
        "table_sizes": sizes, "embedding_params": emb_params, "mlp_params": mlp_params,
        "config": {"data": os.path.abspath(args.data), "test_fraction": args.test_fraction,
                   "mini_batch_size": bs, "nepochs": args.nepochs, "num_batches": batches,
                   "learning_rate": args.learning_rate, "arch_sparse_feature_size": D,
                   "arch_mlp_bot": args.arch_mlp_bot, "arch_mlp_top": args.arch_mlp_top,
                   "max_ind_range": args.max_ind_range, "seed": args.seed,
                   "shuffle": not args.no_shuffle, "dtype": str(dtype).replace("torch.", ""),
                   "sparse_grad": args.sparse_grad, "threads": torch.get_num_threads(),
                   "test_freq": args.test_freq},
        "implementation": f"tools/dlrm/torch_train.py, PyTorch {torch.__version__} CPU",
    }
    if args.summary_json:
        tmp = args.summary_json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        os.replace(tmp, args.summary_json)
        print(f"summary: {args.summary_json}")
    return summary


# ------------------------------------------------------------------------------------------------
# Self check
# ------------------------------------------------------------------------------------------------
def selfcheck():
    ok = True

    # (1) AUC against the pairwise count, with many ties; the other metrics by hand.
    rng = np.random.default_rng(7)
    worst = 0.0
    trials = 0
    for n in (2, 3, 5, 10, 57, 200, 1000, 3001):
        for levels in (1, 2, 3, 10, 1000, None):
            for _ in range(5):
                y = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.float32)
                if y.min() == y.max():
                    y[0] = 1.0 - y[0]
                s = (rng.random(n) if levels is None
                     else rng.integers(0, levels, n) / max(levels, 1)).astype(np.float32)
                if levels == 2:
                    s[s == 0] = -0.0  # -0.0 and 0.0 are one score
                a, b = roc_auc(y, s), roc_auc_bruteforce(y, s)
                worst = max(worst, abs(a - b))
                trials += 1
    auc_ok = worst < 1e-12
    assert roc_auc([0, 1], [0.1, 0.9]) == 1.0 and roc_auc([1, 0], [0.1, 0.9]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    print(f"AUC vs brute-force pairwise count: {trials} random cases (n 2..3001, 1..1000 tied "
          f"levels or continuous), max |diff| {worst:.2e}: {'ok' if auc_ok else 'FAILED'}")
    ok &= auc_ok
    y = np.array([1, 0, 1, 0], dtype=np.float32)
    p = np.array([0.9, 0.5, 0.5, 0.0], dtype=np.float32)
    p9 = float(np.float32(0.9))
    want_ll = -(math.log(p9) + math.log(0.5) + math.log(0.5) + math.log(1 - 1e-7)) / 4
    m_ok = abs(log_loss(y, p) - want_ll) < 1e-15 and accuracy(y, p) == 0.75
    print(f"log loss / accuracy by hand: {'ok' if m_ok else 'FAILED'}")
    ok &= m_ok

    # (2) Parser: ttrec's rules.
    good = b"\t".join([b"1"] + [b"3"] * 13 + [b"68fd1e64"] * 26)
    cases = [
        (good + b"\n", "valid"),
        (good + b"\r\n", "valid"),
        (good, "valid"),  # last line without a line end
        (b"\t".join([b"0"] + [b""] * 13 + [b""] * 26) + b"\n", "valid"),  # everything missing
        (b"\t".join([b"0"] + [b"-5", b"9223372036854775807"] + [b"0"] * 11 + [b"A"] * 26), "valid"),
        (b"\t".join([b"0"] + [b"9223372036854775808"] + [b"0"] * 12 + [b"a"] * 26), "bad_integer"),
        (b"\t".join([b"0"] + [b"-9223372036854775808"] + [b"0"] * 12 + [b"a"] * 26), "bad_integer"),
        (good.replace(b"\t3\t", b"\t1.5\t", 1), "bad_integer"),
        (good.replace(b"\t3\t", b"\t+1\t", 1), "bad_integer"),
        (good.replace(b"\t3\t", b"\t-\t", 1), "bad_integer"),
        (good.replace(b"\t3\t", b"\t 1\t", 1), "bad_integer"),
        (good.replace(b"68fd1e64", b"0x1", 1), "bad_hex"),
        (good.replace(b"68fd1e64", b"123456789", 1), "bad_hex"),
        (good.replace(b"68fd1e64", b"g0", 1), "bad_hex"),
        (b"2" + good[1:], "bad_label"),
        (b"" + good[1:], "bad_label"),  # empty label
        (b"x" + good[1:].replace(b"\t3\t", b"\tq\t", 1), "bad_label"),  # first bad field decides
        (good.replace(b"\t3\t", b"\tq\t", 1).replace(b"68fd1e64", b"zz", 1), "bad_integer"),
        (good + b"\t", "field_count"),
        (good.rsplit(b"\t", 1)[0], "field_count"),
        (b"\n", "field_count"),
        (b"\t".join([b"0"] + [b"1"] * 13 + [b"a"] * 25 + [b"f" * 8 + b"x" * MAX_LINE]), "field_count"),
    ]
    p_ok = True
    for line, want in cases:
        r = parse_line(line)
        got = r if isinstance(r, str) else "valid"
        slow = parse_fields(strip_line_end(line)) if len(strip_line_end(line)) <= MAX_LINE else "field_count"
        slow = slow if isinstance(slow, str) else "valid"
        if got != want or slow != want:
            print(f"  parser case {line[:60]!r}...: got {got} (slow path {slow}), want {want}")
            p_ok = False
    r = parse_line(cases[4][0])
    p_ok &= r[1][0] == -5 and r[1][1] == I64_MAX and r[2][0] == 10
    r = parse_line(cases[3][0])
    p_ok &= r[0] == 0 and all(v is None for v in r[1] + r[2])
    d = dense_transform(np.array([-3, 0, 1, 1382, I64_MAX], dtype=np.int64))
    p_ok &= d[0] == 0 and d[1] == 0 and d[2] == np.float32(math.log(2.0))
    p_ok &= d[3] == np.float32(math.log1p(1382.0))
    ids, k = first_appearance_ids(np.array([7, 3, 7, 9, 3, 0, 9], dtype=np.uint32))
    p_ok &= k == 4 and ids.tolist() == [0, 1, 0, 2, 1, 3, 2]
    p_ok &= [rust_round(x) for x in (0.5, 1.5, 2.5, 2.4999, 40.0)] == [1, 2, 3, 2, 40]
    p_ok &= split_rows(200, 0.2) == (160, (160, 200)) and split_rows(7, 0.5) == (3, (3, 7))
    p_ok &= split_rows(45840617, None) == (39291958, (39291958, 39291958 + 3274330))
    print(f"parser / preprocessing / split cases ({len(cases)} lines): {'ok' if p_ok else 'FAILED'}")
    ok &= p_ok

    # (3) The training model vs gen_fixtures.forward (the fixtures' reference), float64.
    torch.manual_seed(0)
    D, bot, top, sizes, B = 8, [13, 16, 8], [16, 1], [20, 5, 40], 12
    Fn = len(sizes) + 1
    top_full = [D + Fn * (Fn - 1) // 2] + top
    spec = {"name": "torch_train_check", "D": D, "bot": "-".join(map(str, bot)),
            "top": "-".join(map(str, top_full)), "sizes": sizes, "tt": {}}
    m_worst = 0.0
    for sparse_grad in (False, True):
        model = DLRM(D, bot, top_full, sizes, sparse_grad=sparse_grad).double()
        init_dlrm(model, 3)
        g = np.random.default_rng(11)
        x = torch.from_numpy(np.log1p(g.exponential(3.0, size=(B, 13))))
        s = torch.from_numpy(np.stack([g.integers(0, n, B) for n in sizes], 1))
        y = torch.from_numpy((g.random(B) < 0.4).astype(np.float64))
        z = model(x, s)
        loss = nn.functional.binary_cross_entropy_with_logits(z, y)
        model.zero_grad()
        loss.backward()
        P = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
        ref = fixtures.forward(spec, P, x, s, y)
        gref = torch.autograd.grad(ref["loss"], list(P.values()))
        errs = [abs(float(loss.detach()) - float(ref["loss"].detach())),
                float((torch.sigmoid(z) - ref["probabilities"]).detach().abs().max())]
        for (k, p), gr in zip(model.named_parameters(), gref):
            gm = p.grad.to_dense() if p.grad.is_sparse else p.grad
            errs.append(float((gm - gr).abs().max()))
        m_worst = max(m_worst, max(errs))
    m_ok = m_worst < 1e-13
    print(f"model vs gen_fixtures.forward (loss, probabilities, every gradient; dense and sparse "
          f"embedding grads; float64): max |diff| {m_worst:.2e}: {'ok' if m_ok else 'FAILED'}")
    ok &= m_ok
    print(f"selfcheck {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


def main(argv=None):
    args = parse_args(argv)
    if args.selfcheck:
        return selfcheck()
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
