"""Train-step benchmark: our JAX SASRec step vs a PyTorch version of the same model and loss.

Run (from the repository root):
  .venv/bin/python experiments/benchmarks/train_step.py [--steps=20] [--warmup=3] [--no-compile]
      [--losses=ce,bce_1neg] [--frameworks=jax,torch_eager,recbole]
      [--host-memory=keep|default]
      [--torch-threads=2] [--config-overrides=train.bf16=True,...] [--out=PATH]

Shape: `configs/sasrec.py:ml-1m` (3,416 items -> 3,417 table rows, d_model 64, 2 pre-LN
blocks, 1 head, d_ff 64, max_len 200, batch 128, dropout 0.2 on embeddings, attention
weights and residuals, Adam lr 1e-3, b2 0.98). Losses: full CE, BCE with 1 negative per
position, sampled softmax with 256 uniform negatives per sequence (+ logQ, accidental-hit removal).

For each (loss, framework) -- jax (ours, `transrec_jax.train.train_step` under jax.jit with
donation), torch_eager, torch_compile (torch.compile of the forward + loss; the backward goes
through AOTAutograd; Adam step eager) -- the script re-invokes itself in a fresh subprocess
(`--only=FRAMEWORK --loss=LOSS`) so that peak RSS (ru_maxrss) is per framework. Each
subprocess runs the SAME host batches: real ML-1M training batches from `TrainBatcher` when
the data file exists, else random left-padded rows (flagged in the JSON). It measures:
  compile_s:   wall time of the first step (trace + compile + one run; eager: first run),
  step_ms:     median wall time of `--steps` steps after `--warmup` steps (first included),
  seqs/s:      batch_size / median step time,
  targets/s:   mean real (non-pad) targets per batch / median step time,
  peak RSS:    ru_maxrss of the subprocess,
  compiles_after_first_step (jax): XLA compilations after the first step (should be 0);
    jax_packed (ours on the same windows packed into fewer rows, `train.pack_rows`) compiles
    once per row count, in a warm-up stretched to cover each count's first batch, and reports
    compiles_after_warmup and rows_per_batch.
Step-time ratio = theirs / ours, so > 1 means our JAX step is faster; targets/s ratio = ours /
theirs, the same direction.

recbole (RecBole's own SASRec, `recbole.model.sequential_recommender.SASRec`): runs under the
python of a separate virtualenv, RECBOLE_VENV, which the script makes on first use with
`RECBOLE_PINS` (and reuses while they match); when that fails, its rows say "recbole: did not
install (why)" and the rest still runs. It is timed on the same batches, fed as RecBole feeds
SASRec: each row right-padded, ONE target (the last item) per row, as RecBole trains on
prefix-augmented data; so its targets/s counts batch_size targets per step and seqs/s is the
like-for-like figure. Loss ce -> RecBole's CE; bce_1neg -> its BPR with one uniform negative
(nearest, not the same loss); sampled_softmax_256 has no counterpart (n/a). RecBole's SASRec is
post-LN; ours and the mirror are pre-LN.
--host-memory=keep (the default, as in `transrec_jax.main`) applies
`transrec_jax.host_memory.keep_freed_memory` in EVERY framework's subprocess: it is a process
setting, not a JAX feature, and eager PyTorch gains from it too. Without torch installed (a GPU
box), the torch rows are skipped. --out (default experiments/benchmarks/train_step.json) names
the JSON file.
Output: a Markdown table on stdout and the JSON file.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

LOSSES = {  # name -> configs/sasrec.py arg (pre-LN everywhere: the `bce` word is NOT used)
    "ce": "ml-1m",
    "bce_1neg": "ml-1m,loss.name=bce,loss.num_negatives=1",
    "sampled_softmax_256": "ml-1m,loss.name=sampled_softmax,loss.num_negatives=256",
}
FRAMEWORKS = ("jax", "jax_packed", "torch_eager", "torch_compile", "recbole")
MARK = "@@RESULT@@ "

# RecBole runs in its own virtualenv, made once by this script and reused while the pins match.
# These install and import together on Python 3.11 (2026-11-28). numpy < 2: RecBole's Config
# sets `np.float = np.float_`, which numpy 2 removed; scipy, pandas and scikit-learn are 2024
# releases that run on numpy 1. torch 2.13.0 is the CPU build the main venv has (a plain
# PyPI torch on x86_64 Linux is a multi-GB CUDA build). The rest of recbole's requirements
# (ray 2.6.3, tensorboard, ...) resolve unpinned; the JSON records the venv's `pip freeze`.
RECBOLE_VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv-recbole")
RECBOLE_PINS = ("recbole==1.2.1", "torch==2.13.0", "numpy==1.26.4", "scipy==1.13.1",
                "pandas==2.2.3", "scikit-learn==1.5.2")
RECBOLE_LOSSES = {"ce": "CE", "bce_1neg": "BPR"}  # BPR, 1 negative: nearest to BCE-1, not equal


CONFIG_OVERRIDES = ""  # --config-overrides, e.g. bf16 and fused attention for gpu.sh


def get_config(loss: str):
    from configs import sasrec

    return sasrec.get_config(",".join(filter(None, [LOSSES[loss], CONFIG_OVERRIDES])))


# --------------------------------------------------------------------------------------------
# Batches (made once, in the parent; shared by every subprocess through an .npy file)
# --------------------------------------------------------------------------------------------


def make_batches(num: int) -> tuple[np.ndarray, int, str]:
    """(int32 [num, batch, max_len + 1], num_items, source description)."""
    from transrec_jax.data import load, splits
    from transrec_jax.data.batching import TrainBatcher
    from transrec_jax.models import training_window

    config = get_config("ce")
    if os.path.isfile(os.path.join(REPO, config.dataset.path)):
        cwd = os.getcwd()
        os.chdir(REPO)  # the preset's path is relative to the repository root
        try:
            dataset = load.load_dataset(config.dataset, config.seed, log=lambda m: None)
        finally:
            os.chdir(cwd)
        split = splits.make_split(dataset, config.dataset, seed=config.seed)
        batcher = TrainBatcher(dataset, split, config.model.max_len, config.train.batch_size,
                               config.seed, config.train.window,
                               width=training_window(config.model))
        batches = np.stack([next(batcher)["seq"] for _ in range(num)])
        return batches, dataset.num_items, f"ML-1M TrainBatcher, first {num} batches of epoch 0"
    rng = np.random.default_rng(0)
    num_items, width, batch = 3416, config.model.max_len + 1, config.train.batch_size
    batches = np.zeros((num, batch, width), np.int32)
    for b in range(num):
        for r, n in enumerate(rng.integers(3, width + 1, batch)):
            batches[b, r, width - n:] = rng.integers(1, num_items + 1, n)
    return batches, num_items, "random left-padded rows (ML-1M file not found)"


# --------------------------------------------------------------------------------------------
# Ours: JAX
# --------------------------------------------------------------------------------------------


def run_jax(loss: str, batches: np.ndarray, num_items: int, warmup: int, steps: int,
            packed: bool = False) -> dict:
    import functools

    import jax

    from transrec_jax import train
    from transrec_jax.data.batching import pack_windows

    config = get_config(loss)
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    graphdef, tx, state = train.init_state(config, num_items, warmup + steps, init_key)
    step_fn = jax.jit(
        functools.partial(train.train_step, graphdef=graphdef, tx=tx, loss_cfg=config.loss,
                          item_log_probs=None),  # uniform sampler: no popularity log q
        donate_argnums=0,
    )
    if packed:  # the same windows in fewer rows, as train.pack_rows makes them
        host = [pack_windows(b, max(len(b) // 8, 1)) for b in batches]
        shapes = [b["seq"].shape for b in host]
        # Warm-up covers the first step of every row count (each compiles once).
        warmup = max(warmup, max(shapes.index(s) for s in set(shapes)) + 1)
    else:
        host = [{"seq": b} for b in batches]
    device_batches = [jax.device_put(b) for b in host]
    jax.block_until_ready(device_batches)
    compiles = []  # XLA compilations, counted after the first step
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _secs, **_: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)

    clear_at = warmup if packed else 1  # packed: one compile per row count, all in warm-up

    def one(i):
        nonlocal state
        if i == clear_at:
            compiles.clear()
        state, metrics = step_fn(state, device_batches[i % len(device_batches)], train_key)
        return float(jax.block_until_ready(metrics)["loss"])

    rows = [b["seq"].shape[0] for b in host]
    counted = "compiles_after_warmup" if packed else "compiles_after_first_step"
    return {**time_steps(one, warmup, steps), counted: len(compiles),
            "rows_per_batch": {"mean": float(np.mean(rows)), "distinct": sorted(set(rows))}}


# --------------------------------------------------------------------------------------------
# Theirs: a PyTorch SASRec mirroring transrec_jax/models (pre-LN) and transrec_jax/losses.py
# --------------------------------------------------------------------------------------------


def torch_model(num_items: int, m):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Attention(nn.Module):
        """Explicit softmax(QKᵀ/√d) V with masked rows zeroed and dropout on the weights."""

        def __init__(self):
            super().__init__()
            self.heads, self.head_dim = m.num_heads, m.d_model // m.num_heads
            self.q, self.k, self.v, self.o = (nn.Linear(m.d_model, m.d_model) for _ in range(4))

        def forward(self, h, mask):
            B, L, _ = h.shape

            def split(x):  # [B, L, D] -> [B, H, L, Dh]
                return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)

            q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
            logits = q @ k.transpose(-1, -2) * self.head_dim**-0.5
            logits = logits.masked_fill(~mask, torch.finfo(torch.float32).min)
            weights = torch.softmax(logits, dim=-1).masked_fill(~mask, 0.0)
            weights = F.dropout(weights, m.attention_dropout, self.training)
            out = (weights @ v).transpose(1, 2).reshape(B, L, -1)
            return self.o(out)

    class Layer(nn.Module):
        """Pre-LN: x = x + Dropout(Attn(LN(x))); x = x + Dropout(FFN(LN(x)))."""

        def __init__(self):
            super().__init__()
            self.attention_norm = nn.LayerNorm(m.d_model, eps=1e-6)  # flax's default epsilon
            self.attention = Attention()
            self.ffn_norm = nn.LayerNorm(m.d_model, eps=1e-6)
            self.hidden, self.output = nn.Linear(m.d_model, m.d_ff), nn.Linear(m.d_ff, m.d_model)

        def forward(self, x, mask):
            x = x + F.dropout(self.attention(self.attention_norm(x), mask), m.dropout, self.training)
            h = F.dropout(F.gelu(self.hidden(self.ffn_norm(x))), m.dropout, self.training)
            return x + F.dropout(self.output(h), m.dropout, self.training)

    class SASRec(nn.Module):
        def __init__(self):
            super().__init__()
            self.item_embedding = nn.Embedding(num_items + 1, m.d_model)
            self.positions = nn.Embedding(m.max_len, m.d_model)
            self.layers = nn.ModuleList(Layer() for _ in range(m.num_layers))
            self.final_norm = nn.LayerNorm(m.d_model, eps=1e-6)
            for p in (self.item_embedding.weight, self.positions.weight):
                nn.init.normal_(p, std=m.init_std)
            for layer in self.layers:
                for lin in (layer.attention.q, layer.attention.k, layer.attention.v,
                            layer.attention.o, layer.hidden, layer.output):
                    nn.init.normal_(lin.weight, std=m.init_std)
                    nn.init.zeros_(lin.bias)

        def forward(self, tokens):
            L = tokens.shape[1]
            ids = torch.arange(L - 1, -1, -1, device=tokens.device)  # counted from the right
            x = F.dropout(self.item_embedding(tokens) + self.positions(ids), m.dropout, self.training)
            causal = torch.ones(L, L, dtype=torch.bool, device=tokens.device).tril()
            mask = (tokens != 0)[:, None, None, :] & causal[None, None]
            for layer in self.layers:
                x = layer(x, mask)
            return self.final_norm(x)

    return SASRec()


def torch_loss(lo, num_items: int):
    """(model, seq) -> scalar loss, the same three losses as transrec_jax/losses.py."""
    import math

    import torch
    from torch.nn import functional as F

    def loss_fn(model, seq):
        targets = seq[:, 1:].reshape(-1)
        h = model(seq[:, :-1]).reshape(targets.shape[0], -1)
        real = targets != 0
        w = real.float()
        t = torch.where(real, targets, torch.ones_like(targets))  # harmless id at padding
        W = model.item_embedding.weight  # tied output table, row 0 = padding
        if lo.name == "ce":  # softmax over items 1..num_items
            per = F.cross_entropy(h @ W[1:].T, t - 1, reduction="none")
        else:
            positive = (h * W[t]).sum(-1)
            if lo.name == "bce":  # per-position uniform negatives [N, K]
                neg = torch.randint(1, num_items + 1, (t.shape[0], lo.num_negatives))
                terms = F.softplus(torch.einsum("nd,nkd->nk", h, W[neg]))
                terms = terms.masked_fill(neg == t[:, None], 0.0)
                per = F.softplus(-positive) + terms.sum(-1)
            else:  # sampled softmax: one draw [K] per sequence; uniform log q is a constant
                rows, length = seq.shape[0], seq.shape[1] - 1
                neg = torch.randint(1, num_items + 1, (rows, lo.num_negatives))
                log_q = -math.log(num_items)
                positive = positive - log_q
                scores = torch.einsum("bld,bkd->blk", h.view(rows, length, -1), W[neg])
                neg = neg.repeat_interleave(length, dim=0)  # each position gets its row's draw
                negative = (scores.reshape(rows * length, -1) - log_q).masked_fill(
                    neg == t[:, None], -math.inf)
                logits = torch.cat([positive[:, None], negative], dim=1)
                per = torch.logsumexp(logits, dim=-1) - positive
        per = torch.where(real, per, torch.zeros_like(per))
        return (per * w).sum() / w.sum().clamp_min(1.0)

    return loss_fn


def run_torch(loss: str, batches: np.ndarray, num_items: int, warmup: int, steps: int,
              compile_: bool, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = get_config(loss)
    model = torch_model(num_items, config.model).train()
    loss_fn = torch_loss(config.loss, num_items)
    if compile_:
        loss_fn = torch.compile(loss_fn)
    t = config.train
    opt = torch.optim.Adam(model.parameters(), lr=t.learning_rate, betas=(0.9, t.adam_b2), eps=1e-8)
    host_batches = [torch.from_numpy(b).long() for b in batches]

    def one(i):
        opt.zero_grad(set_to_none=True)
        value = loss_fn(model, host_batches[i % len(host_batches)])
        value.backward()
        opt.step()
        return float(value.detach())

    return time_steps(one, warmup, steps)


# --------------------------------------------------------------------------------------------
# Theirs: RecBole's own SASRec (runs under RECBOLE_VENV's python; no JAX, no ml_collections)
# --------------------------------------------------------------------------------------------


def recbole_settings(loss: str) -> dict:
    """The benchmark's shape in RecBole's config keys (made in the parent, passed as JSON)."""
    config = get_config(loss)
    m = config.model
    settings = {
        "n_layers": m.num_layers, "n_heads": m.num_heads, "hidden_size": m.d_model,
        "inner_size": m.d_ff, "hidden_dropout_prob": m.dropout,
        "attn_dropout_prob": m.attention_dropout, "hidden_act": m.activation,
        "MAX_ITEM_LIST_LENGTH": m.max_len, "loss_type": RECBOLE_LOSSES[loss],
        "learning_rate": config.train.learning_rate, "train_batch_size": config.train.batch_size,
        "gpu_id": "", "use_gpu": False,
    }
    if loss == "ce":  # RecBole refuses negative sampling with CE
        settings["train_neg_sample_args"] = None
    else:
        settings["train_neg_sample_args"] = {"distribution": "uniform", "sample_num": 1}
    return settings


def run_recbole(batches: np.ndarray, num_items: int, warmup: int, steps: int, threads: int,
                settings: dict) -> dict:
    """RecBole's SASRec.calculate_loss + backward + Adam step, as RecBole's Trainer runs it.

    Each of our rows becomes one RecBole interaction: its inputs (row[:-1]) right-aligned as
    RecBole pads them, their count as the length and the row's last item as the one target
    (RecBole trains on the last position only). BPR's negative is drawn in the step here;
    RecBole's dataloader draws it outside.
    """
    import importlib.metadata as md

    import recbole
    import torch
    from recbole.config import Config
    from recbole.model.sequential_recommender import SASRec

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    argv, sys.argv = sys.argv, sys.argv[:1]  # Config reads --key=value pairs from argv
    try:
        config = Config(model="SASRec", dataset="train_step_benchmark", config_dict=settings)
    finally:
        sys.argv = argv

    class Items:
        """Stands in for RecBole's Dataset: SASRec only asks it for the item count."""

        def num(self, field):
            return num_items + 1  # RecBole counts the padding id 0

    model = SASRec(config, Items()).train()
    opt = torch.optim.Adam(model.parameters(), lr=config["learning_rate"],
                           weight_decay=config["weight_decay"])  # RecBole Trainer's "adam"
    inputs = batches[:, :, :-1]
    lengths = (inputs != 0).sum(-1)
    right = np.stack([[np.roll(row, n) for row, n in zip(b, ns)]  # left- to right-padded
                      for b, ns in zip(inputs, lengths)])
    host = [{model.ITEM_SEQ: torch.from_numpy(r).long(),
             model.ITEM_SEQ_LEN: torch.from_numpy(np.maximum(n, 1)).long(),
             model.POS_ITEM_ID: torch.from_numpy(b[:, -1]).long()}
            for r, n, b in zip(right, lengths, batches)]

    def one(i):
        interaction = dict(host[i % len(host)])
        if config["loss_type"] == "BPR":
            interaction[model.NEG_ITEM_ID] = torch.randint(1, num_items + 1, (batches.shape[1],))
        opt.zero_grad(set_to_none=True)
        value = model.calculate_loss(interaction)
        value.backward()
        opt.step()
        return float(value.detach())

    return {**time_steps(one, warmup, steps), "targets_per_step": int(batches.shape[1]),
            "loss_type": config["loss_type"],
            "versions": {"recbole": recbole.__version__, "torch": torch.__version__,
                         "numpy": np.__version__, "pandas": md.version("pandas")}}


