"""What the durable swap of tasks/common/io.py costs: atomic_dir on a model-sized tree with the fsyncs
(as shipped) against the same swap with fsync disabled, in one run.

    .venv/bin/python bench/io_swap.py --mb 512 --files 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tasks.common import io


def one(root: Path, mb: int, files: int) -> float:
    block = os.urandom(1 << 20)
    t0 = time.perf_counter()
    with io.atomic_dir(root / "model") as staging:
        for i in range(files):
            with open(staging / f"part-{i}.safetensors", "wb") as fh:
                for _ in range(mb // files):
                    fh.write(block)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--files", type=int, default=4)
    args = ap.parse_args()
    real = io._fsync_fd, io._fsync_dir
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        one(root, args.mb, args.files)  # first write: no old tree to exchange with
        durable = one(root, args.mb, args.files)
        io._fsync_fd = lambda fd: None
        io._fsync_dir = lambda path: None
        plain = one(root, args.mb, args.files)
        io._fsync_fd, io._fsync_dir = real
    print(f"{args.mb} MiB in {args.files} files: swap with fsync {durable:.2f} s, without {plain:.2f} s, "
          f"cost {durable - plain:+.2f} s")


if __name__ == "__main__":
    main()
