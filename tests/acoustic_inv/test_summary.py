"""Posterior summaries against closed-form values of known distributions."""

import json

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from acoustic_inv.summary import hdi, kde_mode, summarize, summary_table, summary_to_json


def draws(n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(10.0, 2.0, n)
    b = 0.5 * a + rng.normal(0.0, 1.0, n)  # corr(a, b) = 1 / sqrt(2)
    c = rng.exponential(3.0, n)            # skewed: HDI and ETI differ
    return xr.DataArray(np.stack([a, b, c], axis=1), dims=("draw", "param"),
                        coords={"param": ["a", "b", "c"], "units": ("param", ["m", "m/s", "1"])})


def test_summary_matches_closed_form_values():
    s = summarize(draws(), levels=(0.9, 0.95))
    assert s["mean"].sel(param="a") == pytest.approx(10.0, abs=0.02)
    assert s["std"].sel(param="a") == pytest.approx(2.0, abs=0.02)
    assert s["median"].sel(param="c") == pytest.approx(3.0 * np.log(2.0), abs=0.03)
    assert s["mode"].sel(param="a") == pytest.approx(10.0, abs=0.15)
    # exponential: mode at 0; a KDE blurs it by about a bandwidth (0.3 here) at the boundary
    assert s["mode"].sel(param="c") < 0.6
    z = stats.norm.ppf(0.95)
    assert s["eti_low"].sel(param="a", level=0.9) == pytest.approx(10 - 2 * z, abs=0.05)
    # exponential HDI at level q is [0, -3 ln(1 - q)]
    assert s["hdi_low"].sel(param="c", level=0.9) == pytest.approx(0.0, abs=0.01)
    assert s["hdi_high"].sel(param="c", level=0.9) == pytest.approx(-3 * np.log(0.1), abs=0.05)
    assert s["correlation"].sel(param="a", param2="b") == pytest.approx(1 / np.sqrt(2), abs=0.01)
    assert list(s["units"].values) == ["m", "m/s", "1"]


def test_hdi_is_never_wider_than_eti_and_holds_its_mass():
    x = np.random.default_rng(1).gamma(2.0, 1.0, 50_000)
    lo, hi = hdi(x, 0.9)
    assert np.mean((x >= lo) & (x <= hi)) == pytest.approx(0.9, abs=0.002)
    e_lo, e_hi = np.quantile(x, [0.05, 0.95])
    assert hi - lo < e_hi - e_lo
    assert kde_mode(np.full(10, 4.0)) == 4.0


def test_table_and_json_name_every_parameter_with_units():
    s = summarize(draws(5000), levels=(0.9,))
    table = summary_table(s)
    assert "parameter" in table and "90% interval" in table
    assert all(name in table for name in ("a", "b", "c", "m/s"))
    doc = json.loads(json.dumps(summary_to_json(s)))
    assert set(doc["parameters"]) == {"a", "b", "c"}
    assert doc["parameters"]["a"]["units"] == "m"
    assert len(doc["parameters"]["a"]["eti_90"]) == 2
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        summarize(draws(100), levels=(1.5,))
