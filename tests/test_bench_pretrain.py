"""The pretraining benchmark's window-set source and encoder option (what the GPU study runs on a machine without
MNE): the encoder it was asked for, drawn from the window set's windows, one row per run."""

import json

import numpy as np
import pytest

from benchmarks import bench_pretrain
from converters.windowset import WindowSet, save_windowset


@pytest.mark.slow
def test_pretrains_the_asked_encoder_from_a_windowset(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = save_windowset(WindowSet(rng.standard_normal((40, 4, 128)), np.zeros(40), 128.0), tmp_path / "set.npz")
    out = tmp_path / "scale.json"
    assert (
        bench_pretrain.main(["--windowset", str(path), "--steps", "2", "--model", "width=8,depth=2", "--out", str(out)])
        == 0
    )
    (run,) = json.loads(out.read_text())["runs"]
    assert run["model"] == {"width": 8, "depth": 2}
    assert (run["n_chans"], run["window_samples"], run["store_windows"], run["steps"]) == (4, 128, 40, 2)
    assert run["hours"] == pytest.approx(40 * 1.0 / 3600)
    assert np.isfinite(run["loss_last_10"]) and run["peak_gpu_mb"] is None
    assert "| width=8,depth=2 |" in capsys.readouterr().out


def test_unknown_encoder_parameters_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_pretrain.main(["--windowset", str(tmp_path / "set.npz"), "--model", "wdth=8"])
    assert exit_info.value.code == 2
    assert "--model: SpikeDetector has no parameter(s) wdth" in capsys.readouterr().err
