"""Orbax checkpoints of the train state plus the JSON the loop needs to resume exactly.

Two managers live in the workdir: `checkpoints/` keeps the last `keep` periodic saves (the
resume point after preemption) and `best/` keeps the single best state by the validation
metric (what the test evaluation and `recommend` use). Each save holds the train state
(params, optimizer state, step) and a JSON `meta` (data-iterator state, early-stopping
state). Orbax writes into a temporary directory and renames it when complete, so a crash
never leaves a checkpoint that restores half-written.

Damage after the fact (a truncated, deleted or bit-flipped file) is caught on restore:
`meta` carries a fingerprint of every array of the state (a position-weighted sum of its
bits, which changes under any single flipped bit) and a hash of its own JSON. `restore`
tries steps newest first, says in one line which step it skipped and why, and falls back to
the next older one; with `set_aside=True` (the training loop, which owns the workdir) a
damaged step directory is moved to `<workdir>/damaged_checkpoints/` so that the managers'
step bookkeeping (later saves of the same step number, `max_to_keep`) works on.

With several processes every process makes every call (Orbax saves, restores and deletes
collectively and writes from process 0). What this module does to files itself (moving a
damaged step aside) is done by process 0 between barriers, and whether a step restores is
decided by all: a step that fails on any process is skipped on every process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from transrec_jax import cluster

_INTEGRITY = "integrity"  # the key of `meta` that holds the fingerprints


def _bits(x: jax.Array) -> jax.Array:
    """The raw bits of `x` as a flat uint32 vector (any dtype, key arrays included)."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32).ravel()
    size = x.dtype.itemsize
    if size == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()
    if size < 4:
        return jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16}[size]).astype(jnp.uint32).ravel()
    return jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()  # 8 bytes → trailing axis of 2


@jax.jit
def _inspect(state):
    """(all leaves finite, one uint32 fingerprint per leaf), computed on device."""
    finite, prints = jnp.array(True), []
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            finite &= jnp.all(jnp.isfinite(leaf))
        bits = _bits(leaf)
        # Odd weights: a flipped bit changes the sum by an odd multiple of a power of two < 2^32.
        weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(0x9E3779B1) | jnp.uint32(1)
        prints.append(jnp.sum(bits * weights, dtype=jnp.uint32))
    return finite, jnp.stack(prints) if prints else jnp.zeros((0,), jnp.uint32)


def inspect(state) -> tuple[bool, list[int]]:
    """(is every float of `state` finite, per-leaf fingerprint): one jitted pass, one transfer."""
    finite, prints = jax.device_get(_inspect(state))
    return bool(finite), [int(p) for p in np.asarray(prints)]


