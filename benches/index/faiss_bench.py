#!/usr/bin/env python3
"""faiss anchor for the PDQ matching-index benchmark (see run.sh and BENCHMARKS.md).

Loads the same PREFIX.data / PREFIX.queries that `index_bench gen` wrote, builds faiss's
IndexBinaryFlat and IndexBinaryMultiHash, and times range_search one query at a time on one
thread. faiss's binary range_search returns distances strictly below its radius, so it is given
radius + 1 to ask for "distance <= radius". Match counts are compared with Haven's
PREFIX.counts: both must return exactly the same number of matches for every query.
"""
import argparse
import os
import time

import faiss
import numpy as np


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e3
    return 0.0


def bench(name, index, queries, radius, limit):
    times, counts = [], []
    for q in queries[:limit]:
        t = time.perf_counter()
        lims, _, _ = index.range_search(q.reshape(1, -1), radius + 1)
        times.append((time.perf_counter() - t) * 1e3)
        counts.append(int(lims[1] - lims[0]))
    t = np.array(times)
    return counts, (np.percentile(t, 50), np.percentile(t, 99), t.mean(), len(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="prefix", required=True)
    ap.add_argument("--radius", type=int, default=31)
    ap.add_argument("--flat-queries", type=int, default=200)
    ap.add_argument("--mh-queries", type=int, default=1000)
    ap.add_argument(
        "--mh-max-n",
        type=int,
        default=2_000_000,
        help="skip IndexBinaryMultiHash above this size (it took ~1 GB and 21 s to build at 1 M "
        "on the development machine, so ~10 GB at 10 M: more than a shared 24 GB machine spares)",
    )
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    data = np.fromfile(args.prefix + ".data", dtype=np.uint8).reshape(-1, 32)
    # Haven merges duplicate hashes (clustered data has some); give faiss the same distinct set
    # so that match counts are comparable.
    data = np.ascontiguousarray(np.unique(data.view("V32").ravel()).view(np.uint8).reshape(-1, 32))
    queries = np.fromfile(args.prefix + ".queries", dtype=np.uint8).reshape(-1, 32)
    ours = [int(x) for x in open(args.prefix + ".counts").read().split()]
    n = data.shape[0]

    for name in ["flat", "multihash"]:
        if name == "multihash" and n > args.mh_max_n:
            print(f"faiss-multihash n={n} skipped (--mh-max-n {args.mh_max_n})", flush=True)
            continue
        r0 = rss_mb()
        t = time.perf_counter()
        if name == "flat":
            index = faiss.IndexBinaryFlat(256)
        else:
            # 11 tables of 23 bits (253 of 256 bits) with up to 2 flipped bits per table:
            # exact for radius <= 31 by the pigeonhole principle (any hash within 31 bits
            # differs in <= 2 bits on at least one of the 11 tables).
            index = faiss.IndexBinaryMultiHash(256, 11, 23)
            index.nflip = 2
        index.add(data)
        build = time.perf_counter() - t
        mem = rss_mb() - r0
        limit = args.flat_queries if name == "flat" else args.mh_queries
        counts, (p50, p99, mean, k) = bench(name, index, queries, args.radius, limit)
        same = counts == ours[: len(counts)]
        print(
            f"faiss-{name} n={n} radius={args.radius} build_s={build:.2f} rss_MB={mem:.0f} "
            f"p50_ms={p50:.3f} p99_ms={p99:.3f} mean_ms={mean:.3f} queries={k} "
            f"same_counts_as_haven={same} matches={sum(counts)}",
            flush=True,
        )
        del index


if __name__ == "__main__":
    main()
