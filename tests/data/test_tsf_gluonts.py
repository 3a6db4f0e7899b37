"""Monash .tsf reading and the GluonTS converters (both directions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from titans_ts import datasets as D


def test_read_m3_monthly(data_root):
    data = D.load_tsf("m3_monthly", root=data_root)
    assert len(data.series) == 1428 and data.freq == "MS" and data.horizon == 18
    assert data.names[0] == "T1" and data.starts[0] == pd.Timestamp("1990-01-01")
    assert data.series[0][:3].tolist() == [2640.0, 2640.0, 2160.0]


def test_catalogue_fills_missing_header_fields(data_root):
    hosp = D.load_tsf("hospital", root=data_root)
    assert hosp.horizon == 12 and hosp.freq == "MS" and len(hosp.series) == 767
    other = D.load_tsf("m3_other", root=data_root)
    assert other.freq is None and other.starts[0] is None and other.horizon == 8
    nn5 = D.load_tsf("nn5_weekly", root=data_root)
    assert nn5.freq == "W-MON"


def test_tsf_missing_values(tmp_path):
    p = tmp_path / "x.tsf"
    p.write_text("@relation X\n@attribute series_name string\n@attribute start_timestamp date\n"
                 "@frequency daily\n@horizon 2\n@missing true\n@data\n"
                 "s1:2020-01-01 00-00-00:1,?,3\n")
    coll = D.read_tsf(p).to_collection()
    assert coll.masks[0][:, 0].tolist() == [True, False, True]
    assert coll.index[0][-1] == pd.Timestamp("2020-01-03")


@pytest.mark.parametrize("kind", ["list", "pandas"])
def test_gluonts_roundtrip(data_root, kind):
    coll = D.load_tsf("m1_monthly", root=data_root).to_collection()
    coll.values[0][2, 0] = np.nan
    coll.masks[0][2, 0] = False
    gds = D.to_gluonts(coll, kind=kind)
    entries = list(gds)
    assert len(entries) == len(coll)
    assert entries[0]["start"] == pd.Period(coll.index[0][0], freq="M")
    back = D.from_gluonts(gds)
    assert back.freq == "MS" and back.ids[:3] == coll.ids[:3]
    for i in (0, 5, len(coll) - 1):
        np.testing.assert_array_equal(back.masks[i], coll.masks[i])
        np.testing.assert_allclose(np.nan_to_num(back.values[i]), np.nan_to_num(coll.values[i]))
        assert back.index[i].equals(coll.index[i])


def test_gluonts_multivariate_and_quarterly():
    df = pd.DataFrame({"date": pd.date_range("2000-01-01", periods=8, freq="QS"),
                       "a": np.arange(8.0), "b": np.ones(8)})
    coll = D.from_frame(df)
    gds = D.to_gluonts(coll)
    entry = next(iter(gds))
    assert entry["target"].shape == (2, 8) and entry["start"].freqstr.startswith("Q")
    assert entry["start"].to_timestamp() == pd.Timestamp("2000-01-01")
    back = D.from_gluonts(gds, channels=["a", "b"])
    assert back.index[0].equals(coll.index[0]) and back.channels == ["a", "b"]
    assert D.period_freq("QS-OCT") == "Q-SEP" and D.period_freq("YS") == "Y-DEC"
