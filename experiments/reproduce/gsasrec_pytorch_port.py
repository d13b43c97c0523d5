"""gSASRec-pytorch's training, ported line by line to JAX: the reference the `gsasrec` row of
ml1m.py is compared against (issue 27).

Ported from github.com/asash/gSASRec-pytorch (HEAD of the stored snapshot): gsasrec.py (item,
position and output tables N(0, 1) as torch.nn.Embedding; embedding dropout; final LayerNorm),
transformer_decoder.py (Q = LN(x), keys/values from the raw x, no output projection, residual
from the normed queries; torch.nn.Linear's uniform init of weights and biases, LayerNorm eps
1e-5), train_gsasrec.py lines 46-75 (inputs positives[:, :-1], labels positives[:, 1:], per-position
uniform negatives over 1..num_items (dataset_utils.py collate_with_random_negatives: a negative
may equal the positive), gBCE as -beta log sigmoid(s+) plus the negatives' BCE, mean over the
1 + K logits, averaged over non-padding inputs; torch.optim.Adam defaults) and dataset_utils.py
(each user's last 201 items, left-padded with num_items + 1). Validation is theirs: 512 users,
NDCG@10 over all items with the rated ones removed. Switches move one piece towards
transrec_jax (--sum_loss, --linear_init, --emb_std).

Run (their pre-split data: datasets/ml1m/{train,val} of gSASRec-pytorch, e.g. exported from a
clone with `git show HEAD:datasets/ml1m/train/input.txt`):
  python experiments/reproduce/gsasrec_pytorch_port.py --data_dir=gSASRec-pytorch/datasets/ml1m \
      --steps=9600 --eval_every=48 --out=/tmp/port.json
"""
import argparse, json, os, time
import numpy as np, jax, jax.numpy as jnp, optax

p = argparse.ArgumentParser()
p.add_argument("--data_dir", required=True)
p.add_argument("--steps", type=int, default=480)
p.add_argument("--eval_every", type=int, default=48)
p.add_argument("--negs", type=int, default=256)
p.add_argument("--t", type=float, default=0.75)
p.add_argument("--linear_init", type=float, default=0.0)  # 0: torch kaiming-uniform + uniform bias
p.add_argument("--emb_std", type=float, default=1.0)
p.add_argument("--sum_loss", action="store_true")  # ours: sum over negatives, no /(K+1)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", default="")
a = p.parse_args()
D, L, NI = 128, 200, 3416
PAD = NI + 1
rng = np.random.default_rng(a.seed)
def read(f): return [list(map(int, l.split())) for l in open(f)]
d = a.data_dir
train = read(os.path.join(d, "train/input.txt")); val_in = read(os.path.join(d, "val/input.txt"))
val_out = [int(l) for l in open(os.path.join(d, "val/output.txt"))]
def pad(s, n):
    s = s[-n:]; return [PAD] * (n - len(s)) + s
train_arr = np.array([pad(s, L + 1) for s in train], np.int32)
val_arr = np.array([pad(s, L) for s in val_in], np.int32)
rated = np.zeros((len(val_in), NI + 2), bool)
for i, s in enumerate(val_in): rated[i, s] = True

key = jax.random.key(a.seed)
def lin(k, din, dout):
    k1, k2 = jax.random.split(k); b = 1 / np.sqrt(din)
    if a.linear_init:
        return dict(w=a.linear_init * jax.random.normal(k1, (din, dout)), b=jnp.zeros(dout))
    return dict(w=jax.random.uniform(k1, (din, dout), minval=-b, maxval=b),
                b=jax.random.uniform(k2, (dout,), minval=-b, maxval=b))
def ln(): return dict(g=jnp.ones(D), b=jnp.zeros(D))
ks = jax.random.split(key, 20)
params = dict(item=a.emb_std * jax.random.normal(ks[0], (NI + 2, D)),
              pos=a.emb_std * jax.random.normal(ks[1], (L, D)),
              out=a.emb_std * jax.random.normal(ks[2], (NI + 2, D)),
              norm=ln(),
              blocks=[dict(n1=ln(), n2=ln(), q=lin(ks[3 + 6 * i], D, D), k=lin(ks[4 + 6 * i], D, D),
                           v=lin(ks[5 + 6 * i], D, D), d1=lin(ks[6 + 6 * i], D, D), d2=lin(ks[7 + 6 * i], D, D))
                      for i in range(2)])
def layernorm(p, x):
    m = x.mean(-1, keepdims=True); v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / jnp.sqrt(v + 1e-5) * p["g"] + p["b"]
