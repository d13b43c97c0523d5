r"""Approximate top-10 retrieval over exported item vectors (issue 31, item 2): how much of the
exact top-10 an ANN index finds, and how many queries a second each answers.

A model scores item i for a user as u . W[i] + b[i] (transrec_jax/serving/export.py,
item_and_user_vectors), so retrieval is maximum inner product search; a bias is one more
dimension (W|b against u|1).
Exact: FAISS's flat inner-product index (every item scored, BLAS). Approximate: HNSW (graph,
M neighbours, efSearch candidates) and IVF (k-means cells, nprobe of them searched), at a few
search widths each. recall@10 = |ANN top-10 ∩ exact top-10| / 10, averaged over the queries
(the history is not excluded here: a server asks for 10 + its length and drops it). queries/s:
all queries in one call (FAISS spreads them over the cores) and one query a call (latency).

  (a) a trained run: its item table, queries = the dataset's user vectors
      python experiments/export/ann.py --workdir=runs/ml1m
  (b) a synthetic catalogue: random Gaussian items and users (seeded numpy)
      python experiments/export/ann.py --synthetic --items=1000000 --dim=64

FAISS is an optional extra (pip install 'transrec_jax[ann]'). Records go to ann.json next to
this file (a rerun replaces those of its catalogue), the table is printed and README.md is
regenerated (readme.py).
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import numpy as np

from transrec_jax import hardware
from transrec_jax.studies import runner

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "ann.json")
K = 10
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, (16, 64, 256)
IVF_NPROBE = (1, 8, 32, 128)
SINGLE_QUERIES = 200  # timed one a call


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise SystemExit("error: FAISS is not installed: pip install 'transrec_jax[ann]' "
                         "(or faiss-cpu)") from None
    return faiss


def run_vectors(workdir: str) -> tuple[np.ndarray, np.ndarray]:
    """(items [num_items, D'], queries [num_users, D']) of a trained run, bias folded in."""
    from transrec_jax.serving import Recommender, export

    v = export.item_and_user_vectors(Recommender(workdir))
    items, users = v["item_vectors"][1:], v["user_vectors"]  # (row 0 is padding, not an item)
    if "item_bias" in v:
        items = np.concatenate([items, v["item_bias"][1:, None]], axis=1)
        users = np.concatenate([users, np.ones((len(users), 1), np.float32)], axis=1)
    return items, users


def synthetic_vectors(num_items: int, dim: int, queries: int, seed: int):
    rng = np.random.default_rng(seed)
    items = rng.standard_normal((num_items, dim), np.float32)
    return items, rng.standard_normal((queries, dim), np.float32)


def measure(index, queries: np.ndarray, truth: np.ndarray | None) -> tuple[dict, np.ndarray]:
    """(recall@K against truth (None: this is the exact index), batch and one-a-call speed;
    the top-K found)."""
    index.search(queries[:8], K)  # (first-call allocations out of the timing)
    start = time.perf_counter()
    _, found = index.search(queries, K)
    batch_s = time.perf_counter() - start
    single = queries[:SINGLE_QUERIES]
    start = time.perf_counter()
    for q in single:
        index.search(q[None], K)
    single_s = time.perf_counter() - start
    recall = 1.0 if truth is None else float(np.mean(
        [len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
    return {"recall@10": recall, "qps_batch": len(queries) / batch_s,
            "ms_per_query_single": 1000 * single_s / len(single)}, found


def benchmark(items: np.ndarray, queries: np.ndarray) -> list[dict]:
    """One record per (method, search width) on these vectors."""
    faiss = import_faiss()
    items, queries = np.ascontiguousarray(items), np.ascontiguousarray(queries)
    n, d = items.shape
    records = []

    def build(method, params, make):
        start = time.perf_counter()
        index = make()
        return index, {"method": method, "build_params": params, "build_s": time.perf_counter() - start}

    flat, built = build("exact (flat IP)", {}, lambda: _added(faiss.IndexFlatIP(d), items))
    result, truth = measure(flat, queries, None)
    records.append({**built, "search_params": {}, **result})

    def hnsw():
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return _added(index, items)

    index, built = build("HNSW", {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}, hnsw)
    for ef in HNSW_EF_SEARCH:
        index.hnsw.efSearch = ef
        records.append({**built, "search_params": {"efSearch": ef},
                        **measure(index, queries, truth)[0]})

    nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))  # FAISS wants >= 39 training points a cell

    def ivf():
        index = faiss.index_factory(d, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False)
        index.train(items[np.sort(sample)])  # k-means on a seeded sample of 64 items a cell
        return _added(index, items)

    index, built = build("IVF", {"nlist": nlist}, ivf)
    for nprobe in IVF_NPROBE:
        if nprobe > nlist:
            continue
        index.nprobe = nprobe
        records.append({**built, "search_params": {"nprobe": nprobe},
                        **measure(index, queries, truth)[0]})
    about = {"items": n, "dim": d, "queries": len(queries), "k": K, "faiss": faiss.__version__,
             "threads": faiss.omp_get_max_threads(), "hardware": hardware.host(),
             "load_avg_1min": os.getloadavg()[0],  # (other work on the machine slows every figure)
             "date": datetime.date.today().isoformat()}
    return [{**about, **r} for r in records]


def _added(index, items):
    index.add(items)
    return index


def save(catalogue: str, records: list[dict]) -> None:
    """ann.json's records with this catalogue's replaced."""
    kept = [r for r in runner.read_records(RESULTS) if r["catalogue"] != catalogue]
    runner.write_records(RESULTS, kept + records)


def table(records: list[dict]) -> str:
    lines = ["| catalogue | items | dim | method | build | search | build s | recall@10 | "
             "queries/s (batch) | ms/query (one a call) |", "|" + " --- |" * 10]
    for r in records:
        lines.append(
            f"| {r['catalogue']} | {r['items']:,} | {r['dim']} | {r['method']} | "
            f"{_params(r['build_params'])} | {_params(r['search_params'])} | {r['build_s']:.1f} | "
            f"{r['recall@10']:.3f} | {r['qps_batch']:,.0f} | {r['ms_per_query_single']:.3f} |")
    return "\n".join(lines)


def _params(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a trained run (transrec_jax.main)")
    source.add_argument("--synthetic", action="store_true", help="random items and users")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000, help="synthetic users")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="the catalogue's name in the records (default: the "
                        "workdir's directory, or the synthetic sizes)")
    args = parser.parse_args()
    import_faiss()  # (before any work)
    if args.synthetic:
        items, queries = synthetic_vectors(args.items, args.dim, args.queries, args.seed)
        catalogue = args.name or f"synthetic {args.items:,} x {args.dim} (seed {args.seed})"
    else:
        items, queries = run_vectors(args.workdir)
        catalogue = args.name or os.path.basename(os.path.normpath(args.workdir))
    records = [{"catalogue": catalogue, **r} for r in benchmark(items, queries)]
    save(catalogue, records)
    print(table(records))
    print(f"wrote {RESULTS}")
    import readme  # (beside this file) the README's tables from the records

    readme.write()


if __name__ == "__main__":
    main()
