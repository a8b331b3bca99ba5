"""Small shared fixtures-as-functions for the model tests."""

import numpy as np

TINY = dict(width=8, depth=2, kernel_size=5, epochs=2, batch_size=8, seed=0)


def toy_windows(n: int = 24, n_chans: int = 5, n_times: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise windows; positives (every third) carry one sharp transient on one random channel."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_chans, n_times)).astype(np.float32)
    y = (np.arange(n) % 3 == 0).astype(np.float32)
    for i in np.flatnonzero(y):
        c, t = rng.integers(n_chans), rng.integers(10, n_times - 10)
        X[i, c, t - 3 : t + 3] += 8 * np.hanning(6)
    return X, y