def recbole_python(timeout: int) -> tuple[str | None, str]:
    """(the venv's python, "") once RecBole installs and imports there, else (None, why not)."""
    python = os.path.join(RECBOLE_VENV, "bin", "python")
    stamp = os.path.join(RECBOLE_VENV, "pins.txt")
    pins = "\n".join(RECBOLE_PINS)
    if os.path.isfile(stamp) and open(stamp).read() == pins:
        return python, ""
    for cmd in ([sys.executable, "-m", "venv", "--clear", RECBOLE_VENV],
                [python, "-m", "pip", "install", "-q", *RECBOLE_PINS],
                [python, "-c", "from recbole.model.sequential_recommender import SASRec"]):
        print(f"recbole venv: {' '.join(cmd[-3:])}", file=sys.stderr, flush=True)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"{cmd[1:3]} timed out after {timeout} s"
        if proc.returncode:
            lines = [l for l in (proc.stderr or proc.stdout).splitlines() if l.strip()]
            return None, " | ".join([l for l in lines if l.startswith("ERROR")][-2:] or lines[-3:])
    with open(stamp, "w") as f:
        f.write(pins)
    return python, ""


def recbole_freeze(python: str) -> list[str]:
    proc = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True)
    return proc.stdout.split()


# --------------------------------------------------------------------------------------------
# Measurement and driver
# --------------------------------------------------------------------------------------------


