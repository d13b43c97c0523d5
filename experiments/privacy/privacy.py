r"""User-level differential privacy: what each ε costs in accuracy, and what it buys (issue 30).

Arms, every (dataset, ε) with each seed: SASRec (configs/sasrec.py:<dataset>, rows unpacked;
--model=content adds the catalogue's public item content through the item tower, MODELS below)
trained by user-level DP-SGD (transrec_jax/privacy/) to a target ε in --epsilons at δ = 1 / the
training users, and `inf`: the same model trained as usual (no clipping, no noise: the
non-private reference); with --fed_epsilons, the same model trained by simulated federated
averaging (privacy/federated.py: --local_steps SGD steps of each client a round), `inf` plain
FedAvg, otherwise DP-FedAvg to that ε. Every run holds the same seeded 10% of the users out of
training, validation and test (dataset.holdout_users), the non-members of the membership attack
(privacy/membership.py) run on each trained model: the loss-threshold attack's AUC, members
(training users) against them. The popularity baseline comes with every run.
Budget: --epochs epochs (an epoch = users / users_per_step steps or rounds under DP and FedAvg,
users / batch size otherwise) of each user's last --max_len items: the defaults, 10 and 50, keep
the 18 DP-SGD runs on ML-1M within a few hours of a 2-core CPU (the ML-1M preset reads 200 items
and trains 20 epochs: pass --max_len=200 --epochs=20 on a GPU). Validation every epoch, early
stop after 5 validations without an NDCG@10 gain, test on the best checkpoint; the noise is
calibrated for the planned steps and results.json reports the ε of the steps run. DP knobs:
--users_per_step, --clip_norm (privacy.*) and --learning_rate (train.*, the ∞ arm keeps the
preset's); --overrides sets any config key in every arm (the pilots': d_model, the item tower).

Runs go to --workdir_root (default runs/privacy; resumable: finished runs are skipped); the records go to
<out_dir>/results.json, and the table (README.md) and plot (privacy.png) are generated from it.

  python experiments/privacy/privacy.py --datasets=ml-1m --seeds=0,1,2
  python experiments/privacy/privacy.py --datasets=ml-1m --seeds=0 --epsilons= --fed_epsilons=8,inf
  python experiments/privacy/privacy.py --datasets=ml-1m --seeds=0,1,2 --model=content
  python experiments/privacy/privacy.py --markdown_only
  # a smoke run on the synthetic data, outside the repository:
  python experiments/privacy/privacy.py --datasets=synthetic --epsilons=4,inf --seeds=0 \
      --fed_epsilons=4,inf --epochs=2 --workdir_root=/tmp/privacy_smoke/runs --out_dir=/tmp/privacy_smoke
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import statistics

from transrec_jax.studies import runner
from transrec_jax.studies.study import Run

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results.json")  # (--out_dir moves it, the README and the plot)
CONFIG = "configs/sasrec.py:{dataset}"
# The model of every arm (--model), as config words. `ids`: the preset's SASRec (an
# id row per item); `content`: the same, its item vectors adding the item's public content to
# the id row (config word item_features: on ML-1M the genres and release year of movies.dat,
# metadata of the catalogue, not of any user). The content tables are shared by every user's
# gradient, so what they learn can survive the noise that drowns a single item's id row.
MODELS = {"ids": "", "content": ",item_features"}
HOLDOUT_USERS = 0.1
CLIP_ONLY_NOISE = 1e-6  # the `clip` arm: DP-SGD's clipping without its noise (not private)


def make_run(dataset: str, mode: str, epsilon: str, seed: int, args, model: str = "ids") -> Run:
    """mode 'dp_sgd' (epsilon 'inf': ordinary training; 'clip': a diagnostic, each user clipped
    and next to no noise, CLIP_ONLY_NOISE) or 'fedavg' ('inf': plain FedAvg, otherwise
    DP-FedAvg at that ε)."""
    overrides = {"train.pack_rows": False, "train.num_epochs": args.epochs, "seed": seed,
                 "model.max_len": args.max_len, "dataset.holdout_users": HOLDOUT_USERS}
    private = {"privacy.users_per_step": args.users_per_step, "privacy.clip_norm": args.clip_norm}
    if args.learning_rate:
        private["train.learning_rate"] = args.learning_rate
    if mode == "fedavg":
        overrides.update({**private, "privacy.mode": "fedavg" if epsilon == "inf" else "dp_fedavg",
                          "privacy.local_steps": args.local_steps,
                          "privacy.client_learning_rate": args.client_learning_rate})
    elif epsilon != "inf":
        overrides.update({**private, "privacy.mode": "dp_sgd"})
    overrides.update(parse_overrides(args.overrides))
    if epsilon == "clip":
        overrides["privacy.noise_multiplier"] = CLIP_ONLY_NOISE
    elif epsilon != "inf":
        overrides["privacy.epsilon"] = float(epsilon)
    name = f"epsilon={epsilon},seed={seed}" if mode == "dp_sgd" else f"fedavg,epsilon={epsilon},seed={seed}"
    arm = name.rsplit(",", 1)[0]
    point = {"mode": mode, "epsilon": epsilon} | ({"model": model} if model != "ids" else {})
    workdir = os.path.join(args.workdir_root, dataset, *([model] if model != "ids" else []), name)
    return Run(name, point, arm, seed, CONFIG.format(dataset=dataset) + MODELS[model], overrides, workdir)


def parse_overrides(text: str) -> dict:
    """--overrides "model.d_model=16,model.d_ff=16" → {key: value}, for every arm (pilots)."""
    pairs = [item.partition("=") for item in text.split(",") if item]
    bad = [key for key, eq, _ in pairs if not eq or "." not in key]
    if bad:
        raise SystemExit(f"--overrides: expected comma-separated section.key=value items, got {bad[0]!r}")
    return {key: literal(value) for key, _, value in pairs}


def literal(text: str):
    """A number or a bool as such ("16" → 16), anything else as the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def train_arm(dataset: str, mode: str, epsilon: str, seed: int, args, model: str = "ids") -> dict:
    from transrec_jax.privacy import membership  # (JAX, only once a run is to be read)

    run = make_run(dataset, mode, epsilon, seed, args, model)
    rec = runner.finished(run)
    full = runner.results(run)
    return {"dataset": dataset, "model": model, "mode": mode, "epsilon": epsilon, "seed": seed,
            "config_args": run.config_args(), "val_curve": validation_curve(run.workdir),
            "test": rec["test"], "val": rec["val"]["ndcg@10"], "test_popularity": full["test_popularity"],
            "privacy": full.get("privacy"), "membership": membership.attack(run.workdir),
            "split": full["dataset"]["split"], "cost_s": rec["wall_time_s"],
            "best_epoch": rec["best_epoch"], "epochs": rec["epochs"], "hardware": rec["hardware"]}


