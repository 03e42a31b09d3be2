"""bnexp: reproduce, measure and explain the published findings about Batch Normalization."""

import os

# OpenMP threads that spin while waiting turn a shared or oversubscribed machine (parallel sweep
# jobs, a busy laptop) into a 10-100x slowdown for the small kernels of these models: measured
# here, 20 steps of a tiny MLP took 15 s instead of 0.1 s with 2 threads on 2 busy cores.
# Sleeping waiters cost little when the machine is idle. Must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
