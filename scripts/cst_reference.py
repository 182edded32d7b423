#!/usr/bin/env python3
"""An independent PyTorch implementation of the CST model of docs/CST.md.

It reads a cst-train weights file (docs/WEIGHTS.md) with h5py, or a cst-export folder
(model.safetensors + config.json, docs/WEIGHTS.md "Export") with safetensors, and computes the
logits of a file of token ids, one slice and one head at a time, in float64. It exists so that a
PyTorch user can rebuild the model from either file, and so that CI checks the C++ model against
a second, separately written implementation (tests/python/test_reference.py, test_export.py).

    python cst_reference.py --weights model.h5 --input ids.h5 --output ref.h5
    python cst_reference.py --weights exported/ --input ids.h5 --output ref.h5
"""
import argparse
import json
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def load_weights(path):
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") not in ("cst-train.weights", b"cst-train.weights"):
            raise SystemExit(f"{path}: not a cst-train weights file")
        cfg = {}
        for k, v in f.attrs.items():
            if k.startswith("config."):
                cfg[k[len("config."):]] = v.decode() if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)
        weights = {k: torch.from_numpy(np.asarray(f[k][()], dtype=np.float64)) for k in f.keys()}
    return cfg, weights


def load_safetensors(folder):
    """(cfg, weights) of a cst-export folder: config.json's fields and model.safetensors' tensors
    (float64), the same pair load_weights returns for the HDF5 file."""
    from safetensors.torch import load_file

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("format") != "cst-train":
        raise SystemExit(f"{folder}/config.json: format {cfg.get('format')!r} is not 'cst-train'")
    weights = {k: v.to(torch.float64) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    return cfg, weights


def load(path):
    """load_safetensors for a folder, load_weights for an HDF5 file."""
    return load_safetensors(path) if os.path.isdir(path) else load_weights(path)


def linear(w, name, x):
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def layer_norm(w, name, x, eps):
    return F.layer_norm(x, x.shape[-1:], w[name + ".weight"], w[name + ".bias"], eps)


def attend(q, k, v, visible, heads):
    """softmax(q k^T / sqrt(d)) v per head over the visible keys; rows with no key give 0."""
    out = torch.zeros(q.shape[0], q.shape[1], dtype=q.dtype)
    d = q.shape[1] // heads
    for h in range(heads):
        hs = slice(h * d, (h + 1) * d)
        for i in range(q.shape[0]):
            keys = visible[i].nonzero().flatten()
            if len(keys) == 0:
                continue
            p = torch.softmax(k[keys, hs] @ q[i, hs] / math.sqrt(d), 0)
            out[i, hs] = p @ v[keys, hs]
    return out


class Csa:
    def __init__(self, cfg, w, prefix):
        self.cfg, self.w, self.p = cfg, w, prefix
        self.L = int(cfg["slice_len"])
        self.e = int(round((float(cfg["alpha"]) - 1) * self.L / 2))
        self.causal = cfg["task"] == "lm"
        self.window = self.L + self.e if self.causal else self.L + 2 * self.e
        self.heads = int(cfg["n_heads"])
        self.pl = w.get("pos_local")
        self.pg = w.get("pos_global")

    def proj(self, name, x):
        return linear(self.w, f"{self.p}.{name}_proj", x)

    def local(self, x, m):
        """Local attention in every extended slice. x [N, D], m [N] bool -> [N, D]."""
        N, D = x.shape
        L, e = self.L, self.e
        y = torch.zeros(N, D, dtype=x.dtype)
        for s in range((N + L - 1) // L):
            qpos = [s * L + i for i in range(L) if s * L + i < N]
            kpos = [s * L - e + w for w in range(self.window)]
            q_in = torch.stack([x[p] + (self.pl[e + (p - s * L)] if self.pl is not None else 0) for p in qpos])
            k_in = torch.stack([(x[p] if 0 <= p < N else torch.zeros(D, dtype=x.dtype))
                                + (self.pl[w] if self.pl is not None else 0) for w, p in enumerate(kpos)])
            v_in = torch.stack([x[p] if 0 <= p < N else torch.zeros(D, dtype=x.dtype) for p in kpos])
            vis = torch.zeros(len(qpos), len(kpos), dtype=torch.bool)
            for i in range(len(qpos)):
                for w, p in enumerate(kpos):
                    ok = 0 <= p < N and bool(m[p])
                    if self.causal and w >= e and w - e > i:
                        ok = False
                    vis[i, w] = ok
            y[qpos] = attend(self.proj("q", q_in), self.proj("k", k_in), self.proj("v", v_in), vis, self.heads)
        return y

    def pool(self, y, m):
        """Slice embeddings [n, D] and whether each slice has a real token."""
        N, D = y.shape
        L = self.L
        n = (N + L - 1) // L
        out, has = torch.zeros(n, D, dtype=y.dtype), []
        for s in range(n):
            real = [p for p in range(s * L, min(N, (s + 1) * L)) if m[p]]
            has.append(len(real) > 0)
            if not real:
                continue
            agg = self.cfg["aggregation"]
            if agg == "mean":
                out[s] = y[real].mean(0)
            elif agg == "max":
                out[s] = y[real].max(0).values
            else:
                wts = self.w[f"{self.p}.agg_weight"]
                out[s] = sum(wts[p - s * L] * y[p] for p in real)
        return out, torch.tensor(has)

    def glob(self, sbar, has):
        n = sbar.shape[0]
        qk_in = sbar + (self.pg[:n] if self.pg is not None else 0)
        q, k, v = self.proj("q", qk_in), self.proj("k", qk_in), self.proj("v", sbar)
        vis = has.unsqueeze(0).repeat(n, 1)
        if self.causal:  # slice t: query of slice t-1, keys s < t
            q = torch.cat([torch.zeros_like(q[:1]), q[:-1]])
            vis &= torch.arange(n).unsqueeze(0) < torch.arange(n).unsqueeze(1)
        return attend(q, k, v, vis, self.heads)

    def __call__(self, x, m):
        N = x.shape[0]
        tok_slice = torch.arange(N) // self.L
        comp = self.cfg["composition"]
        if comp == "local-global":
            yl = self.local(x, m)
            y = yl + self.glob(*self.pool(yl, m))[tok_slice]
        elif comp == "global-local":
            g = self.glob(*self.pool(x, m))[tok_slice]
            y = self.local(x + g, m) + g
        else:  # parallel
            y = self.local(x, m) + self.glob(*self.pool(x, m))[tok_slice]
        return self.proj("o", y)


def full_attention(cfg, w, prefix, x, m):
    N = x.shape[0]
    q, k, v = (linear(w, f"{prefix}.{n}_proj", x) for n in "qkv")
    vis = m.unsqueeze(0).repeat(N, 1)
    if cfg["task"] == "lm":
        vis &= torch.ones(N, N, dtype=torch.bool).tril()
    return linear(w, f"{prefix}.o_proj", attend(q, k, v, vis, int(cfg["n_heads"])))


def forward(cfg, w, ids, m):
    """Logits of one sequence: ids [N] int64, m [N] bool."""
    eps = float(cfg["layer_norm_eps"])
    x = w["tok_emb.weight"][ids]
    if "abs_pos" in w:
        x = x + w["abs_pos"][: len(ids)]
    for i in range(int(cfg["n_layers"])):
        p = f"layers.{i}"
        h = layer_norm(w, f"{p}.ln1", x, eps)
        attn = Csa(cfg, w, f"{p}.attn")(h, m) if cfg["arch"] == "cst" else full_attention(cfg, w, f"{p}.attn", h, m)
        x = x + attn
        x = x + linear(w, f"{p}.ffn.fc2", F.gelu(linear(w, f"{p}.ffn.fc1", layer_norm(w, f"{p}.ln2", x, eps))))
    x = layer_norm(w, "ln_f", x, eps)
    if cfg["task"] == "lm":
        return x @ w["tok_emb.weight"].T
    if cfg["task"] == "mlm":
        h = layer_norm(w, "mlm_head.ln", F.gelu(linear(w, "mlm_head.dense", x)), eps)
        return h @ w["tok_emb.weight"].T + w["mlm_head.bias"]
    pooled = x[m].mean(0)
    return linear(w, "cls_head.fc2", torch.relu(linear(w, "cls_head.fc1", pooled)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="weights file (HDF5) or cst-export folder")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    a = ap.parse_args()
    cfg, w = load(a.weights)
    with h5py.File(a.input, "r") as f:
        ids = torch.from_numpy(f["input_ids"][()].astype(np.int64))
        mask = torch.from_numpy(f["attention_mask"][()].astype(bool)) if "attention_mask" in f else torch.ones_like(ids, dtype=torch.bool)
    logits = torch.stack([forward(cfg, w, ids[b], mask[b]) for b in range(ids.shape[0])])
    with h5py.File(a.output, "w") as f:
        f["logits"] = logits.numpy()


if __name__ == "__main__":
    main()