def time_steps(one, warmup: int, steps: int) -> dict:
    times, losses = [], []
    for i in range(warmup + steps):
        start = time.perf_counter()
        losses.append(one(i))
        times.append(time.perf_counter() - start)
    measured = times[warmup:]
    return {
        "compile_s": times[0],
        "warmup_s": times[:warmup],
        "step_s": measured,
        "median_step_s": statistics.median(measured),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child(args) -> None:
    if args.host_memory == "keep":
        from transrec_jax import host_memory

        host_memory.keep_freed_memory()  # before any framework starts its threads
    data = np.load(args.batches)
    batches, num_items = data[: args.num_batches], int(data[-1, 0, 0])
    if args.only in ("jax", "jax_packed"):
        out = run_jax(args.loss, batches, num_items, args.warmup, args.steps,
                      packed=args.only == "jax_packed")
    elif args.only == "recbole":
        out = run_recbole(batches, num_items, args.warmup, args.steps, args.torch_threads,
                          json.loads(args.recbole_settings))
    else:
        out = run_torch(args.loss, batches, num_items, args.warmup, args.steps,
                        compile_=args.only == "torch_compile", threads=args.torch_threads)
    print(MARK + json.dumps(out), flush=True)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def parent(args) -> None:
    start = time.time()
    num_batches = args.warmup + args.steps
    batches, num_items, source = make_batches(num_batches)
    real_per_batch = float((batches[:, :, 1:] != 0).sum(axis=(1, 2)).mean())
    # One file: the batches, then a block carrying num_items (keeps the hand-off to one array).
    extra = np.zeros((1, *batches.shape[1:]), np.int32)
    extra[0, 0, 0] = num_items
    path = os.path.join(tempfile.mkdtemp(), "batches.npy")
    np.save(path, np.concatenate([batches, extra]))

    frameworks = [f for f in args.frameworks if args.compile or f != "torch_compile"]
    if importlib.util.find_spec("torch") is None:
        skipped = [f for f in frameworks if f.startswith("torch")]
        frameworks = [f for f in frameworks if f not in skipped]
        if skipped:
            print(f"torch is not installed: skipping {', '.join(skipped)}", file=sys.stderr)
    recbole_py, recbole_info = None, {}
    if "recbole" in frameworks:
        recbole_py, why = recbole_python(args.timeout)
        recbole_info = {"pins": list(RECBOLE_PINS), "venv": os.path.relpath(RECBOLE_VENV, REPO)}
        if recbole_py:
            recbole_info["pip_freeze"] = recbole_freeze(recbole_py)
        else:
            recbole_info["install_error"] = why
            print(f"recbole: did not install ({why})", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    results: dict = {}
    for loss in args.losses:
        for fw in frameworks:
            if fw == "recbole" and loss not in RECBOLE_LOSSES:
                results.setdefault(loss, {})[fw] = {"n/a": "no RecBole counterpart"}
                continue
            if fw == "recbole" and not recbole_py:
                results.setdefault(loss, {})[fw] = {
                    "error": f"recbole: did not install ({recbole_info['install_error']})"}
                continue
            cmd = [recbole_py if fw == "recbole" else sys.executable, os.path.abspath(__file__),
                   f"--only={fw}", f"--loss={loss}",
                   f"--batches={path}", f"--num-batches={num_batches}",
                   f"--warmup={args.warmup}", f"--steps={args.steps}",
                   f"--host-memory={args.host_memory}", f"--torch-threads={args.torch_threads}",
                   f"--config-overrides={args.config_overrides}"]
            if fw == "recbole":
                cmd.append(f"--recbole-settings={json.dumps(recbole_settings(loss))}")
            print(f"[{time.time() - start:6.0f}s] {loss} / {fw} ...", file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                      cwd=REPO)
                lines = [l for l in proc.stdout.splitlines() if l.startswith(MARK)]
                if proc.returncode or not lines:
                    res = {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
                else:
                    res = json.loads(lines[-1][len(MARK):])
            except subprocess.TimeoutExpired:
                res = {"error": f"timed out after {args.timeout} s"}
            if "median_step_s" in res:
                res["seqs_per_s"] = batches.shape[1] / res["median_step_s"]
                res["targets_per_s"] = (res.get("targets_per_step", real_per_batch)
                                        / res["median_step_s"])
                print(f"         median {res['median_step_s'] * 1e3:.1f} ms, first step "
                      f"{res['compile_s']:.1f} s, loss {res['first_loss']:.3f} -> "
                      f"{res['last_loss']:.3f}", file=sys.stderr, flush=True)
            else:
                print(f"         {res['error'][-400:]}", file=sys.stderr, flush=True)
            results.setdefault(loss, {})[fw] = res

    table = markdown_table(results, frameworks)
    print(table)
    from transrec_jax import hardware

    config = get_config("ce")
    m = config.model
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "experiments/benchmarks/train_step.py",
                             *sys.argv[1:]]),
        "machine": {"cpu_count": os.cpu_count(), **hardware.host(), "platform": platform.platform(),
                    "processor": platform.processor(), "machine": platform.machine(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "note": "shared machine; timings are noisy"},
        "versions": versions(),
        "settings": {
            "num_items": num_items, "table_rows": num_items + 1, "d_model": m.d_model,
            "num_layers": m.num_layers, "num_heads": m.num_heads, "d_ff": m.d_ff,
            "max_len": m.max_len, "batch_size": config.train.batch_size, "dropout": m.dropout,
            "attention_dropout": m.attention_dropout, "norm_placement": m.norm_placement,
            "activation": m.activation, "positions": m.positions, "head": m.head,
            "optimizer": "adam", "learning_rate": config.train.learning_rate,
            "adam_b2": config.train.adam_b2,
            "dtype": "bfloat16 compute" if config.train.bf16 else "float32",
            "fused_attention": config.model.fused_attention,
            "config_overrides": args.config_overrides,
            "loss_configs": {k: f"configs/sasrec.py:{v}" for k, v in LOSSES.items()},
            "warmup_steps": args.warmup, "measured_steps": args.steps,
            "torch_threads": args.torch_threads, "torch_compile": args.compile,
            "host_memory": args.host_memory,
            "data": source, "mean_real_targets_per_batch": real_per_batch,
            "ratio": "theirs / ours median step time: > 1 means our JAX step is faster",
            "targets_ratio": "ours / theirs targets per second: > 1 means ours is faster",
        },
        "recbole": recbole_info and {
            **recbole_info,
            "model": "recbole.model.sequential_recommender.SASRec, RecBole's own Config "
                     "defaults (layer_norm_eps 1e-12, initializer_range 0.02) plus the settings "
                     "above; Adam as RecBole's Trainer builds it (betas 0.9/0.999, weight decay 0)",
            "protocol": "RecBole scores the LAST position of each sequence only (its data are "
                        "augmented into prefixes): one target per row, batch_size targets per "
                        "step, vs every real position for jax/torch. Same encoder input per "
                        "sequence, so seqs/s is the like-for-like comparison",
            "differences": "post-LN blocks and LayerNorm+dropout on the input embeddings (ours "
                           "pre-LN with a final LayerNorm); left-counted positions on "
                           "right-padded rows; CE over all 3,417 table rows incl. padding; "
                           "bce_1neg runs RecBole's BPR loss with one uniform negative per row "
                           "(-log sigmoid(pos - neg)), a different loss from BCE-1",
        },
        "results": results,
        "table_markdown": table,
        "total_wall_s": time.time() - start,
    }
    out = args.out
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {out} ({report['total_wall_s']:.0f} s)", file=sys.stderr)


def markdown_table(results: dict, frameworks) -> str:
    rows = ["| loss | framework | median step (ms) | first step / compile (s) | seqs/s | "
            "targets/s | peak RSS (MiB) | step-time ratio theirs/ours (ours = jax) | "
            "targets/s ratio ours/theirs (jax) | step-time ratio theirs/ours (ours = jax_packed) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for loss, by_fw in results.items():
        for fw in frameworks:
            r = by_fw[fw]
            if "n/a" in r:
                rows.append(f"| {loss} | {fw} | n/a: {r['n/a']} | | | | | | | |")
                continue
            if "median_step_s" not in r:
                error = r["error"] if r["error"].startswith("recbole:") else (
                    f"failed: {r['error'].strip().splitlines()[-1][:100]}")
                rows.append(f"| {loss} | {fw} | {error} | | | | | | | |")
                continue
            ratios = []
            for ours_fw, targets_too in (("jax", True), ("jax_packed", False)):
                ours = by_fw.get(ours_fw, {})
                if fw.startswith("jax") and fw == ours_fw:
                    ratios += ["1.00 (ours)"] * (2 if targets_too else 1)
                elif fw.startswith("jax") or "median_step_s" not in ours:
                    ratios += [""] * (2 if targets_too else 1)
                else:
                    ratios.append(f"{r['median_step_s'] / ours['median_step_s']:.2f}")
                    if targets_too:
                        ratios.append(f"{ours['targets_per_s'] / r['targets_per_s']:.2f}")
            rows.append(
                f"| {loss} | {fw} | {r['median_step_s'] * 1e3:.1f} | {r['compile_s']:.2f} | "
                f"{r['seqs_per_s']:.0f} | {r['targets_per_s']:.0f} | {r['peak_rss_mib']:.0f} | "
                f"{' | '.join(ratios)} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="measured steps after warm-up")
    p.add_argument("--warmup", type=int, default=3, help="steps before measuring (first = compile)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the torch.compile runs (slow to compile on a small CPU)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per subprocess")
    p.add_argument("--losses", type=lambda s: s.split(","), default=list(LOSSES),
                   help=f"comma-separated subset of {','.join(LOSSES)}")
    p.add_argument("--frameworks", type=lambda s: s.split(","), default=list(FRAMEWORKS),
                   help=f"comma-separated subset of {','.join(FRAMEWORKS)}")
    p.add_argument("--host-memory", choices=("keep", "default"), default="keep",
                   help="keep: transrec_jax.host_memory.keep_freed_memory() in every subprocess")
    p.add_argument("--torch-threads", type=int, default=2,
                   help="torch.set_num_threads; 1 fares better when other work shares the cores "
                        "(OpenMP threads spin at barriers)")
    p.add_argument("--config-overrides", default="",
                   help="extra configs/sasrec.py words for every loss; the torch mirror reads "
                        "the same config but always runs float32 on the CPU")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "train_step.json"), help="JSON output path")
    p.add_argument("--only", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    p.add_argument("--loss", choices=tuple(LOSSES), help=argparse.SUPPRESS)
    p.add_argument("--batches", help=argparse.SUPPRESS)
    p.add_argument("--num-batches", type=int, help=argparse.SUPPRESS)
    p.add_argument("--recbole-settings", help=argparse.SUPPRESS)
    args = p.parse_args()
    global CONFIG_OVERRIDES
    CONFIG_OVERRIDES = args.config_overrides
    for name, chosen, known in (("losses", args.losses, LOSSES), ("frameworks", args.frameworks,
                                                                     FRAMEWORKS)):
        if set(chosen) - set(known):
            p.error(f"--{name}: unknown {sorted(set(chosen) - set(known))}; known: {list(known)}")
    child(args) if args.only else parent(args)


if __name__ == "__main__":
    main()
