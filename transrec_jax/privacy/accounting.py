"""(ε, δ) of user-level DP-SGD, from dp_accounting; and the plan a private run trains by.

One step releases the sum of the sampled users' gradients, each clipped to L2 norm C, plus
N(0, (σC)²) noise: a subsampled Gaussian mechanism, composed over the steps. The accountant
must assume the sampling the batcher does (privacy/batching.py):

- poisson: each training user joins a step with probability q = users_per_step / users, and a
  step that drew more users than its batch holds (`capacity` slots, static shapes) keeps a
  uniform subset of them. dp_accounting's TruncatedSubsampledGaussianDpEvent is exactly this
  mechanism (Poisson sampling truncated to a maximum batch size), accounted by the PLD
  accountant for add/remove-one neighbours: one user more or less moves the sum by at most C.
- fixed: exactly users_per_step users drawn without replacement. dp_accounting accounts this
  sampling only with the RDP accountant and only for replace-one neighbours (the number of
  users is public), under which one replaced user moves the sum by up to 2C: the mechanism's
  noise multiplier is σ / 2.

The PLD accountant discretizes the privacy loss pessimistically (DISCRETIZATION), so a coarser
interval only overstates ε; it is coarse enough to calibrate the noise in seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import dp_accounting
from absl import logging
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant

from transrec_jax.config import ConfigError

DISCRETIZATION = 1e-3  # the PLD accountant's value_discretization_interval
# Poisson batches hold the expected users plus this many standard deviations of their count:
# a step rarely draws more (the accountant counts the truncation either way).
CAPACITY_STDS = 4.0
# Below this noise multiplier the PLD accountant's grid of privacy losses grows as 1 / σ² past
# any memory (σ = 1e-6: petabytes), and ε is in the thousands anyway: reported as inf, the bound
# that is always true. (A run with clipping and next to no noise is a diagnostic, not private.)
MIN_ACCOUNTED_NOISE = 0.1


def step_event(noise_multiplier: float, q: float, *, population: int, capacity: int,
               sampling: str = "poisson") -> dp_accounting.DpEvent:
    """One step's DpEvent: q · population users expected (fixed: exactly), at most `capacity`."""
    if sampling == "fixed":
        return dp_accounting.SampledWithoutReplacementDpEvent(
            population, round(q * population), dp_accounting.GaussianDpEvent(noise_multiplier / 2))
    return dp_accounting.TruncatedSubsampledGaussianDpEvent(population, q, capacity, noise_multiplier)


def accountant(sampling: str = "poisson") -> dp_accounting.PrivacyAccountant:
    if sampling == "fixed":
        return RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    return PLDAccountant(dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
                         value_discretization_interval=DISCRETIZATION)


def epsilon(noise_multiplier: float, q: float, steps: int, delta: float, *, population: int,
            capacity: int, sampling: str = "poisson") -> float:
    """ε after `steps` steps at δ = `delta` (inf without noise, 0 before the first step)."""
    if steps == 0:
        return 0.0
    if noise_multiplier == 0 or (sampling == "poisson" and noise_multiplier < MIN_ACCOUNTED_NOISE):
        return math.inf
    event = step_event(noise_multiplier, q, population=population, capacity=capacity, sampling=sampling)
    return float(accountant(sampling).compose(event, steps).get_epsilon(delta))


