#!/usr/bin/env python3
"""Generate `ttrec-dlrm-v1` fixtures: one DLRM training step (forward, BCE loss, backward, SGD).

Each fixture is a safetensors file holding the starting parameters of a small DLRM (bottom MLP,
dense and/or TT embedding tables, dlrm "dot" interaction, top MLP), one batch (dense features,
one id per table per sample, labels), and the expected loss, probabilities, bottom-MLP output,
interaction output, dense gradient of every parameter and every parameter after one SGD step.

Semantics are those of facebookresearch/dlrm `dlrm_s_pytorch.py` (see shared spec dlrm-criteo.md):
  * bottom MLP: Linear + ReLU after every layer (including the last);
  * embeddings: `nn.EmbeddingBag(mode="sum")` for dense tables, TT-EmbeddingBag (sum) for TT
    tables, with the TT row computed exactly as tools/parity/gen_fixtures.py does (left-to-right
    bmm chain from core 0, cores stored [p_k, R_k q_k R_{k+1}], row digits in C order);
  * interaction "dot", no self terms: T = [x, e_0, .., e_{T-1}] -> [B, F, D]; Z = T T^T; keep
    Z[:, i, j] for `for i in range(F): for j in range(i)`; R = cat([x, Zflat], 1);
  * top MLP: Linear + ReLU after every layer but the last, whose width-1 output is the logit z;
  * loss: mean binary cross-entropy of sigmoid(z) vs the label (computed from the logit);
  * one SGD step p - lr * grad on every parameter (dense gradients, also for tables and cores).
Everything is computed in float64 on the CPU from the float32-rounded stored inputs, and stored as
float32 (`batch.sparse` int64). Deterministic per seed: each fixture's RNG is seeded by
(seed, crc32(name)) and the file is written by tools/parity's sorted-key safetensors writer, so a
rerun is byte-identical.

Usage:
  python3 tools/dlrm/gen_fixtures.py --out tests/fixtures/dlrm [--seed 0] [--only NAME]
  python3 tools/dlrm/gen_fixtures.py --list
  python3 tools/dlrm/gen_fixtures.py --selfcheck          # finite differences + independent path
  python3 tools/dlrm/gen_fixtures.py --verify tests/fixtures/dlrm   # recompute committed files
No network access.
"""

import argparse
import importlib.util
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

FORMAT = "ttrec-dlrm-v1"
HERE = os.path.dirname(os.path.abspath(__file__))

# The TT row computation and the deterministic safetensors writer come from the parity generator.
# It is loaded under its own module name (this file is also called gen_fixtures.py).
_spec = importlib.util.spec_from_file_location(
    "ttrec_parity_gen_fixtures", os.path.join(HERE, "..", "parity", "gen_fixtures.py"))
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

F64 = torch.float64


# --------------------------------------------------------------------------------------------
# Fixture definitions
# --------------------------------------------------------------------------------------------
def fixture_specs():
    """Every fixture, in a fixed order. `tt`: table index -> (p, q, interior ranks)."""
    kaggle_sizes = [15, 8, 300, 200, 10, 4, 30, 12, 3, 25, 20, 250, 16, 5, 22, 180, 4, 19, 14, 2,
                    220, 6, 5, 100, 9, 90]
    q16, r88 = (2, 2, 4), (8, 8)
    kaggle_tt = {  # the 7 largest tables; p balanced with prod(p) >= N (some exact, some padded)
        2: ((6, 7, 8), q16, r88),    # N=300, 336
        11: ((6, 6, 7), q16, r88),   # N=250, 252
        20: ((5, 6, 8), q16, r88),   # N=220, 240
        3: ((5, 5, 8), q16, r88),    # N=200, 200 (exact)
        15: ((5, 6, 6), q16, r88),   # N=180, 180 (exact)
        23: ((4, 5, 5), q16, r88),   # N=100, 100 (exact)
        25: ((4, 5, 5), q16, r88),   # N=90, 100
    }
    return [
        dict(name="dlrm_dense_small", D=8, bot="13-16-8", top="14-16-1", sizes=[20, 5, 40],
             tt={}, batch=12, lr=0.1),
        dict(name="dlrm_tt_small", D=16, bot="13-32-16", top="26-32-16-1", sizes=[50, 7, 300, 120],
             tt={2: ((5, 6, 10), (2, 2, 4), (4, 4)), 3: ((4, 5, 6), (2, 2, 4), (3, 5))},
             batch=16, lr=0.05),
        dict(name="dlrm_kaggle_layers", D=16, bot="13-512-256-64-16", top="367-512-256-1",
             sizes=kaggle_sizes, tt=kaggle_tt, batch=32, lr=0.1),
    ]


