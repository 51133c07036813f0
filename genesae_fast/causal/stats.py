"""Effect sizes, specificity ratios and their bootstrap confidence intervals.

Per site i (n sites): ``n_i`` scored bases, ``d_i`` extra bits when the feature is ablated,
``g_i`` extra bits when the random feature is ablated; per random interval j: ``m_j``
bases and ``r_j`` extra bits when the feature is ablated. Effects are bits per base:
``delta_site = sum d / sum n``, ``delta_random = sum r / sum m``, ``delta_random_feature =
sum g / sum n``. The ratios divide ``delta_site`` by each control (:func:`ratio`).

The 95% interval is a percentile bootstrap: sites are resampled with replacement (d and g
together, so the feature control stays paired with its sites) and random intervals
independently; each resample gives both ratios; the interval is the 2.5th and 97.5th
percentile (inverted empirical CDF, so it holds values the bootstrap actually produced).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 1000


def ratio(num, den):
    """``num / den`` where ``den > 0``; where ``den <= 0``: +inf if ``num > 0`` (the control
    shows no effect at all), else NaN (no effect to compare). Arrays broadcast."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / den, np.where(num > 0, np.inf, np.nan))
    return out[()] if out.ndim == 0 else out


def _interval(values: np.ndarray) -> tuple[float, float]:
    """2.5th and 97.5th percentiles; NaN resamples (no effect at all) rank lowest."""
    v = np.where(np.isnan(values), -np.inf, values)
    lo, hi = np.quantile(v, [0.025, 0.975], method="inverted_cdf")
    return float(lo), float(hi)


@dataclass
class Effect:
    """Point estimates and 95% intervals of one (feature, concept) pair."""

    delta_site: float
    delta_site_ci: tuple
    delta_random: float
    delta_random_feature: float
    ratio_random: float
    ratio_random_ci: tuple
    ratio_feature: float
    ratio_feature_ci: tuple


def _per_base(num, den):
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, np.asarray(num, np.float64) / den, np.nan)
    return out[()] if out.ndim == 0 else out


def effect(n, d, g, m, r, *, n_boot: int = N_BOOT, seed: int = 0) -> Effect:
    """Effects and ratios of one pair with bootstrap intervals (see the module docstring).

    Parameters
    ----------
    n, d, g : numpy.ndarray, shape (S,) -- per site: bases, extra bits (feature), extra bits (random feature)
    m, r : numpy.ndarray, shape (R,) -- per random interval: bases, extra bits (feature)
    n_boot : resamples
    seed : seed of the resampling
    """
    n, d, g, m, r = (np.asarray(a, dtype=np.float64) for a in (n, d, g, m, r))
    site, rand, feat = _per_base(d.sum(), n.sum()), _per_base(r.sum(), m.sum()), _per_base(g.sum(), n.sum())
    nan2 = (float("nan"), float("nan"))
    if n.size == 0 or m.size == 0:
        return Effect(site, nan2, rand, feat, ratio(site, rand), nan2, ratio(site, feat), nan2)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n.size, (n_boot, n.size))
    j = rng.integers(0, m.size, (n_boot, m.size))
    b_site = _per_base(d[i].sum(1), n[i].sum(1))
    b_rand = _per_base(r[j].sum(1), m[j].sum(1))
    b_feat = _per_base(g[i].sum(1), n[i].sum(1))
    return Effect(float(site), _interval(b_site), float(rand), float(feat),
                  float(ratio(site, rand)), _interval(ratio(b_site, b_rand)),
                  float(ratio(site, feat)), _interval(ratio(b_site, b_feat)))
