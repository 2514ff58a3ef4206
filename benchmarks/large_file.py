"""Clean a numbers file larger than 2 GiB and show that no process holds it in memory.

    python benchmarks/large_file.py [--gib 2.2] [--directory DIR]

Builds the file by repeating a generated 64 MiB block, cleans it into Parquet on the process
pool exactly as the cleaned_numbers asset does, and samples the peak resident memory (VmHWM)
of this process and of every pool worker while it runs. Workers read their own byte ranges,
so each should stay near its chunk size, and the parent near a few chunks' worth of results,
whatever the file size. Needs about 3x the file size in free disk space.
"""

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from data_pipeline.numbers.generation import write_numbers_file
from data_pipeline.numbers.stages.chunk_sizes import DEFAULT_CLEANING_CHUNK_BYTES
from data_pipeline.numbers.stages.cleaning import clean_to_parquet
from data_pipeline.parallel.settings import PoolSettings

BLOCK_LINES = 9_000_000  # about 64 MiB of generated lines


def peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def sample_peaks(peaks: dict[int, float], stop: threading.Event) -> None:
    while not stop.is_set():
        for pid in [os.getpid(), *descendants(os.getpid())]:
            rss = peak_rss_mib(pid)
            if rss is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), rss)
        stop.wait(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.2)
    parser.add_argument("--directory", default=None, help="where to put the files (temp dir)")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CLEANING_CHUNK_BYTES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.directory) as directory:
        folder = Path(directory)
        block, numbers = folder / "block.txt", folder / "numbers.txt"
        started = time.perf_counter()
        write_numbers_file(block, BLOCK_LINES, seed=1, dirty_fraction=0.05)
        target = int(args.gib * 2**30)
        with open(numbers, "wb") as output:
            while output.tell() < target:
                with open(block, "rb") as source:
                    shutil.copyfileobj(source, output, 16 * 2**20)
        block.unlink()
        size = numbers.stat().st_size
        print(f"built {size / 2**30:.2f} GiB in {time.perf_counter() - started:.0f} s", flush=True)

        peaks: dict[int, float] = {}
        stop = threading.Event()
        sampler = threading.Thread(target=sample_peaks, args=(peaks, stop), daemon=True)
        sampler.start()
        started = time.perf_counter()
        summary = clean_to_parquet(
            numbers,
            folder / "cleaned.parquet",
            folder / "rejected.parquet",
            PoolSettings(),
            args.chunk_bytes,
        )
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()

        accepted = pq.read_metadata(folder / "cleaned.parquet").num_rows
        rejected = pq.read_metadata(folder / "rejected.parquet").num_rows
        print(
            f"cleaned {summary.lines:,} lines in {seconds:.0f} s "
            f"({summary.lines / seconds / 1e6:.2f} M lines/s, {summary.chunks:,} chunks, "
            f"{summary.pool.workers} workers)"
        )
        print(
            f"accepted {accepted:,} + rejected {rejected:,} = {accepted + rejected:,} "
            f"(lines: {summary.lines:,})"
        )
        parent = peaks.pop(os.getpid())
        print(
            f"peak RSS: parent {parent:.0f} MiB; other processes (workers, forkserver, "
            f"resource tracker): {', '.join(f'{rss:.0f}' for rss in sorted(peaks.values()))} MiB"
        )
        print(f"file {size / 2**20:,.0f} MiB, chunk {args.chunk_bytes / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
