#!/usr/bin/env python3
"""cst-score (C++) against scripts/cst_reference.py (PyTorch, written separately from docs/CST.md).

For each config of a grid (tasks, alpha, compositions, aggregations, positional schemes, the
full-attention baseline) this writes random weights following docs/WEIGHTS.md with h5py (so a
wrong name or shape in the doc fails here), scores random ids with padding with both, and
demands equal logits. Exit 0 only when every case agrees; prints 'N passed, N failed'.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import cst_reference  # noqa: E402

BASE = dict(arch="cst", task="lm", vocab_size=13, d_model=8, n_heads=2, n_layers=2, d_ff=16,
            max_seq_len=24, slice_len=4, alpha=2.0, dropout=0.0, layer_norm_eps=1e-5, num_classes=3,
            init_std=0.02, composition="local-global", aggregation="mean", pos_emb="auto")


def shapes(c):
    """Parameter names and shapes, exactly as docs/WEIGHTS.md lists them."""
    V, D, F, L = c["vocab_size"], c["d_model"], c["d_ff"], c["slice_len"]
    e = int(round((c["alpha"] - 1) * L / 2))
    W = L + e if c["task"] == "lm" else L + 2 * e
    absolute = c["arch"] == "full" or c["pos_emb"] == "absolute"
    s = {"tok_emb.weight": (V, D), "ln_f.weight": (D,), "ln_f.bias": (D,)}
    if absolute:
        s["abs_pos"] = (c["max_seq_len"], D)
    else:
        s["pos_local"] = (W, D)
        s["pos_global"] = (c["max_seq_len"] // L, D)
    for i in range(c["n_layers"]):
        p = f"layers.{i}"
        for n in ("ln1", "ln2"):
            s[f"{p}.{n}.weight"] = s[f"{p}.{n}.bias"] = (D,)
        for n in "qkvo":
            s[f"{p}.attn.{n}_proj.weight"], s[f"{p}.attn.{n}_proj.bias"] = (D, D), (D,)
        if c["arch"] == "cst" and c["aggregation"] == "linear":
            s[f"{p}.attn.agg_weight"] = (L,)
        s[f"{p}.ffn.fc1.weight"], s[f"{p}.ffn.fc1.bias"] = (F, D), (F,)
        s[f"{p}.ffn.fc2.weight"], s[f"{p}.ffn.fc2.bias"] = (D, F), (D,)
    if c["task"] == "mlm":
        s.update({"mlm_head.dense.weight": (D, D), "mlm_head.dense.bias": (D,), "mlm_head.ln.weight": (D,),
                  "mlm_head.ln.bias": (D,), "mlm_head.bias": (V,)})
    if c["task"] == "cls":
        s.update({"cls_head.fc1.weight": (D, D), "cls_head.fc1.bias": (D,),
                  "cls_head.fc2.weight": (c["num_classes"], D), "cls_head.fc2.bias": (c["num_classes"],)})
    return s


def write_weights(path, c, rng, std=0.5):
    """Normal(0, std) weights of config c, written with h5py as docs/WEIGHTS.md says."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "cst-train.weights"
        f.attrs["format_version"] = np.int64(1)
        for k, v in c.items():
            f.attrs["config." + k] = np.float64(v) if isinstance(v, float) else (np.int64(v) if isinstance(v, int) else v)
        for name, shape in shapes(c).items():
            f[name] = (rng.standard_normal(shape) * std).astype(np.float32)


def random_ids(rng, c):
    """ids [3, 19] int32 of config c, and a 0/1 mask with row 1 padded from position 13."""
    ids = rng.integers(0, c["vocab_size"], size=(3, 19)).astype(np.int32)
    mask = np.ones_like(ids, dtype=np.int8)
    mask[1, 13:] = 0
    return ids, mask


def score_error(score, weights, cfg, wt, ids, mask, tmp):
    """Max |cst-score logits of `weights` - cst_reference.forward(cfg, wt)| over the defined
    outputs (real positions; every row for cls), or the error text when cst-score fails."""
    ids_path, out = os.path.join(tmp, "ids.h5"), os.path.join(tmp, "out.h5")
    with h5py.File(ids_path, "w") as f:
        f["input_ids"], f["attention_mask"] = ids, mask
    r = subprocess.run([score, "--weights", weights, "--input", ids_path, "--output", out, "--overwrite"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"cst-score failed: {r.stderr.strip()}"
    with h5py.File(out, "r") as f:
        got = torch.from_numpy(f["logits"][()].astype(np.float64))
    m = torch.from_numpy(mask.astype(bool))
    want = torch.stack([cst_reference.forward(cfg, wt, torch.from_numpy(ids[b].astype(np.int64)), m[b])
                        for b in range(ids.shape[0])])
    if cfg["task"] != "cls":  # outputs at padding are not defined
        got, want = got[m], want[m]
    return (got - want).abs().max().item()


def cases():
    out = []
    for task in ("lm", "mlm", "cls"):
        for alpha in (1.0, 2.0, 3.0):
            out.append(dict(task=task, alpha=alpha))
    for comp in ("global-local", "parallel"):
        for task in ("lm", "mlm"):
            out.append(dict(task=task, composition=comp))
    for agg in ("max", "linear"):
        out.append(dict(task="lm", aggregation=agg))
    out.append(dict(task="mlm", pos_emb="absolute"))
    out.append(dict(task="lm", arch="full"))
    out.append(dict(task="mlm", arch="full"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--score", required=True, help="path to the cst-score binary")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, over in enumerate(cases()):
            c = dict(BASE, **over)
            w = os.path.join(tmp, "w.h5")
            write_weights(w, c, rng)
            ids, mask = random_ids(rng, c)
            err = score_error(a.score, w, *cst_reference.load_weights(w), ids, mask, tmp)
            if isinstance(err, str):
                print(f"case {i} {over}: {err}")
                failed += 1
                continue
            ok = err < 1e-4
            print(f"case {i:2d} {over}: max |C++ - PyTorch| = {err:.2e} {'ok' if ok else 'MISMATCH'}")
            passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
