"""Long-sequence benchmark: SASRec train-step memory and speed vs max_len, attention chunked or not.

Run (from the repository root):
  nice -n 19 .venv/bin/python experiments/benchmarks/long_sequence.py [--max-lens=200,512,1024,2048]
      [--chunks=0,128] [--batch-size=16] [--num-items=3416] [--ce-chunk=1024] [--warmup=2]
      [--steps=5] [--max-gib=10] [--out=PATH]

Model: `configs/sasrec.py` (d_model 64, 2 pre-LN blocks, 1 head, d_ff 64, dropout 0.2 on
embeddings, attention weights and residuals, Adam) with model.max_len = L and
model.attention_chunk = C (0 = the unchunked core). Loss: full softmax CE over all items,
streamed over item chunks (loss.ce_chunk_size = --ce-chunk), so the loss holds
[B·L, ce_chunk] scores instead of [B·L, num_items]. Data: the synthetic generator with every
history L + 3 items long (dataset.synthetic.min_len = max_len = L + 3), so after the
leave-one-out split every training row is a full window; batches come from `TrainBatcher`,
made once per L in the parent and shared by both C.

Each (L, C) runs in its own subprocess (peak RSS per point) that applies
`transrec_jax.host_memory.keep_freed_memory()` as the CLI does (resident memory then stays at
its high-water mark, which ru_maxrss reports anyway), jits `transrec_jax.train.train_step` with
donation and compiles it once, ahead of time. It reports:
  xla_*_gib:  XLA's compiled memory analysis (arguments, outputs, temporaries); xla_peak_gib =
              arguments + outputs - aliased + temporaries, XLA's own bound on the step's buffers,
  compile_s:  lower + compile wall time,
  step_ms:    median wall time of --steps steps after --warmup (the train_step.py harness),
  tokens/s:   mean real (non-pad) targets per batch / median step time,
  peak RSS:   ru_maxrss of the subprocess.
A point whose xla_peak_gib exceeds --max-gib compiles but does not run: marked OOM-risk.
Output: a Markdown table on stdout and the JSON file (default long_sequence.json here).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_step as harness  # noqa: E402  (its time_steps, versions, MARK and REPO)

GIB = 2**30


def get_config(max_len: int, chunk: int, args):
    from configs import sasrec

    words = [
        f"model.max_len={max_len}", f"model.attention_chunk={chunk}",
        f"loss.ce_chunk_size={args.ce_chunk}", f"train.batch_size={args.batch_size}",
        f"dataset.synthetic.num_items={args.num_items}",
        f"dataset.synthetic.num_users={args.batch_size * (args.warmup + args.steps)}",
        f"dataset.synthetic.min_len={max_len + 3}", f"dataset.synthetic.max_len={max_len + 3}",
    ]
    return sasrec.get_config(",".join(words))


def make_batches(max_len: int, args) -> tuple[np.ndarray, int]:
    """(int32 [warmup + steps, batch, max_len + 1], num_items) from full synthetic histories."""
    from transrec_jax.data import load, preprocess, splits
    from transrec_jax.data.batching import TrainBatcher

    config = get_config(max_len, 0, args)
    dataset = preprocess.preprocess(load.read_source(config.dataset, config.seed), config.dataset)
    split = splits.make_split(dataset, config.dataset, seed=config.seed)
    batcher = TrainBatcher(dataset, split, max_len, args.batch_size, config.seed)
    batches = np.stack([next(batcher)["seq"] for _ in range(args.warmup + args.steps)])
    return batches, dataset.num_items


def child(args) -> None:
    from transrec_jax import host_memory

    host_memory.keep_freed_memory()  # before JAX starts its threads, as transrec_jax.main does
    import jax

    from transrec_jax import config as config_lib
    from transrec_jax import train

    data = np.load(args.batches)
    batches, num_items = data[:-1], int(data[-1, 0, 0])
    config = get_config(args.max_len, args.chunk, args)
    config_lib.validate(config)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    graphdef, tx, state = train.init_state(config, num_items, len(batches), init_key)
    step_fn = jax.jit(
        functools.partial(train.train_step, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                          item_log_probs=None),
        donate_argnums=0,
    )
    device_batches = [{"seq": jax.device_put(b)} for b in batches]
    start = time.perf_counter()
    compiled = step_fn.lower(state, device_batches[0], train_key).compile()
    out = {"compile_s": time.perf_counter() - start}
    stats = compiled.memory_analysis()
    if stats is not None:
        out.update({
            "xla_argument_gib": stats.argument_size_in_bytes / GIB,
            "xla_output_gib": stats.output_size_in_bytes / GIB,
            "xla_temp_gib": stats.temp_size_in_bytes / GIB,
            "xla_peak_gib": (stats.argument_size_in_bytes + stats.output_size_in_bytes
                             - stats.alias_size_in_bytes + stats.temp_size_in_bytes) / GIB,
        })
    if out.get("xla_peak_gib", 0.0) > args.max_gib:
        out["skipped"] = f"OOM-risk: XLA needs {out['xla_peak_gib']:.1f} GiB > --max-gib"
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:
        def one(i):
            nonlocal state
            state, metrics = compiled(state, device_batches[i % len(device_batches)], train_key)
            return float(jax.block_until_ready(metrics)["loss"])

        timing = harness.time_steps(one, args.warmup, args.steps)
        timing["first_step_s"] = timing.pop("compile_s")  # compiled ahead: a plain first run
        out.update(timing)
    print(harness.MARK + json.dumps(out), flush=True)


def parent(args) -> None:
    start = time.time()
    tmp = tempfile.mkdtemp()
    load_before = os.getloadavg()
    results, settings = [], {}
    for max_len in args.max_lens:
        batches, num_items = make_batches(max_len, args)
        real_per_batch = float((batches[:, :, 1:] != 0).sum(axis=(1, 2)).mean())
        extra = np.zeros((1, *batches.shape[1:]), np.int32)  # carries num_items
        extra[0, 0, 0] = num_items
        path = os.path.join(tmp, f"batches_{max_len}.npy")
        np.save(path, np.concatenate([batches, extra]))
        settings[max_len] = {"num_items": num_items, "mean_real_targets_per_batch": real_per_batch}
        for chunk in args.chunks:
            cmd = [sys.executable, os.path.abspath(__file__), f"--only={max_len},{chunk}",
                   f"--batches={path}", *(f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
                   ("batch_size", "num_items", "ce_chunk", "warmup", "steps", "max_gib"))]
            print(f"[{time.time() - start:6.0f}s] max_len {max_len}, chunk {chunk} ...",
                  file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                      cwd=harness.REPO)
                lines = [l for l in proc.stdout.splitlines() if l.startswith(harness.MARK)]
                if proc.returncode or not lines:
                    res = {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
                else:
                    res = json.loads(lines[-1][len(harness.MARK):])
            except subprocess.TimeoutExpired:
                res = {"error": f"timed out after {args.timeout} s"}
            if "median_step_s" in res:
                res["tokens_per_s"] = real_per_batch / res["median_step_s"]
            res.update(max_len=max_len, attention_chunk=chunk)
            print(f"         {summary(res)}", file=sys.stderr, flush=True)
            results.append(res)

    table = markdown_table(results)
    print(table)
    config = get_config(args.max_lens[0], 0, args)
    m = config.model
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["nice -n 19 .venv/bin/python",
                             "experiments/benchmarks/long_sequence.py", *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg(), "note": "shared machine; timings are noisy"},
        "versions": harness.versions(),
        "settings": {
            "model": "configs/sasrec.py", "d_model": m.d_model, "num_layers": m.num_layers,
            "num_heads": m.num_heads, "d_ff": m.d_ff, "dropout": m.dropout,
            "attention_dropout": m.attention_dropout, "batch_size": args.batch_size,
            "loss": f"ce, loss.ce_chunk_size={args.ce_chunk}", "synthetic_num_items":
            args.num_items, "data": "synthetic, every history max_len + 3 items (full windows)",
            "warmup_steps": args.warmup, "measured_steps": args.steps, "max_gib": args.max_gib,
            "host_memory": "keep_freed_memory", "per_max_len": settings,
        },
        "results": results,
        "table_markdown": table,
        "total_wall_s": time.time() - start,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {args.out} ({report['total_wall_s']:.0f} s)", file=sys.stderr)


def summary(res: dict) -> str:
    if "error" in res:
        return res["error"][-400:]
    xla = f"XLA peak {res['xla_peak_gib']:.2f} GiB" if "xla_peak_gib" in res else "no XLA analysis"
    if "skipped" in res:
        return f"{res['skipped']} ({xla})"
    return (f"median {res['median_step_s'] * 1e3:.0f} ms, {xla}, RSS {res['peak_rss_mib']:.0f} "
            f"MiB, loss {res['first_loss']:.3f} -> {res['last_loss']:.3f}")


def markdown_table(results: list[dict]) -> str:
    rows = ["| max_len | attention_chunk | median step (ms) | real tokens/s | peak RSS (MiB) | "
            "XLA temp (GiB) | XLA peak (GiB) | compile (s) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        head = f"| {r['max_len']} | {r['attention_chunk'] or 'off'} |"
        if "error" in r:
            rows.append(f"{head} failed: {r['error'][-60:]!r} | | | | | |")
            continue
        xla = (f"{r['xla_temp_gib']:.2f} | {r['xla_peak_gib']:.2f}" if "xla_peak_gib" in r
               else "n/a | n/a")
        timing = ("OOM-risk (not run) | |" if "skipped" in r else
                  f"{r['median_step_s'] * 1e3:.0f} | {r['tokens_per_s']:.0f} |")
        rows.append(f"{head} {timing} {r['peak_rss_mib']:.0f} | {xla} | {r['compile_s']:.1f} |")
    return "\n".join(rows)


def main() -> None:
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-lens", type=ints, default=[200, 512, 1024, 2048])
    p.add_argument("--chunks", type=ints, default=[0, 128], help="model.attention_chunk values")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-items", type=int, default=3416, help="synthetic catalogue (ML-1M's)")
    p.add_argument("--ce-chunk", type=int, default=1024, help="loss.ce_chunk_size (0 = full)")
    p.add_argument("--warmup", type=int, default=2, help="steps before measuring (first included)")
    p.add_argument("--steps", type=int, default=5, help="measured steps")
    p.add_argument("--max-gib", type=float, default=10.0,
                   help="run no point whose XLA memory analysis exceeds this")
    p.add_argument("--timeout", type=int, default=900, help="seconds per subprocess")
    p.add_argument("--out", default=os.path.join(HERE, "long_sequence.json"))
    p.add_argument("--only", type=ints, help=argparse.SUPPRESS)  # max_len,chunk
    p.add_argument("--batches", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        args.max_len, args.chunk = args.only
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
