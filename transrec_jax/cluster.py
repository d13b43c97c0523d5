"""Joining a multi-process run: `initialize(config.cluster)`, before any JAX computation.

`launch='single'` (the default) is one process and does nothing. `'auto'` lets JAX find the
cluster (TPU pods, SLURM, ...); `'explicit'` names it: the coordinator's host:port (process 0
serves there), the process count and this process's id. Afterwards every process runs the same
program on its share of the global device mesh; process 0 (`is_chief`) writes the workdir,
`barrier` and `all_agree` keep the processes in step around what it writes and reads, and
`finish` leaves the cluster together. `cluster.timeout_s` bounds the waits to join and to leave.

jax.distributed.initialize does not raise when a peer is missing: the process aborts in C++
(SIGABRT, about timeout + 5 s) when no coordinator answers or the processes do not all join,
and crashes (SIGSEGV) when process 0 cannot bind the coordinator port. So the cases a user can
cause are checked first and raise ConfigError: a taken port (process 0), a coordinator that
does not accept connections within the timeout (the others). A watchdog covers the rest: if the
processes have not all joined within `timeout_s`, before JAX's own abort, it prints one
`error: ...` line (as `cli.fail` does) and exits with status 1.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from transrec_jax import config as config_lib
from transrec_jax.config import ConfigError


def initialize(cluster_cfg) -> None:
    """Join the processes of `cluster_cfg.launch` (see the module docstring); ConfigError when
    that fails."""
    config_lib._validate_cluster(cluster_cfg)  # (validate() runs later, once the devices are known)
    if cluster_cfg.launch == "single":
        return
    timeout = cluster_cfg.timeout_s
    deadline = time.monotonic() + timeout
    if cluster_cfg.launch == "auto":
        where = "config.cluster.launch='auto'"
        late = (f"{where}: the processes JAX detected did not all join within {timeout} s "
                "(config.cluster.timeout_s)")
        _join(where, late, deadline, "JAX found no cluster to join (TPU pod, SLURM, ...; "
              "launch='explicit' names one)", initialization_timeout=timeout,
              shutdown_timeout_seconds=timeout)
        return
    address, n, i = cluster_cfg.coordinator_address, cluster_cfg.num_processes, cluster_cfg.process_id
    where = f"config.cluster.coordinator_address={address!r}"
    host, port = _host_port(address)
    if i == 0:
        _check_port_free(where, port)
    else:
        _await_coordinator(where, host, port, deadline, f"process {i} of {n}")
    late = (f"config.cluster.num_processes={n}: not all {n} processes joined the coordinator at "
            f"{address} within {timeout} s (config.cluster.timeout_s; this is process {i})")
    _join(where, late, deadline, "jax.distributed.initialize failed", coordinator_address=address,
          num_processes=n, process_id=i, initialization_timeout=timeout,
          shutdown_timeout_seconds=timeout)


def finish() -> None:
    """Leave the cluster once every process is done: a barrier, then JAX's shutdown, which
    waits for every process again. Otherwise each process shuts down at interpreter exit
    whenever it gets there, and one may wait out the whole shutdown timeout for a peer that has
    already gone."""
    if jax.process_count() > 1:
        barrier("finished")
        jax.distributed.shutdown()


def is_chief() -> bool:
    """Process 0: the one that writes the workdir (config, metrics, results)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Returns once every process has reached `name` (at once with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def all_agree(ok: bool) -> bool:
    """True when `ok` is True on every process (`ok` itself with one process): a verdict that
    keeps the processes on one path when each judged what it read."""
    if jax.process_count() == 1:
        return ok
    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))


def _join(where: str, late: str, deadline: float, failed: str, **kwargs) -> None:
    """jax.distributed.initialize(**kwargs), exiting with `late` if it has not returned by
    `deadline` (JAX aborts the process about 5 s after its own initialization_timeout)."""
    lock, done = threading.Lock(), []

    def expire():
        with lock:
            if not done:
                sys.stderr.write(f"error: {late}\n")
                sys.stderr.flush()
                os._exit(1)  # the main thread is blocked in C++: no exception can reach it

    timer = threading.Timer(max(deadline - time.monotonic(), 0.1), expire)
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - any failure to join is reported as the config's
        text = str(e).strip().splitlines()
        raise ConfigError(f"{where}: {failed} ({type(e).__name__}: {text[0] if text else ''})") from None
    finally:
        with lock:
            done.append(True)
        timer.cancel()


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)  # (validated by config.validate: host:port)


def _check_port_free(where: str, port: int) -> None:
    """Process 0 serves the coordinator on [::]:port (all addresses); a taken port crashes JAX."""
    family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: TIME_WAIT is no conflict
        try:
            s.bind(("::" if family == socket.AF_INET6 else "", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"{where}: port {port} is in use on this host (process 0 serves "
                                  "the coordinator there): pick a free port") from None
            raise ConfigError(f"{where}: process 0 cannot serve the coordinator on port {port} "
                              f"({e.strerror or e})") from None


def _await_coordinator(where: str, host: str, port: int, deadline: float, who: str) -> None:
    """Until `deadline`, try to open a TCP connection to the coordinator (process 0 may start
    later than this one); ConfigError when none is accepted."""
    start, last = time.monotonic(), None
    while True:
        try:
            wait = max(min(deadline - time.monotonic(), 1.0), 0.1)
            with socket.create_connection((host, port), timeout=wait):
                return
        except socket.gaierror as e:
            raise ConfigError(f"{where}: cannot resolve host {host!r} ({e.strerror or e})") from None
        except OSError as e:
            last = e.strerror or type(e).__name__
        if time.monotonic() >= deadline:
            waited = time.monotonic() - start
            raise ConfigError(f"{where}: no coordinator answered within {waited:.0f} s ({who}; "
                              f"last attempt: {last}; is process 0 running? config.cluster.timeout_s "
                              "sets the wait)")
        time.sleep(0.1)