def ints(s, sep="-"):
    return [int(x) for x in s.split(sep) if x.strip()]


def validate_spec(spec):
    D, bot, top, sizes = spec["D"], ints(spec["bot"]), ints(spec["top"]), spec["sizes"]
    T = len(sizes)
    Fn = T + 1
    assert bot[-1] == D, f"{spec['name']}: bottom MLP must end at D={D}"
    assert top[0] == D + Fn * (Fn - 1) // 2, f"{spec['name']}: top input {top[0]} != D + F(F-1)/2"
    assert top[-1] == 1, f"{spec['name']}: top MLP must end at 1"
    for t, (p, q, r) in spec["tt"].items():
        assert 0 <= t < T and len(p) == len(q) == len(r) + 1
        assert int(np.prod(q)) == D, f"{spec['name']} table {t}: prod(q) != D"
        assert int(np.prod(p)) >= sizes[t], f"{spec['name']} table {t}: prod(p) < N"


# --------------------------------------------------------------------------------------------
# Random case (inputs stored as float32; int64 ids)
# --------------------------------------------------------------------------------------------
def mlp_names(prefix, widths):
    return [(f"{prefix}.{2 * i}.weight", f"{prefix}.{2 * i}.bias", widths[i], widths[i + 1])
            for i in range(len(widths) - 1)]


def table_param_names(spec):
    """Per table: ('dense', [name]) or ('tt', [core names])."""
    out = []
    for t in range(len(spec["sizes"])):
        if t in spec["tt"]:
            out.append(("tt", [f"emb_l.{t}.tt_cores.{k}" for k in range(len(spec["tt"][t][0]))]))
        else:
            out.append(("dense", [f"emb_l.{t}.weight"]))
    return out