def _meta_hash(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0] if text else ''}"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _silence_failed_restore_leftovers() -> None:
    """After a failed restore, the array reads still in flight end as unraisable exceptions, each
    printed with its traceback (dozens per failure): TensorStore completes them into the asyncio
    loop Orbax has already closed ("Event loop is closed"), and the abandoned Orbax coroutines
    raise when garbage-collected (or warn that they were never awaited). Installed once, by the
    first restore (the leftovers can start before the failure reaches us); every other
    unraisable exception passes on to the previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_failed_restore_leftovers", False):
        return

    def hook(unraisable):
        error, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
            return
        previous(unraisable)

    hook._drops_failed_restore_leftovers = True
    sys.unraisablehook = hook
    warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning, r"orbax\.")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Checkpoints:
    def __init__(self, workdir: str, keep: int, *, log: Callable[[str], None] = _stderr):
        self.workdir = os.path.abspath(workdir)
        self.log = log
        self.skipped: list[tuple[str, int, str]] = []  # (manager, step, reason) of the last restore

        def manager(name, max_to_keep):
            return ocp.CheckpointManager(
                os.path.join(self.workdir, name),
                options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            )

        self.periodic = manager("checkpoints", keep)
        self.best = manager("best", 1)

    def _name(self, mngr) -> str:
        return "best" if mngr is self.best else "checkpoints"

    def save(self, step: int, state, meta: dict, *, best: bool = False, fingerprint=None) -> None:
        """Asynchronous save; `wait()` before reading it back or exiting.

        `fingerprint`: `inspect(state)[1]` when the caller has it already. A periodic save
        starts after any best save has committed, so a periodic checkpoint never exists
        without the best checkpoint of the progress it records.
        """
        if fingerprint is None:
            fingerprint = inspect(state)[1]
        meta = {**meta, _INTEGRITY: {"fingerprint": fingerprint, "meta_sha256": _meta_hash(meta)}}
        mngr = self.best if best else self.periodic
        if not best:
            self.best.wait_until_finished()
        mngr.wait_until_finished()
        if step in mngr.all_steps():  # left by a run that went past `step` and was undone
            mngr.delete(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        if not mngr.save(step, args=args, force=True):
            raise RuntimeError(f"{self._name(mngr)}: Orbax declined to save step {step}")

    def latest_step(self) -> int | None:
        return self.periodic.latest_step()

    def restore(self, abstract_state, *, best: bool = False, step: int | None = None,
                set_aside: bool = False, check: Callable | None = None):
        """(state, meta) of the newest save that restores intact, laid out like `abstract_state`.

        Steps are tried newest first (only `step` when given); a step that fails (an Orbax
        error, a fingerprint or hash mismatch, or `check(state, meta)` raising) is reported in
        one line and skipped, and moved aside with `set_aside`. (None, None) when none restores;
        `self.skipped` lists what was skipped.
        """
        mngr = self.best if best else self.periodic
        mngr.wait_until_finished()
        self.skipped = []
        steps = sorted(mngr.all_steps(), reverse=True) if step is None else [step]
        steps = [s for s in steps if s in mngr.all_steps()]
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        if steps:
            _silence_failed_restore_leftovers()  # before: a failure's leftovers start at once
        for s in steps:
            try:
                state, meta = self._restore_step(mngr, s, target)
                if check is not None:
                    check(state, meta)
                reason = None
            except Exception as e:  # noqa: BLE001 - any failure means: this step is unusable
                reason = _first_line(e)
            if cluster.all_agree(reason is None):
                return state, meta
            reason = reason or "restores here but not on another process"
            self.skipped.append((self._name(mngr), s, reason))
            done = self._set_aside(mngr, s) if set_aside else None
            self.log(f"checkpoint {self._name(mngr)}/{s} does not restore, skipped"
                     f"{f' ({done})' if done else ''}: {reason}")
        return None, None

    def _restore_step(self, mngr, step, target):
        out = mngr.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
        )
        state, meta = out.state, out.meta
        if not isinstance(meta, dict):
            raise ValueError(f"meta is {type(meta).__name__}, not a JSON object")
        meta = dict(meta)
        integrity = meta.pop(_INTEGRITY, None)
        if integrity is not None:  # (checkpoints written before fingerprints restore unchecked)
            if _meta_hash(meta) != integrity.get("meta_sha256"):
                raise ValueError("meta JSON does not match its hash")
            fingerprint = inspect(state)[1]
            if fingerprint != list(integrity.get("fingerprint", [])):
                paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
                bad = [p for p, a, b in zip(paths, fingerprint, integrity.get("fingerprint", [])) if a != b]
                raise ValueError(f"array data differs from what was saved ({len(bad) or 'all'} arrays, "
                                 f"first {bad[0] if bad else paths[:1]})")
        return state, meta

    def _set_aside(self, mngr, step: int) -> str | None:
        """Moves a damaged step directory out of the manager's directory; says where. Every
        process looks before process 0 moves it, and reloads after."""
        src = os.path.join(str(mngr.directory), str(step))
        present = os.path.isdir(src)
        dst = os.path.join(self.workdir, "damaged_checkpoints", self._name(mngr), str(step))
        n = 1
        while os.path.exists(dst):
            dst = os.path.join(self.workdir, "damaged_checkpoints", self._name(mngr), f"{step}.{n}")
            n += 1
        cluster.barrier(f"checkpoint set aside {src}: looked")
        if present and cluster.is_chief():
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                os.replace(src, dst)
            except OSError:
                shutil.rmtree(src, ignore_errors=True)
        cluster.barrier(f"checkpoint set aside {src}: moved")
        if not present:
            return None
        mngr.reload()
        return f"moved to {os.path.relpath(dst, self.workdir)}" if os.path.isdir(dst) else "deleted"

    def discard_after(self, step: int) -> list[str]:
        """Deletes saves newer than `step` (a resumed run recomputes them): e.g. the best save of
        a validation whose periodic save never landed. Orbax skips a save older than its latest."""
        dropped = []
        for mngr in (self.periodic, self.best):
            mngr.wait_until_finished()
            for s in [s for s in mngr.all_steps() if s > step]:
                mngr.delete(s)
                dropped.append(f"{self._name(mngr)}/{s}")
            mngr.reload()
        return dropped

    def has_step(self, step: int, *, best: bool = False) -> bool:
        return step in (self.best if best else self.periodic).all_steps()

    def wait(self) -> None:
        self.periodic.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.periodic.close()
        self.best.close()