def validation_curve(workdir: str) -> list[list[float]]:
    """[step (a round under FedAvg), validation NDCG@10] of each validation the run made."""
    from transrec_jax.metric_log import read_metrics

    return [[row["step"], row["ndcg@10"]] for row in read_metrics(workdir) if row["kind"] == "val"]


# --- tables ------------------------------------------------------------------------------

def mode(record: dict) -> str:
    return record.get("mode", "dp_sgd")


def model(record: dict) -> str:
    return record.get("model", "ids")


def order(epsilon: str) -> float:
    return {"clip": 1e300, "inf": math.inf}.get(epsilon) or float(epsilon)


def label(epsilon: str) -> str:
    return {"inf": "∞ (not private)", "clip": f"clipping only (σ = {CLIP_ONLY_NOISE:g})"}.get(epsilon, epsilon)


MODEL_LABELS = {"ids": "SASRec on item ids",
                "content": "SASRec on item ids + public item content (item tower)"}
PROTOCOL_KEYS = ("model.max_len", "model.d_model", "model.d_ff", "model.num_layers", "model.item_tower",
                 "train.num_epochs", "privacy.users_per_step", "privacy.clip_norm",
                 "train.learning_rate", "privacy.local_steps", "privacy.client_learning_rate")


def protocol(records: list[dict]) -> str:
    """The config and the study knobs the runs set (each with every value it took)."""
    seen: dict[str, list[str]] = {}
    for r in records:
        for arg in r["config_args"]:
            key, _, value = arg.removeprefix("--config.").partition("=")
            if key in ("--config", *PROTOCOL_KEYS) and value not in seen.setdefault(key, []):
                seen[key].append(value)
    if "train.learning_rate" not in seen:
        seen["train.learning_rate"] = ["the preset's"]
    return ", ".join(f"`{key.removeprefix('--')}` {' / '.join(seen[key])}"
                     for key in ("--config", *PROTOCOL_KEYS) if key in seen)


def mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    if not all(math.isfinite(v) for v in values):  # e.g. the ε "spent" by the noiseless arm: inf
        return " / ".join(dict.fromkeys(f"{v:.{digits}f}" for v in values))
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def groups(records: list[dict], dataset: str, of_mode: str = "dp_sgd",
           of_model: str = "ids") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: (order(r["epsilon"]), r["seed"])):
        if r["dataset"] == dataset and mode(r) == of_mode and model(r) == of_model:
            out.setdefault(r["epsilon"], []).append(r)
    return out


def models(records: list[dict]) -> list[str]:
    return [m for m in MODELS if any(model(r) == m for r in records)]


def dp_sgd_table(by_epsilon: dict[str, list[dict]]) -> list[str]:
    lines = ["| target ε | ε spent | σ | seeds | NDCG@10 | HR@10 | popularity NDCG@10 | attack AUC | epochs run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for epsilon, rows in by_epsilon.items():
        private = [r["privacy"] for r in rows if r["privacy"]]
        lines.append(
            f"| {label(epsilon)} | "
            f"{mean_std([p['epsilon'] for p in private], 2) if private else '∞'} | "
            f"{mean_std([p['noise_multiplier'] for p in private], 3) if private else '0'} | "
            f"{','.join(str(r['seed']) for r in rows)} | "
            f"{mean_std([r['test']['ndcg@10'] for r in rows])} | "
            f"{mean_std([r['test']['hr@10'] for r in rows])} | "
            f"{mean_std([r['test_popularity']['ndcg@10'] for r in rows])} | "
            f"{mean_std([r['membership']['auc'] for r in rows], 3)} | "
            f"{mean_std([r['epochs'] for r in rows], 1)} |")
    return lines


def fedavg_table(by_epsilon: dict[str, list[dict]]) -> list[str]:
    lines = ["| target ε | ε spent | σ | seeds | rounds | upload (MB / client / round) | NDCG@10 | "
             "HR@10 | popularity NDCG@10 | attack AUC | wall time (min) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for epsilon, rows in by_epsilon.items():
        p = [r["privacy"] for r in rows]
        lines.append(
            f"| {'∞ (FedAvg)' if epsilon == 'inf' else epsilon} | "
            f"{mean_std([x['epsilon'] for x in p], 2) if epsilon != 'inf' else '∞'} | "
            f"{mean_std([x['noise_multiplier'] for x in p], 3) if epsilon != 'inf' else '0'} | "
            f"{','.join(str(r['seed']) for r in rows)} | "
            f"{mean_std([x['rounds'] for x in p], 0)} | "
            f"{mean_std([x['upload_bytes_per_client_round'] / 1e6 for x in p], 2)} | "
            f"{mean_std([r['test']['ndcg@10'] for r in rows])} | "
            f"{mean_std([r['test']['hr@10'] for r in rows])} | "
            f"{mean_std([r['test_popularity']['ndcg@10'] for r in rows])} | "
            f"{mean_std([r['membership']['auc'] for r in rows], 3)} | "
            f"{mean_std([r['cost_s'] / 60 for r in rows], 1)} |")
    return lines


def markdown(records: list[dict], out_dir: str = HERE) -> str:
    lines = ["<!-- generated by experiments/privacy/privacy.py from results.json; edit findings.md -->",
             "# User-level differential privacy", "",
             f"Arms, models, budget and attack: [privacy.py]({os.path.relpath(__file__, out_dir)}). Test figures, mean ± sample std over "
             "the seeds. `ε spent`: after the steps the run took (early stopping spends less than "
             "planned), at δ = 1 / training users; `σ`: the noise multiplier the target ε needed. "
             "`attack AUC`: the loss-threshold membership attack, training users against the "
             "held-out ones (0.5: it cannot tell them apart).", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        lines += [f"## {dataset}", ""]
        for m in models(records):
            mine = [r for r in records if r["dataset"] == dataset and model(r) == m]
            if not mine:
                continue
            lines += [f"### {MODEL_LABELS[m]}", "",
                      f"Protocol, from the runs' configs: {protocol(mine)}.", ""]
            dp_sgd = groups(records, dataset, "dp_sgd", m)
            if dp_sgd:
                lines += ["DP-SGD (∞: the same model trained as usual).", "", *dp_sgd_table(dp_sgd), ""]
            federated = groups(records, dataset, "fedavg", m)
            if federated:
                lines += ["Federated averaging (∞: FedAvg, not private; otherwise DP-FedAvg at that ε). "
                          "`rounds`: the rounds run; `upload`: what one client sends a round (its "
                          "update, float32); validation NDCG@10 against rounds in the plot's right panel.", "",
                          *fedavg_table(federated), ""]
    if not records:
        return "\n".join(lines + [
            "Not run yet: `python experiments/privacy/privacy.py --datasets=ml-1m --seeds=0,1,2` "
            "(each ε a full training run; a GPU or a long CPU session).", ""])
    if os.path.exists(os.path.join(out_dir, "privacy.png")):
        lines += ["![test NDCG@10 and attack AUC against ε](privacy.png)", ""]
    cpus = sorted({r["hardware"].get("cpu", "?") for r in records})
    cost = statistics.mean(r["cost_s"] for r in records) / 60
    lines += [f"Machines: {'; '.join(cpus)}. Mean wall time per run: {cost:.1f} min.", ""]
    findings = os.path.join(out_dir, "findings.md")
    if os.path.exists(findings):
        with open(findings) as f:
            lines += [f.read().strip(), ""]
    return "\n".join(lines)


def plot(records: list[dict], out_dir: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    epsilons = sorted({r["epsilon"] for r in records if mode(r) == "dp_sgd" and r["epsilon"] != "clip"},
                      key=order)
    right = 2 * max((float(e) for e in epsilons if e != "inf"), default=1.0)  # where ∞ is drawn
    x = {e: right if e == "inf" else float(e) for e in epsilons}
    lines = [(dataset, m) for dataset in dict.fromkeys(r["dataset"] for r in records) for m in models(records)]
    for c, (dataset, m) in enumerate(lines):
        by = {e: rows for e, rows in groups(records, dataset, "dp_sgd", m).items() if e in x}
        for ax, value in ((axes[0], lambda r: r["test"]["ndcg@10"]),
                          (axes[1], lambda r: r["membership"]["auc"])):
            ys = [statistics.mean(value(r) for r in rows) for rows in by.values()]
            if ys:
                ax.plot([x[e] for e in by], ys, marker="o", color=f"C{c}",
                        label=f"{dataset}: DP-SGD, {MODEL_LABELS[m]}")
        for f, (epsilon, rows) in enumerate(groups(records, dataset, "fedavg", m).items()):
            name = f"{dataset}, {m}: " + ("FedAvg" if epsilon == "inf" else f"DP-FedAvg ε={epsilon}")
            for k, r in enumerate(rows):
                steps, ndcg = zip(*r["val_curve"]) if r["val_curve"] else ((), ())
                axes[2].plot(steps, ndcg, color=f"C{len(lines) + 2 * c + f}", alpha=0.8, marker=".",
                             linestyle="-" if epsilon == "inf" else "--", label=name if k == 0 else None)
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        popularity = statistics.mean(r["test_popularity"]["ndcg@10"]
                                     for r in records if r["dataset"] == dataset)
        for ax in (axes[0], axes[2]):
            ax.axhline(popularity, color="grey", linestyle=":", label=f"{dataset}: popularity (test)")
    for ax, name in ((axes[0], "test NDCG@10"), (axes[1], "membership attack AUC")):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(list(x.values()), ["∞" if e == "inf" else e for e in x])
        ax.set_xlabel("DP-SGD target ε (∞: not private)")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    axes[1].axhline(0.5, color="grey", linestyle=":")
    axes[2].set_xlabel("federated rounds")
    axes[2].set_ylabel("validation NDCG@10")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "privacy.png"), dpi=110)
    plt.close(fig)


def load_records(out_dir: str = HERE) -> list[dict]:
    return runner.read_records(os.path.join(out_dir, "results.json"))


def write(records: list[dict], out_dir: str) -> None:
    records = sorted(records, key=lambda r: (r["dataset"], list(MODELS).index(model(r)), mode(r),
                                             order(r["epsilon"]), r["seed"]))
    os.makedirs(out_dir, exist_ok=True)
    runner.write_records(os.path.join(out_dir, "results.json"), records)
    if records:
        plot(records, out_dir)
    runner.write_atomic(os.path.join(out_dir, "README.md"), markdown(records, out_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-1m")
    parser.add_argument("--epsilons", default="1,2,4,8,16,inf",
                        help="DP-SGD arms (inf: not private; clip: clipping without noise, a diagnostic)")
    parser.add_argument("--fed_epsilons", default="",
                        help="federated arms, e.g. 8,inf (inf: FedAvg; else DP-FedAvg at that ε)")
    parser.add_argument("--local_steps", type=int, default=2, help="a client's SGD steps a round")
    parser.add_argument("--client_learning_rate", type=float, default=0.1)
    parser.add_argument("--model", default="ids", choices=list(MODELS),
                        help="ids: the preset SASRec; content: a smaller one that adds public item content")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--users_per_step", type=int, default=256)
    parser.add_argument("--clip_norm", type=float, default=1.0)
    parser.add_argument("--learning_rate", type=float, default=0.0,
                        help="of the private and federated arms (their server's); 0: the preset's")
    parser.add_argument("--overrides", default="",
                        help="config overrides for every arm, e.g. model.d_model=16,model.d_ff=16")
    parser.add_argument("--workdir_root", default=os.path.join(REPO, "runs", "privacy"))
    parser.add_argument("--out_dir", default=HERE)
    parser.add_argument("--markdown_only", action="store_true")
    args = parser.parse_args()
    if args.markdown_only:
        write(load_records(args.out_dir), args.out_dir)
        return
    arms = [("dp_sgd", e) for e in args.epsilons.split(",") if e] + \
        [("fedavg", e) for e in args.fed_epsilons.split(",") if e]
    for dataset in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for arm_mode, epsilon in arms:
                rec = train_arm(dataset, arm_mode, epsilon, seed, args, args.model)
                key = (dataset, args.model, arm_mode, epsilon, seed)
                records = [r for r in load_records(args.out_dir)
                           if (r["dataset"], model(r), mode(r), r["epsilon"], r["seed"]) != key] + [rec]
                write(records, args.out_dir)
                print(f"{key}: test ndcg@10 {rec['test']['ndcg@10']:.4f}, attack auc "
                      f"{rec['membership']['auc']:.3f}, {rec['cost_s'] / 60:.1f} min", flush=True)

if __name__ == "__main__":
    main()
