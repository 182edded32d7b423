#!/usr/bin/env python3
"""Reads a run folder with TensorBoard's own EventAccumulator and checks scalar counts.

    check_tensorboard.py <log dir> TAG=COUNT [TAG=COUNT ...]
"""
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    logdir, wanted = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
    acc = EventAccumulator(logdir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    ok = True
    for tag, count in wanted.items():
        events = acc.Scalars(tag) if tag in tags else []
        good = len(events) == int(count) and all(math.isfinite(e.value) for e in events)
        print(f"{tag}: {len(events)} events (want {count}) {'ok' if good else 'MISMATCH'}")
        ok &= good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
