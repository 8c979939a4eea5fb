"""Pure logic, no I/O: windows/features, anomaly detectors, bandits, drift, latency stats."""

import os as _os

# Operators run inside one dataflow worker per core and multiply small matrices per micro-batch:
# multi-threaded BLAS would fight the workers for the cores and spin (measured: LinUCB updates
# 10x slower on 2 busy cores). Takes effect when eddy is imported before numpy; set the
# variables yourself to override.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