def build_case(spec, seed):
    """Draw parameters and batch. Order of draws: bottom MLP, top MLP, tables (in order), dense
    features, ids (table by table), labels."""
    validate_spec(spec)
    name = spec["name"]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    f32 = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))  # noqa: E731
    D, sizes, B = spec["D"], spec["sizes"], spec["batch"]
    bot, top = ints(spec["bot"]), ints(spec["top"])
    params = {}
    for prefix, widths in (("bot_l", bot), ("top_l", top)):
        for wn, bn, n_in, n_out in mlp_names(prefix, widths):
            # dlrm: W ~ N(0, sqrt(2/(fan_in+fan_out))), b ~ N(0, sqrt(1/fan_out))
            params[wn] = f32(rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), size=(n_out, n_in)))
            params[bn] = f32(rng.normal(0.0, np.sqrt(1.0 / n_out), size=n_out))
    for t, (kind, names) in enumerate(table_param_names(spec)):
        if kind == "dense":
            params[names[0]] = f32(rng.uniform(-0.5, 0.5, size=(sizes[t], D)))
        else:
            p, q, r = spec["tt"][t]
            R = parity.full_ranks(r)
            d = len(p)
            sigma = float(np.prod(r)) ** (-1.0 / (2 * d)) * 0.7
            for k in range(d):
                params[names[k]] = f32(rng.normal(0.0, sigma, size=(p[k], R[k] * q[k] * R[k + 1])))
    dense = f32(np.log1p(rng.exponential(3.0, size=(B, bot[0]))))
    sparse = np.empty((B, len(sizes)), dtype=np.int64)
    for t, N in enumerate(sizes):
        k = min(N, max(2, B // 3))  # few distinct ids per table: rows occur several times
        pool = rng.choice(N, size=k, replace=False)
        sparse[:, t] = rng.choice(pool, size=B, replace=True)
    labels = (rng.random(B) < 0.35).astype(np.float32)
    if labels.sum() == 0:
        labels[rng.integers(B)] = 1.0
    if labels.sum() == B:
        labels[rng.integers(B)] = 0.0
    return {"spec": spec, "params": params, "dense": dense, "sparse": torch.from_numpy(sparse),
            "labels": f32(labels)}


# --------------------------------------------------------------------------------------------
# The model (float64)
# --------------------------------------------------------------------------------------------
def interaction_pairs(Fn):
    li = [i for i in range(Fn) for j in range(i)]
    lj = [j for i in range(Fn) for j in range(i)]
    return li, lj


def forward(spec, P, dense, sparse, labels):
    """dlrm forward. P: name -> float64 tensor. Returns dict of loss, logits, probabilities,
    bottom_out, interaction."""
    x = dense
    for wn, bn, _, _ in mlp_names("bot_l", ints(spec["bot"])):
        x = torch.relu(F.linear(x, P[wn], P[bn]))  # ReLU after every bottom layer
    bottom = x
    B = x.shape[0]
    embs = []
    for t, (kind, names) in enumerate(table_param_names(spec)):
        ids = sparse[:, t]
        if kind == "dense":  # nn.EmbeddingBag(mode="sum"), one id per bag
            embs.append(F.embedding_bag(ids, P[names[0]], torch.arange(B), mode="sum"))
        else:
            p, q, r = spec["tt"][t]
            embs.append(parity.tt_embedding_bag([P[n] for n in names], p, q, r, ids,
                                                torch.arange(B + 1), "sum"))
    Tm = torch.cat([x] + embs, dim=1).view(B, -1, x.shape[1])  # [B, F, D]
    Z = torch.bmm(Tm, Tm.transpose(1, 2))
    li, lj = interaction_pairs(Tm.shape[1])
    R = torch.cat([x, Z[:, li, lj]], dim=1)
    h = R
    top = mlp_names("top_l", ints(spec["top"]))
    for i, (wn, bn, _, _) in enumerate(top):
        h = F.linear(h, P[wn], P[bn])
        if i < len(top) - 1:
            h = torch.relu(h)
    z = h.squeeze(1)
    loss = F.binary_cross_entropy_with_logits(z, labels, reduction="mean")
    return {"loss": loss, "logits": z, "probabilities": torch.sigmoid(z), "bottom_out": bottom,
            "interaction": R}


def to64(case):
    P = {k: v.to(F64) for k, v in case["params"].items()}
    return P, case["dense"].to(F64), case["sparse"], case["labels"].to(F64)


def compute_expected(case):
    """float64 expected tensors from the float32 stored inputs."""
    spec = case["spec"]
    P, dense, sparse, labels = to64(case)
    names = list(P)
    leaves = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    out = forward(spec, leaves, dense, sparse, labels)
    grads = torch.autograd.grad(out["loss"], [leaves[k] for k in names])
    exp = {
        "expected.loss": out["loss"].detach().reshape(1),
        "expected.probabilities": out["probabilities"].detach(),
        "expected.bottom_out": out["bottom_out"].detach(),
        "expected.interaction": out["interaction"].detach(),
    }
    for k, g in zip(names, grads):
        exp[f"expected.grad.{k}"] = g
        exp[f"expected.updated.{k}"] = P[k] - spec["lr"] * g
    return exp


def source_string():
    return (f"ttrec tools/dlrm/gen_fixtures.py: dlrm_s_pytorch semantics in PyTorch "
            f"{torch.__version__} (F.embedding_bag sum, TT bmm chain of tools/parity/gen_fixtures.py, "
            f"autograd, SGD), cpu, float64")


# --------------------------------------------------------------------------------------------
# File I/O
# --------------------------------------------------------------------------------------------
def tt_shapes_string(spec):
    parts = []
    for t in sorted(spec["tt"]):
        p, q, r = spec["tt"][t]
        parts.append("/".join(",".join(map(str, v)) for v in (p, q, r)))
    return ";".join(parts)


def case_metadata(spec):
    return {
        "format": FORMAT,
        "name": spec["name"],
        "source": source_string(),
        "embedding_dim": str(spec["D"]),
        "arch_mlp_bot": spec["bot"],
        "arch_mlp_top": spec["top"],
        "table_sizes": ",".join(map(str, spec["sizes"])),
        "tables": ",".join("tt" if t in spec["tt"] else "dense" for t in range(len(spec["sizes"]))),
        "tt_shapes": tt_shapes_string(spec),
        "learning_rate": parity.fmt_float(spec["lr"]),
        "batch_size": str(spec["batch"]),
        "loss": "bce-mean",
    }


def write_fixture(path, case, expected):
    t = {k: v.to(torch.float32).contiguous() for k, v in case["params"].items()}
    t["batch.dense"] = case["dense"].to(torch.float32).contiguous()
    t["batch.sparse"] = case["sparse"].to(torch.int64).contiguous()
    t["batch.labels"] = case["labels"].to(torch.float32).contiguous()
    for k, v in expected.items():
        t[k] = v.to(torch.float32).contiguous()
    parity.save_safetensors_sorted(path, t, case_metadata(case["spec"]))


def load_fixture(path):
    """Read a ttrec-dlrm-v1 file back: (case, expected dict, metadata)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: format {meta.get('format')!r} != {FORMAT}")
    sizes = ints(meta["table_sizes"], ",")
    kinds = meta["tables"].split(",")
    tt_list = [s for s in meta["tt_shapes"].split(";") if s]
    tt = {}
    for t in [i for i, k in enumerate(kinds) if k == "tt"]:
        p, q, r = (ints(v, ",") for v in tt_list.pop(0).split("/"))
        tt[t] = (tuple(p), tuple(q), tuple(r))
    assert not tt_list, f"{path}: more tt_shapes than tt tables"
    spec = dict(name=meta["name"], D=int(meta["embedding_dim"]), bot=meta["arch_mlp_bot"],
                top=meta["arch_mlp_top"], sizes=sizes, tt=tt, batch=int(meta["batch_size"]),
                lr=float(meta["learning_rate"]))
    validate_spec(spec)
    pnames = [n for wn, bn, _, _ in mlp_names("bot_l", ints(spec["bot"])) + mlp_names("top_l", ints(spec["top"]))
              for n in (wn, bn)] + [n for _, ns in table_param_names(spec) for n in ns]
    case = {"spec": spec, "params": {n: tensors.pop(n) for n in pnames},
            "dense": tensors.pop("batch.dense"), "sparse": tensors.pop("batch.sparse"),
            "labels": tensors.pop("batch.labels")}
    expected = {k: tensors.pop(k) for k in list(tensors) if k.startswith("expected.")}
    if tensors:
        raise ValueError(f"{path}: unknown tensors {sorted(tensors)}")
    return case, expected, meta


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def tt_full_matrix(cores, p, q, r):
    """Independent TT reconstruction: [prod p, D] by einsum over the logical cores."""
    R = parity.full_ranks(r)
    M = cores[0].view(p[0], q[0], R[1])
    for k in range(1, len(p)):
        G = cores[k].view(p[k], R[k], q[k], R[k + 1])
        M = torch.einsum("PQr,prqs->PpQqs", M, G).reshape(M.shape[0] * p[k], M.shape[1] * q[k], R[k + 1])
    return M.reshape(M.shape[0], -1)


def forward_independent(spec, P, dense, sparse, labels):
    """Second implementation for the self check: explicit matrices, explicit pair loop, BCE
    written out. Shares no code with `forward` except `mlp_names`."""
    x = dense
    for wn, bn, _, _ in mlp_names("bot_l", ints(spec["bot"])):
        x = (x @ P[wn].T + P[bn]).clamp(min=0)
    vecs = [x]
    for t, (kind, names) in enumerate(table_param_names(spec)):
        if kind == "dense":
            W = P[names[0]]
        else:
            p, q, r = spec["tt"][t]
            W = tt_full_matrix([P[n] for n in names], p, q, r)[: spec["sizes"][t]]
        vecs.append(W[sparse[:, t]])
    cols = [x]
    for i in range(len(vecs)):
        for j in range(i):
            cols.append((vecs[i] * vecs[j]).sum(dim=1, keepdim=True))
    h = torch.cat(cols, dim=1)
    top = mlp_names("top_l", ints(spec["top"]))
    for i, (wn, bn, _, _) in enumerate(top):
        h = h @ P[wn].T + P[bn]
        if i < len(top) - 1:
            h = h.clamp(min=0)
    z = h[:, 0]
    # -(y log s + (1-y) log(1-s)) with log s = -softplus(-z), log(1-s) = -softplus(z)
    loss = (labels * F.softplus(-z) + (1 - labels) * F.softplus(z)).mean()
    return {"loss": loss, "probabilities": 1.0 / (1.0 + torch.exp(-z)), "bottom_out": x,
            "interaction": torch.cat(cols, dim=1)}


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-300))


def selfcheck(seed, n_per_kind=4, h=1e-6):
    """Finite differences (central, float64) on random entries of each parameter kind, and the
    full expected set against an independent forward + autograd, for the two small fixtures."""
    worst = {}
    ok = True
    for spec in fixture_specs():
        if spec["name"] not in ("dlrm_dense_small", "dlrm_tt_small"):
            continue
        case = build_case(spec, seed)
        exp = compute_expected(case)
        P, dense, sparse, labels = to64(case)
        rng = np.random.default_rng([seed, 12345, zlib.crc32(spec["name"].encode())])

        # (1) independent path: forward values and autograd gradients
        leaves = {k: v.clone().requires_grad_(True) for k, v in P.items()}
        ind = forward_independent(spec, leaves, dense, sparse, labels)
        g_ind = torch.autograd.grad(ind["loss"], list(leaves.values()))
        ind_err = {"loss": rel_err(ind["loss"].reshape(1), exp["expected.loss"])}
        for k in ("probabilities", "bottom_out", "interaction"):
            ind_err[k] = rel_err(ind[k].detach(), exp[f"expected.{k}"])
        ind_err["grads"] = max(rel_err(g, exp[f"expected.grad.{k}"]) for k, g in zip(leaves, g_ind))
        worst_ind = max(ind_err.values())
        print(f"{spec['name']}: independent forward/autograd, max rel err (vs max|want|) per output: "
              + ", ".join(f"{k} {v:.2e}" for k, v in ind_err.items()))
        ok &= worst_ind < 1e-12

        # (2) finite differences on the main path
        def loss_at(name, flat_idx, delta):
            Q = dict(P)
            v = Q[name].clone()
            v.view(-1)[flat_idx] += delta
            Q[name] = v
            with torch.no_grad():
                return float(forward(spec, Q, dense, sparse, labels)["loss"])

        kinds = {"mlp weight": [], "mlp bias": [], "dense embedding": [], "tt core": []}
        for n in P:
            kind = ("mlp weight" if n.endswith(".weight") and not n.startswith("emb_l") else
                    "mlp bias" if n.endswith(".bias") else
                    "dense embedding" if n.startswith("emb_l") and n.endswith(".weight") else "tt core")
            kinds[kind].append(n)
        for kind, names in kinds.items():
            if not names:
                continue
            errs = []
            # tt cores: one entry of every core of every TT table; else n_per_kind random tensors
            picks = names if kind == "tt core" else [names[rng.integers(len(names))] for _ in range(n_per_kind)]
            for n in picks:
                g = exp[f"expected.grad.{n}"].reshape(-1)
                nz = torch.nonzero(g.abs() > 1e-10).reshape(-1)
                i = int(nz[rng.integers(len(nz))])  # an entry with a non-zero gradient
                fd = (loss_at(n, i, h) - loss_at(n, i, -h)) / (2 * h)
                ag = float(g[i])
                e = abs(fd - ag) / max(abs(fd), abs(ag))
                errs.append(e)
                print(f"  fd {kind:15s} {n}[{i}]: autograd {ag:+.10e} fd {fd:+.10e} rel err {e:.2e}")
            worst[(spec["name"], kind)] = max(errs)
            ok &= max(errs) < 1e-6
        # an embedding row that no sample uses: gradient and FD are exactly zero
        for t, (kind, names) in enumerate(table_param_names(spec)):
            if kind != "dense":
                continue
            unused = sorted(set(range(spec["sizes"][t])) - set(sparse[:, t].tolist()))
            if unused:
                n = names[0]
                i = unused[0] * spec["D"]
                fd = (loss_at(n, i, h) - loss_at(n, i, -h)) / (2 * h)
                g = float(exp[f"expected.grad.{n}"].reshape(-1)[i])
                print(f"  unused row {unused[0]} of {n}: autograd {g} fd {fd}")
                ok &= g == 0.0 and fd == 0.0
                break
        # SGD update
        upd = max(rel_err(exp[f"expected.updated.{k}"], P[k] - spec["lr"] * exp[f"expected.grad.{k}"])
                  for k in P)
        ok &= upd == 0.0
    print("finite differences, max rel err per fixture and kind:")
    for (name, kind), e in worst.items():
        print(f"  {name:18s} {kind:15s} {e:.2e}")
    print(f"overall max rel err {max(worst.values()):.2e}; selfcheck {'PASSED' if ok else 'FAILED'}")
    return 0 if ok else 1


def verify(paths):
    """Reload fixture files, recompute every expected tensor from the stored inputs and compare."""
    files = []
    for p in paths:
        files += ([os.path.join(p, f) for f in sorted(os.listdir(p)) if f.endswith(".safetensors")]
                  if os.path.isdir(p) else [p])
    ok = True
    for path in files:
        case, expected, meta = load_fixture(path)
        want = compute_expected(case)
        if set(want) != set(expected):
            print(f"{path}: expected tensor set differs: {sorted(set(want) ^ set(expected))}")
            ok = False
            continue
        worst, worst_name, ulps = 0.0, "", 0
        for k, v in want.items():
            e = rel_err(expected[k], v)
            d = (expected[k].view(torch.int32).long() - v.to(torch.float32).view(torch.int32).long()).abs()
            ulps = max(ulps, int(d.max()) if d.numel() else 0)
            if e > worst:
                worst, worst_name = e, k
        print(f"{path}: {len(want)} expected tensors, worst rel err {worst:.2e} ({worst_name}), "
              f"max float32 ulp distance {ulps}")
        ok &= ulps == 0
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------
def describe(spec):
    kinds = ",".join("tt" if t in spec["tt"] else "dense" for t in range(len(spec["sizes"])))
    return (f"D={spec['D']} bot={spec['bot']} top={spec['top']} T={len(spec['sizes'])} "
            f"({kinds}) B={spec['batch']} lr={spec['lr']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write ttrec-dlrm-v1 DLRM one-step fixtures (safetensors).")
    ap.add_argument("--out", help="output directory (e.g. tests/fixtures/dlrm)")
    ap.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    ap.add_argument("--only", action="append", default=None, metavar="NAME",
                    help="generate only this fixture (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the fixtures and exit")
    ap.add_argument("--selfcheck", action="store_true",
                    help="finite-difference and independent-implementation check of the small cases")
    ap.add_argument("--verify", nargs="+", metavar="PATH",
                    help="reload fixture files (or directories) and recompute their expected tensors")
    args = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True)

    specs = fixture_specs()
    if args.list:
        for s in specs:
            print(f"{s['name']}: {describe(s)}")
        return 0
    if args.selfcheck:
        return selfcheck(args.seed)
    if args.verify:
        return verify(args.verify)
    if not args.out:
        ap.error("--out is required (or --list / --selfcheck / --verify)")
    if args.only:
        unknown = set(args.only) - {s["name"] for s in specs}
        if unknown:
            ap.error(f"unknown fixture(s): {sorted(unknown)}")
        specs = [s for s in specs if s["name"] in args.only]
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for spec in specs:
        case = build_case(spec, args.seed)
        exp = compute_expected(case)
        path = os.path.join(args.out, f"{spec['name']}.safetensors")
        write_fixture(path, case, exp)
        size = os.path.getsize(path)
        total += size
        lab = case["labels"]
        print(f"{spec['name']}: {describe(spec)} loss={float(exp['expected.loss']):.6f} "
              f"labels={int(lab.sum())}/{lab.numel()} {size} bytes")
    print(f"total {total} bytes in {len(specs)} fixtures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
