"""Suite-wide settings."""

import torch

# One intra-op thread: the test models are tiny, and on a 2-core machine shared with Ray workers
# and servers OpenMP spin-waiting with more threads makes them many times slower.
torch.set_num_threads(1)