def dense(p, x): return x @ p["w"] + p["b"]
def drop(x, k, rate=0.5):
    if k is None: return x
    return jnp.where(jax.random.bernoulli(k, 1 - rate, x.shape), x / (1 - rate), 0.0)

def forward(params, inp, key):
    keys = [None] * 16 if key is None else list(jax.random.split(key, 16))
    mask = (inp != PAD).astype(jnp.float32)[..., None]
    seq = params["item"][inp] + params["pos"][None, : inp.shape[1]]
    seq = drop(seq, keys[0]) * mask
    Lq = inp.shape[1]
    causal = jnp.tril(jnp.ones((Lq, Lq), bool))
    for i, bp in enumerate(params["blocks"]):
        x = layernorm(bp["n1"], seq)
        Q, K, V = dense(bp["q"], x), dense(bp["k"], seq), dense(bp["v"], seq)
        o = Q @ K.transpose(0, 2, 1) / np.sqrt(D)
        kmask = jnp.sign(jnp.abs(seq).sum(-1))[:, None, :]
        o = jnp.where(kmask == 0, -jnp.inf, o)
        o = jnp.where(causal[None], o, -jnp.inf)
        o = jax.nn.softmax(o, -1)
        o = jnp.nan_to_num(o, nan=0.0, posinf=0.0, neginf=0.0)
        qmask = jnp.sign(jnp.abs(x).sum(-1))[:, :, None]
        o = o * qmask
        o = drop(o, keys[1 + 3 * i])
        o = o @ V
        x = o + x
        x = layernorm(bp["n2"], x)
        r = x
        x = jax.nn.relu(dense(bp["d1"], x)); x = drop(x, keys[2 + 3 * i])
        x = dense(bp["d2"], x); x = drop(x, keys[3 + 3 * i])
        x = (x + r) * mask
        seq = x
    return layernorm(params["norm"], seq)

alpha = a.negs / (NI - 1); beta = alpha * ((1 - 1 / alpha) * a.t + 1 / alpha)
def loss_fn(params, batch, key):
    k1, k2 = jax.random.split(key)
    inp, labels = batch[:, :-1], batch[:, 1:]
    h = forward(params, inp, k1)
    negs = jax.random.randint(k2, labels.shape + (a.negs,), 1, PAD)
    allsc = jnp.einsum("bsd,nd->bsn", h, params["out"])
    pos = jnp.take_along_axis(allsc, labels[..., None], -1)
    neg = jnp.take_along_axis(allsc, negs, -1)
    mask = (inp != PAD).astype(jnp.float32)
    per = beta * jax.nn.softplus(-pos[..., 0]) + jax.nn.softplus(neg).sum(-1)
    if not a.sum_loss: per = per / (1 + a.negs)
    return (per * mask).sum() / mask.sum()
opt = optax.adam(1e-3)
state = opt.init(params)
@jax.jit
def step(params, state, batch, key):
    l, g = jax.value_and_grad(loss_fn)(params, batch, key)
    u, state = opt.update(g, state, params)
    return optax.apply_updates(params, u), state, l
@jax.jit
def scores(params, inp):
    h = forward(params, inp, None)[:, -1]
    s = h @ params["out"].T
    return s
def evaluate(params):
    out = []
    for i in range(0, len(val_arr), 256):
        s = np.array(scores(params, jnp.array(val_arr[i:i + 256])))
        s[:, 0] = -np.inf; s[:, NI + 1:] = -np.inf; s[rated[i:i + 256]] = -np.inf
        out.append(s)
    s = np.concatenate(out); tgt = np.array(val_out)
    ts = s[np.arange(len(s)), tgt]
    rank = (s > ts[:, None]).sum(1)  # 0-based
    return float(np.where(rank < 10, 1 / np.log2(rank + 2), 0).mean())
hist = []
order = np.array([], np.int64); skey = jax.random.key(a.seed + 100)
t0 = time.time(); losses = []
for it in range(1, a.steps + 1):
    if len(order) == 0: order = rng.permutation(len(train_arr))
    idx, order = order[:128], order[128:]
    params, state, l = step(params, state, jnp.array(train_arr[idx]), jax.random.fold_in(skey, it))
    losses.append(float(l))
    if it % a.eval_every == 0:
        n = evaluate(params)
        hist.append(dict(step=it, ndcg10=round(n, 4), loss=round(float(np.mean(losses)), 4)))
        losses = []
        print(json.dumps(hist[-1]), f"{time.time() - t0:.0f}s", flush=True)
if a.out: json.dump(dict(args=vars(a), history=hist), open(a.out, "w"))
