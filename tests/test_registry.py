"""Model versions per project: promotion, cached loading, and a corrupt checkpoint never takes the service down."""

import numpy as np
import pytest

from ls_backend.model.estimator import SpikeDetector
from ls_backend.registry import ModelRegistry


@pytest.fixture(scope="module")
def tiny_detector():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 2, 256)).astype(np.float32)
    y = (np.arange(16) % 4 == 0).astype(np.float32)
    X[y == 1, 0, 100:110] += 8
    return SpikeDetector(width=4, depth=1, epochs=1, batch_size=8, seed=0).fit(X, y)


def test_promote_then_load(tmp_path, tiny_detector):
    registry = ModelRegistry(tmp_path)
    assert registry.current_version(3) is None and registry.load(3) is None
    v1 = registry.promote("3.17000", tiny_detector, {"labels_used": 10})
    v2 = registry.promote(3, tiny_detector, {"labels_used": 20})
    assert (v1, v2) == ("p3-v0001", "p3-v0002")
    model, meta = registry.load(3)
    assert meta["version"] == v2 and meta["parent_version"] == v1 and meta["labels_used"] == 20
    assert registry.load(3)[0] is model  # cached while the version does not change
    assert [m["version"] for m in registry.history(3)] == [v1, v2]


def test_a_corrupt_serving_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_detector, caplog):
    registry = ModelRegistry(tmp_path)
    v1 = registry.promote(4, tiny_detector, {})
    v2 = registry.promote(4, tiny_detector, {})
    path = tmp_path / "4" / "checkpoints" / f"{v2}.pt"
    path.write_bytes(path.read_bytes()[:100])
    model, meta = ModelRegistry(tmp_path).load(4)
    assert meta["version"] == v1 and "corrupt" in caplog.text
    windows = np.zeros((1, 3, 256), np.float32)
    assert model.predict_proba(windows).shape == (1,)  # another layout (3 channels): still scores
