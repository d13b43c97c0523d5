"""The synthetic generator: deterministic, sized by config, and its planted order matters.

Count-based baselines (numpy, computed here) show the structure: a first-order Markov
model (next item from the last one) beats both item popularity and an unordered
bag-of-items co-occurrence model on the leave-one-out test targets.
"""

import numpy as np
import pytest

from transrec_jax import config as config_lib
from transrec_jax.data import preprocess, splits, synthetic


def _cfg(**synth):
    c = config_lib.base_config()
    c.dataset.synthetic.update(synth)
    return c


def test_deterministic_from_seed():
    c = _cfg(num_users=300, num_items=80)
    a, b = synthetic.generate(c.dataset.synthetic, 3), synthetic.generate(c.dataset.synthetic, 3)
    other = synthetic.generate(c.dataset.synthetic, 4)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.users, b.users)
    assert not np.array_equal(a.items[:500], other.items[:500])


def test_sizes_follow_config():
    c = _cfg(num_users=500, num_items=100, min_len=5, max_len=9)
    raw = synthetic.generate(c.dataset.synthetic, 0)
    lengths = np.bincount(raw.users)[1:]
    assert len(lengths) == 500 and lengths.min() >= 5 and lengths.max() <= 9
    assert raw.items.min() >= 1 and raw.items.max() <= 100


def test_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="num_topics"):
        synthetic.generate(_cfg(num_topics=0).dataset.synthetic, 0)


def _hr_at_10(scores, targets):
    rank = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(1)
    return float((rank < 10).mean())


def test_sequence_order_beats_popularity_and_bag_of_items():
    c = _cfg(num_users=1500, num_items=300)
    ds = preprocess.preprocess(synthetic.generate(c.dataset.synthetic, 0), c.dataset)
    split = splits.leave_one_out(ds)
    v = ds.num_items + 1
    pop = np.zeros(v)
    trans = np.zeros((v, v))
    cooc = np.zeros((v, v))
    hist_last, hist_bags, targets = [], [], []
    for u in range(ds.num_users):
        s = ds.sequence(u)
        train = s[: split.train_end[u]]
        np.add.at(pop, train, 1)
        np.add.at(trans, (train[:-1], train[1:]), 1)
        bag = np.bincount(train, minlength=v) > 0
        cooc[np.ix_(bag, bag)] += 1
        hist_last.append(s[split.test_pos[u] - 1])
        hist_bags.append(np.bincount(s[: split.test_pos[u]], minlength=v))
        targets.append(s[split.test_pos[u]])
    targets = np.array(targets)
    pop[0] = -1
    np.fill_diagonal(cooc, 0)
    hr_pop = _hr_at_10(np.tile(pop, (len(targets), 1)), targets)
    hr_markov = _hr_at_10(trans[np.array(hist_last)] + 1e-6 * pop, targets)
    hr_bag = _hr_at_10(np.stack(hist_bags) @ cooc + 1e-6 * pop, targets)
    assert hr_markov > hr_pop + 0.1
    assert hr_markov > hr_bag + 0.1
