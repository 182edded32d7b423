#!/usr/bin/env python3
"""Plots a run's loss curves from <run>/metrics.jsonl to <run>/loss.png and prints the
validation perplexity at each evaluation. Exits 1 if the run has no validation or the
validation perplexity did not fall from the first evaluation to the last.

    plot_metrics.py runs/tiny_lm
"""
import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    run = sys.argv[1]
    train, evals = [], []
    with open(f"{run}/metrics.jsonl") as f:
        for line in f:
            r = json.loads(line)
            (train if r["kind"] == "train" else evals).append(r)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross entropy (nats / token)")
    ax.set_title(run)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{run}/loss.png", dpi=120)
    print(f"loss curve: {run}/loss.png")
    for r in evals:
        print(f"  step {r['step']:6d}: validation loss {r['loss']:.4f}, perplexity {math.exp(r['loss']):.1f}")
    if len(evals) < 2 or evals[-1]["loss"] >= evals[0]["loss"]:
        print("validation perplexity did NOT fall")
        sys.exit(1)
    print(f"validation perplexity fell from {math.exp(evals[0]['loss']):.1f} to {math.exp(evals[-1]['loss']):.1f}")


if __name__ == "__main__":
    main()
