"""aicpp-opt: MILP planning of GPU fleets for serving mixture-of-experts LLMs."""

import os
from pathlib import Path

# One BLAS thread unless the user says otherwise (set before numpy loads): the linear algebra
# here is many small banded solves (``model.queueing``) inside forked capacity workers, where
# BLAS threads only oversubscribe the cores (a cold h200_nvl72 solve on 2 cores: 16.3 s with
# OpenBLAS's default threads, 11.5 s with one).
for _pool in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""Root of the checkout (models/, cost_tables/ and instances/ live here in a checkout; an
installed wheel carries them as package data, see ``aicpp_opt.paths``)."""
