"""The atlas's causal-evidence section: ``causal.tsv`` (written by ``genesae causal``) as a table."""
from __future__ import annotations

import html
import math
from pathlib import Path

_SHOWN = (("concept", "concept"), ("strand", "strand"), ("feature", "feature"), ("f1", "held-out F1"),
          ("n_sites", "sites"), ("site_fire_frac", "fires at sites"), ("bits_spliced", "bits/bp spliced"),
          ("delta_site", "Δ bits/bp at sites [95% CI]"), ("delta_random", "Δ random positions"),
          ("delta_random_feature", "Δ random feature"), ("ratio_random", "ratio vs random positions [CI]"),
          ("ratio_feature", "ratio vs random feature [CI]"))

_NOTE = ("The SAE reconstruction replaces the layer's output (baseline), then one feature is removed where it "
         "fires; Δ is the extra LM bits per base at the concept's held-out sites, at as many random positions, "
         "and at the sites when a random feature of similar firing rate is removed instead. Ratios divide the "
         "site Δ by each control (∞: the control changed nothing); bold rows have both CIs above 1. "
         "Forward-strand pass only.")


def read_causal(ann_dir) -> dict:
    """``causal.tsv`` of an annotation folder as a dict of string columns ({} when absent)."""
    from genesae_fast.annotate.folder import read_tsv

    path = Path(ann_dir) / "causal.tsv"
    return read_tsv(path) if path.is_file() else {}


def _num(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        return float("nan")


def _g(x: float) -> str:
    if math.isnan(x):
        return "NA"
    return "∞" if math.isinf(x) and x > 0 else ("-∞" if math.isinf(x) else f"{x:.3g}")


def _cell(cols: dict, key: str, i: int) -> str:
    v = cols[key][i]
    if key in ("delta_site", "ratio_random", "ratio_feature"):
        return f"{_g(_num(v))} [{_g(_num(cols[key + '_lo'][i]))}, {_g(_num(cols[key + '_hi'][i]))}]"
    return _g(_num(v)) if key in ("f1", "site_fire_frac", "bits_spliced", "delta_random", "delta_random_feature") else v


def causal_section(cols: dict) -> str:
    """HTML of the section ('' when there is no causal table)."""
    if not cols or "concept" not in cols:
        return ""
    n = len(cols["concept"])
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in _SHOWN)
    rows = []
    for i in range(n):
        strong = _num(cols["ratio_random_lo"][i]) > 1 and _num(cols["ratio_feature_lo"][i]) > 1
        cells = "".join(f"<td>{html.escape(_cell(cols, k, i))}</td>" for k, _ in _SHOWN)
        rows.append(f"<tr style='font-weight:{700 if strong else 400}'>{cells}</tr>")
    body = "".join(rows) or f"<tr><td colspan='{len(_SHOWN)}'>no pair had held-out sites</td></tr>"
    return (f"<section class='causal' style='flex-basis:100%'><h2 style='font-size:16px'>Causal evidence ({n} pairs)</h2>"
            f"<p style='font-size:12px;max-width:900px'>{html.escape(_NOTE)}</p>"
            f"<div class='tablewrap' style='max-height:40vh'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div></section>")
