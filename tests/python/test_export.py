#!/usr/bin/env python3
"""cst-export (C++) read back by the safetensors package, and its folder loaded by
scripts/cst_reference.py reproducing cst-score's logits.

For each case (tasks lm, mlm and cls; arch cst and full) this writes random weights following
docs/WEIGHTS.md with h5py, exports them with cst-export, and checks, from model.safetensors and
config.json alone: the file's layout (header length, 8-byte alignment, metadata), every tensor
bit for bit against the HDF5 file, every config field with its type; then that
cst_reference.load_safetensors(folder) computes cst-score's logits within 1e-5. Also: a
checkpoint folder exports the same tensors; the output rules (no overwriting without
--overwrite, never a foreign file, never the input) and bad options exit 2.
Exit 0 only when every check passes; prints 'N passed, N failed'.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, HERE)
import cst_reference  # noqa: E402
from test_reference import BASE, random_ids, score_error, write_weights  # noqa: E402

EXECUTION_FIELDS = ("full_sdpa", "activation_checkpointing", "csa_kernel")
CASES = [dict(task="lm"), dict(task="mlm"), dict(task="cls"), dict(task="lm", aggregation="linear", alpha=3.0),
         dict(task="lm", arch="full"), dict(task="mlm", arch="full"), dict(task="cls", arch="full")]


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, ok, what):
        print(f"{'ok      ' if ok else 'FAILED  '} {what}")
        self.passed, self.failed = self.passed + bool(ok), self.failed + (not ok)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def check_read_back(check, folder, weights, c, tag):
    """model.safetensors and config.json against the HDF5 file, read with safetensors and json."""
    st = os.path.join(folder, "model.safetensors")
    with open(st, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = f.read(n)
    check(n % 8 == 0 and header.startswith(b"{") and os.path.getsize(st) == 8 + n +
          max(e["data_offsets"][1] for k, e in json.loads(header).items() if k != "__metadata__"),
          f"{tag}: header of {n} bytes (8-byte aligned), tensors fill the rest of the file")
    with safe_open(st, framework="np") as f, h5py.File(weights, "r") as h:
        meta = f.metadata()
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as cf:
            config_hash = json.load(cf).get("config_hash")
        check(meta.get("format") == "pt" and meta.get("cst.format") == "cst-train" and
              meta.get("cst.config_hash") == config_hash and config_hash.isdigit(), f"{tag}: metadata {meta}")
        names = sorted(f.keys())
        check(names == sorted(h.keys()), f"{tag}: {len(names)} tensors, the HDF5 file's names")
        same = all(f.get_tensor(k).dtype == np.float32 and np.array_equal(f.get_tensor(k), h[k][()]) for k in names)
        check(same, f"{tag}: every tensor float32 and equal to the HDF5 dataset bit for bit")
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    want = {k: (float(v) if isinstance(v, float) else v) for k, v in c.items()}
    got = {k: cfg.get(k) for k in want}
    typed = all(type(got[k]) is type(want[k]) for k in want)  # noqa: E721 (exact JSON types)
    check(got == want and typed and cfg.get("format") == "cst-train" and
          not any(k in cfg for k in EXECUTION_FIELDS), f"{tag}: config.json holds every field, typed, no execution field")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True, help="path to the cst-export binary")
    ap.add_argument("--score", required=True, help="path to the cst-score binary")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    check = Checks()
    with tempfile.TemporaryDirectory() as tmp:
        w = os.path.join(tmp, "w.h5")
        for i, over in enumerate(CASES):
            c = dict(BASE, **over)
            tag = f"case {i} {over}"
            out = os.path.join(tmp, f"export{i}")
            write_weights(w, c, rng, std=0.2)
            sha = f"{i:064x}"  # the tokenizer's hash, as cst-train records it (optional attribute)
            if i % 2 == 0:
                with h5py.File(w, "a") as f:
                    f.attrs["tokenizer_sha256"] = sha
            rc, log = run([a.export, "--weights", w, "--output", out])
            check(rc == 0, f"{tag}: cst-export exit {rc} {log.strip() if rc else ''}")
            if rc:
                continue
            check_read_back(check, out, w, c, tag)
            with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
                recorded = json.load(f).get("tokenizer_sha256")
            check(recorded == (sha if i % 2 == 0 else None), f"{tag}: tokenizer_sha256 {recorded} (as the weights file)")
            ids, mask = random_ids(rng, c)
            err = score_error(a.score, w, *cst_reference.load_safetensors(out), ids, mask, tmp)
            if isinstance(err, str):
                check(False, f"{tag}: {err}")
                continue
            check(err < 1e-5, f"{tag}: logits of the exported model: max |cst-score - PyTorch| = {err:.2e}")

        # The output rules, on the last case's export.
        out = os.path.join(tmp, f"export{len(CASES) - 1}")
        before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
        rc, log = run([a.export, "--weights", w, "--output", out])
        check(rc == 2 and "--output" in log and out in log, f"existing export without --overwrite: exit {rc}")
        check(before == {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)},
              "the refused run left the folder as it was")
        rc, log = run([a.export, "--weights", w, "--output", out, "--overwrite"])
        check(rc == 0, f"--overwrite replaces cst-export's own files: exit {rc} {log.strip() if rc else ''}")
        foreign = os.path.join(tmp, "foreign")
        os.makedirs(foreign)
        with open(os.path.join(foreign, "config.json"), "w") as f:
            f.write("{}")
        rc, log = run([a.export, "--weights", w, "--output", foreign, "--overwrite"])
        check(rc == 2 and "config.json" in log and open(os.path.join(foreign, "config.json")).read() == "{}" and
              not os.path.exists(os.path.join(foreign, "model.safetensors")),
              f"a foreign config.json is never replaced: exit {rc}")
        rc, log = run([a.export, "--weights", w, "--output", tmp, "--overwrite"])
        check(rc == 2 and "--weights" in log, f"an output folder holding the input: exit {rc}")
        rc, log = run([a.export, "--weights", w, "--output", os.path.join(tmp, "onnx"), "--format", "onnx"])
        check(rc == 2 and "'onnx'" in log, f"--format onnx: exit {rc}")
        rc, log = run([a.export, "--weights", os.path.join(tmp, "missing.h5"), "--output", os.path.join(tmp, "m")])
        check(rc == 2 and "missing.h5" in log, f"a missing weights file: exit {rc}")

        # A checkpoint folder: its latest step's model.h5.
        ck = os.path.join(tmp, "ck")
        os.makedirs(os.path.join(ck, "step_7"))
        shutil.copy(w, os.path.join(ck, "step_7", "model.h5"))
        with open(os.path.join(ck, "latest"), "w") as f:
            f.write("step_7\n")
        rc, log = run([a.export, "--weights", ck, "--output", os.path.join(tmp, "from_ck")])
        check(rc == 0, f"export of a checkpoint folder: exit {rc} {log.strip() if rc else ''}")
        if rc == 0:
            a_st, b_st = (open(os.path.join(d, "model.safetensors"), "rb").read() for d in (out, os.path.join(tmp, "from_ck")))
            check(a_st == b_st, "the checkpoint folder's export equals the weights file's")
    print(f"{check.passed} passed, {check.failed} failed")
    sys.exit(1 if check.failed else 0)


if __name__ == "__main__":
    main()
