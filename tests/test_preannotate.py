"""Pre-annotations follow the labeling config's vocabulary and the task's time axis."""

import numpy as np

from ls_backend.preannotate import pre_annotation


def test_regions_channels_and_window_choice():
    dense = np.zeros(512)
    dense[100:120] = 0.9  # 78 ms at 256 Hz
    channel = np.array([0.2, 0.95, np.nan, 0.7])
    results = pre_annotation(dense, channel, 0.93, ["A1-A2", "A2-A3", "B1-B2", "B2-B3"], 3600.0, 256.0)
    region, channels, window = results
    assert region["type"] == "timeserieslabels" and region["value"]["timeserieslabels"] == ["Spike"]
    assert region["value"]["start"] == round(3600 + 100 / 256, 4)
    assert region["value"]["end"] == round(3600 + 120 / 256, 4)
    assert channels["from_name"] == "channels" and channels["value"]["choices"] == ["A2-A3", "B2-B3"]
    assert channels["id"] == region["id"]
    assert window["value"]["choices"] == ["Spike"]


def test_no_spike():
    results = pre_annotation(np.zeros(512), np.zeros(2), 0.1, ["A1-A2", "A2-A3"], 0.0, 256.0)
    assert [r["value"]["choices"] for r in results] == [["No spike"]]
