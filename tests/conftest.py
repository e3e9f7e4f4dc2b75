"""Test-wide settings."""

import torch

# The test models are tiny: one thread per process is faster than two fighting over
# OpenMP spin-waits, and keeps the suite steady on a shared 2-core machine.
torch.set_num_threads(1)