def noise_for_epsilon(target: float, q: float, steps: int, delta: float, *, population: int,
                      capacity: int, sampling: str = "poisson", tol: float = 1e-3) -> float:
    """The smallest noise multiplier σ (within `tol`) whose ε after `steps` steps is <= target.

    The search brackets σ near the RDP accountant's answer for untruncated Poisson sampling,
    which is quick (fixed sampling needs about twice that σ, as its mechanism sees σ / 2): the
    accountants' cost grows as σ falls, and an open search would try tiny σ first.
    """
    common = dict(population=population, capacity=capacity, sampling=sampling)
    with _rdp_order_warnings_off():
        rough = dp_accounting.calibrate_dp_mechanism(
            RdpAccountant, lambda sigma: dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps),
            target, delta, bracket_interval=dp_accounting.LowerEndpointAndGuess(0.1, 1.0),
            tol=max(tol, 0.05))
    low, high = (rough, 2.5 * rough) if sampling == "fixed" else (rough / 2, 1.25 * rough)
    while epsilon(high, q, steps, delta, **common) > target:
        low, high = high, 2 * high
    return dp_accounting.calibrate_dp_mechanism(
        lambda: accountant(sampling),
        lambda sigma: dp_accounting.SelfComposedDpEvent(step_event(sigma, q, **common), steps),
        target, delta, bracket_interval=dp_accounting.ExplicitBracketInterval(low, high), tol=tol)


@contextlib.contextmanager
def _rdp_order_warnings_off():
    """The rough RDP search logs a warning for every low order whose series does not converge
    (that order is then left out, which only loosens the bound): dozens of lines a run."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a private run trains by, fixed before its first step."""

    sampling: str
    population: int  # users who train (each a privacy unit)
    users_per_step: int  # expected users a step: the average's denominator
    capacity: int  # user slots of a batch (poisson: the truncation)
    steps: int  # planned steps, which the noise was calibrated for
    noise_multiplier: float
    clip_norm: float
    delta: float
    target_epsilon: float | None  # None: the noise was given (privacy.noise_multiplier)

    @property
    def q(self) -> float:
        return self.users_per_step / self.population

    def epsilon(self, steps: int) -> float:
        """ε spent after `steps` steps (early stopping spends less than planned)."""
        return epsilon(self.noise_multiplier, self.q, steps, self.delta, population=self.population,
                       capacity=self.capacity, sampling=self.sampling)

    def report(self, steps: int) -> dict:
        """The plan and the ε spent after `steps` steps, for results.json (no ε without noise)."""
        sampling = {"sampling": self.sampling, "population": self.population,
                    "users_per_step": self.users_per_step, "capacity": self.capacity,
                    "sampling_probability": self.q, "steps": steps, "planned_steps": self.steps}
        if not self.noise_multiplier:
            return {"private": False, **sampling}
        return {"private": True, "epsilon": self.epsilon(steps), "delta": self.delta,
                "target_epsilon": self.target_epsilon, "noise_multiplier": self.noise_multiplier,
                "clip_norm": self.clip_norm, "accountant": "rdp" if self.sampling == "fixed" else "pld",
                **sampling}


def make_plan(privacy_cfg, population: int, steps: int, row_multiple: int = 1,
              private: bool = True) -> Plan:
    """The run's Plan: its δ (0: 1 / population), batch capacity (a multiple of `row_multiple`,
    the devices of the mesh's data axis) and noise (given, or the least that meets ε); not
    `private`: no clipping, no noise."""
    p = privacy_cfg
    if p.users_per_step >= population:
        raise ConfigError(f"config.privacy.users_per_step={p.users_per_step}: expected fewer than the "
                          f"{population} training users (sampling is what makes a step private)")
    delta = p.delta or 1.0 / population
    if p.sampling == "fixed":
        capacity = p.users_per_step
    else:
        capacity = math.ceil(p.users_per_step + CAPACITY_STDS * math.sqrt(p.users_per_step))
    capacity = min(-(-capacity // row_multiple) * row_multiple, population)
    if not private:
        return Plan(p.sampling, population, p.users_per_step, capacity, steps, 0.0, math.inf,
                    float(delta), None)
    common = dict(population=population, capacity=capacity, sampling=p.sampling)
    sigma = p.noise_multiplier or noise_for_epsilon(p.epsilon, p.users_per_step / population,
                                                    steps, delta, **common)
    return Plan(p.sampling, population, p.users_per_step, capacity, steps, float(sigma),
                float(p.clip_norm), float(delta), None if p.noise_multiplier else float(p.epsilon))
