"""Pure logic, no I/O: windows/features, anomaly detectors, bandits, drift, latency stats."""

import os as _os

from threadpoolctl import threadpool_limits as _threadpool_limits

# Operators run inside one dataflow worker per core and multiply small matrices per micro-batch:
# multi-threaded BLAS would fight the workers for the cores and spin (measured: LinUCB updates
# 10x slower on 2 busy cores). The variables cover a numpy loaded later, threadpoolctl one
# loaded already; set the variables yourself to override.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")
_threadpool_limits(int(_os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")
