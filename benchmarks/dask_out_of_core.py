"""Out-of-core cross-entropy with fastloss.dask on a 2-worker distributed.LocalCluster.

Writes float32 logits (N, C) and int64 targets (N,) to an uncompressed zarr store
(generated here, on the cluster), then measures, each with Dask's progress bar:

- the I/O limit: reading the logits and summing them (``x.sum(dtype=float64)``);
- ``fastloss.dask.cross_entropy(logits, target)``, the mean;
- the per-sample losses (``reduction="none"``) written back to zarr;

and reports throughput (GB/s of logits), the time of each relative to the I/O
limit, and each worker's peak resident memory (sampled every 0.5 s with
``client.run``), which must stay within a few chunks. The store is deleted at
the end unless ``--keep``.

    python benchmarks/dask_out_of_core.py --size-gb 40 --dir /work/ooc-data   # the README's run
    python benchmarks/dask_out_of_core.py --size-gb 0.2                        # CI (.ci/run)
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

import numpy as np


def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


class PeakMemory:
    """Each worker's peak resident set size, sampled from the client in a thread."""

    def __init__(self, client, interval=0.5):
        self.client, self.interval = client, interval
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                for worker, rss in self.client.run(_rss).items():
                    self.peak[worker] = max(self.peak.get(worker, 0), rss)
            except Exception:  # a worker restarting: sample again next time
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _zarr_array(path, shape, chunks, dtype):
    import zarr
    if int(zarr.__version__.split(".")[0]) >= 3:
        return zarr.create_array(path, shape=shape, chunks=chunks, dtype=dtype,
                                 compressors=None, overwrite=True)
    return zarr.open_array(path, mode="w", shape=shape, chunks=chunks, dtype=dtype,
                           compressor=None)


@functools.lru_cache(maxsize=1)
def _base_logits(n_rows, n_classes):
    return np.random.default_rng(0).standard_normal((n_rows, n_classes), dtype=np.float32)


def _generate_block(block_info=None, n_classes=0):
    """Logits of one chunk: one block of standard normals per worker, rolled by the
    chunk's position and scaled (the same data on every run; generating is not
    what is measured, so it costs a copy, not a random number per element)."""
    start, stop = block_info[None]["array-location"][0]
    base = _base_logits(stop - start, n_classes)
    return np.roll(base, start % 9973, axis=0) * np.float32(1 + (start % 7) / 7)


def _targets_block(block_info=None, n_classes=0):
    start, stop = block_info[None]["array-location"][0]
    return np.random.default_rng(start + 1).integers(0, n_classes, stop - start)


def _timed(client, label, work, progress):
    """(seconds, result) of computing `work` (a dask collection or a list of them)."""
    from distributed import progress as progress_bar
    start = time.perf_counter()
    futures = client.compute(work)
    if progress:
        print(f"{label}:", flush=True)
        progress_bar(futures)
        print(flush=True)
    result = client.gather(futures)
    return time.perf_counter() - start, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=40.0, help="logits size (GB, 1e9 bytes)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--chunk-mb", type=float, default=64.0, help="logits per chunk (MB)")
    parser.add_argument("--dir", default=None, help="where to write the zarr store "
                        "(default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import dask
    import dask.array as da
    import distributed

    import fastloss
    import fastloss.dask as fd

    n_classes = args.classes
    rows_per_chunk = max(1, int(args.chunk_mb * 1e6 / (4 * n_classes)))
    n_rows = max(rows_per_chunk, int(args.size_gb * 1e9 / (4 * n_classes)))
    n_rows -= n_rows % rows_per_chunk
    size_gb = n_rows * n_classes * 4 / 1e9
    root = args.dir or tempfile.mkdtemp(prefix="fastloss-ooc-")
    os.makedirs(root, exist_ok=True)
    store = os.path.join(root, "ooc.zarr")
    progress = not args.no_progress
    print(f"fastloss {fastloss.__version__}, dask {dask.__version__}, distributed "
          f"{distributed.__version__}; {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"logits: {n_rows} x {n_classes} float32 = {size_gb:.2f} GB in chunks of "
          f"{rows_per_chunk} rows ({rows_per_chunk * n_classes * 4 / 1e6:.0f} MB), at {store}")

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    # Imports in the workers happen here, not inside the first timing.
    client.run(lambda: __import__("fastloss.dask") and __import__("zarr") and None)
    try:
        logits_z = _zarr_array(os.path.join(store, "logits"), (n_rows, n_classes),
                               (rows_per_chunk, n_classes), "float32")
        target_z = _zarr_array(os.path.join(store, "target"), (n_rows,), (rows_per_chunk,),
                               "int64")
        chunks = ((rows_per_chunk,) * (n_rows // rows_per_chunk), (n_classes,))
        generated = da.map_blocks(_generate_block, chunks=chunks, dtype=np.float32,
                                  n_classes=n_classes)
        targets = da.map_blocks(_targets_block, chunks=chunks[:1], dtype=np.int64,
                                n_classes=n_classes)
        seconds, _ = _timed(client, "writing the zarr store",
                            [da.store(generated, logits_z, lock=False, compute=False),
                             da.store(targets, target_z, lock=False, compute=False)], progress)
        print(f"wrote {size_gb:.2f} GB in {seconds:.1f} s")

        x = da.from_zarr(os.path.join(store, "logits"))
        t = da.from_zarr(os.path.join(store, "target"))
        results = {}
        with PeakMemory(client) as io_memory:
            results["read + sum (I/O limit)"] = _timed(
                client, "read + sum", x.sum(dtype=np.float64), progress)[0]
        losses_z = _zarr_array(os.path.join(store, "losses"), (n_rows,), (rows_per_chunk,),
                               "float32")
        with PeakMemory(client) as ce_memory:
            seconds, mean = _timed(client, "cross_entropy mean", fd.cross_entropy(x, t), progress)
            results["cross_entropy mean"] = seconds
            seconds, _ = _timed(client, "cross_entropy per sample -> zarr", da.store(
                fd.cross_entropy(x, t, reduction="none"), losses_z, lock=False, compute=False),
                progress)
            results["cross_entropy none -> zarr"] = seconds
        io = results["read + sum (I/O limit)"]
        print(f"\nmean cross-entropy = {float(mean):.7f}")
        print(f"{'computation':32s} {'seconds':>8s} {'GB/s':>6s} {'x I/O limit':>11s}")
        for label, seconds in results.items():
            print(f"{label:32s} {seconds:8.2f} {size_gb / seconds:6.2f} {seconds / io:11.2f}")
        chunk_mb = rows_per_chunk * n_classes * 4 / 1e6
        for label, sampler in (("read + sum", io_memory), ("cross_entropy", ce_memory)):
            peaks = ", ".join(f"{rss / 1e6:.0f} MB" for rss in sampler.peak.values())
            print(f"peak worker RSS during {label}: {peaks} (chunk {chunk_mb:.0f} MB)")
    finally:
        client.close()
        cluster.close()
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
            if args.dir is None:
                shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
