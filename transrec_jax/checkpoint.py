"""Orbax checkpoints of the train state plus the JSON the loop needs to resume exactly.

Two managers live in the workdir: `checkpoints/` keeps the last `keep` periodic saves (the
resume point after preemption) and `best/` keeps the single best state by the validation
metric (what the test evaluation and `recommend` use). Each save holds the train state
(params, optimizer state, step) and a JSON `meta` (data-iterator state, early-stopping
state). Orbax writes into a temporary directory and renames it when complete, so a crash
never leaves a checkpoint that restores.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, workdir: str, keep: int):
        def manager(name, max_to_keep):
            return ocp.CheckpointManager(
                os.path.join(os.path.abspath(workdir), name),
                options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            )

        self.periodic = manager("checkpoints", keep)
        self.best = manager("best", 1)

    def save(self, step: int, state, meta: dict, *, best: bool = False) -> None:
        """Asynchronous save; `wait()` before reading it back or exiting."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        (self.best if best else self.periodic).save(step, args=args)

    def latest_step(self) -> int | None:
        return self.periodic.latest_step()

    def restore(self, abstract_state, *, best: bool = False):
        """(state, meta) of the latest (or best) save, laid out like `abstract_state`."""
        mngr = self.best if best else self.periodic
        mngr.wait_until_finished()
        step = mngr.latest_step()
        if step is None:
            return None, None
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = mngr.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
        )
        return out.state, out.meta

    def wait(self) -> None:
        self.periodic.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.periodic.close()
        self.best.close()
