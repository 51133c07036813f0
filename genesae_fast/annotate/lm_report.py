"""The atlas section "Does the LM know the concepts?" (see :mod:`.lm_knowledge`).

Next to each concept's LM bits at sites vs flanks it puts the best SAE feature's held-out
F1, so a weak concept reads as an LM failure (the model does not predict the sites better
than their flanks) or an SAE failure (the model does, yet no feature finds them).
"""
from __future__ import annotations

import html
import math

ROWS_SHOWN = 40
FOUND_F1 = 0.3  # "the SAE finds it": best held-out F1 at least this


def _num(s) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("nan")


def verdict(knows: float, f1: float) -> str:
    """How to read a concept: who fails, if anyone."""
    found = f1 >= FOUND_F1
    if knows == 1:
        return "LM knows it, SAE finds it" if found else "SAE failure: LM knows it, no feature finds it"
    return "SAE finds it without an LM gain" if found else "LM failure: LM does not know it"


def _cell(v, digits: int = 3) -> str:
    if isinstance(v, float):
        return "NA" if math.isnan(v) else f"{v:.{digits}f}"
    return html.escape(str(v))


def _rows(cc: dict) -> list:
    """Measured concepts: gene concepts, then motifs, each lowest delta (sites cheapest) first."""
    rows = []
    for i, name in enumerate(cc.get("concept", [])):
        delta = _num(cc["lm_bits_delta"][i])
        if math.isnan(delta):
            continue
        knows, f1 = _num(cc["lm_knows"][i]), _num(cc["f1"][i])
        rows.append(((cc["kind"][i] != "gene", delta), [name, cc["kind"][i], cc["lm_sites"][i], _num(cc["lm_bits_site"][i]),
                             _num(cc["lm_bits_flank"][i]), delta, _num(cc["lm_bits_delta_ci"][i]), _num(cc["lm_z"][i]),
                             "yes" if knows == 1 else "no", f1, _num(cc["neuron_f1"][i]), verdict(knows, f1)]))
    rows.sort(key=lambda r: r[0])
    return [r[1] for r in rows]


def lm_section(data: dict) -> str:
    """HTML of the section (a note when the diagnostic is absent, with the reason)."""
    info = data["summary"].get("lm_knowledge") or {}
    cc = data.get("concepts") or {}
    head = "<section class='lmk' style='width:100%'><h3>Does the LM know the concepts? (bits per base, sites vs flanks)</h3>"
    if "absent" in info or "lm_bits_delta" not in cc:
        why = info.get("absent", "this annotation predates the diagnostic")
        return head + f"<p>Not measured: {html.escape(str(why))}.</p></section>"
    rows = _rows(cc)
    intro = (f"<p>{info.get('concepts_known', 0)} of {info.get('concepts_measured', 0)} concepts are known to the LM "
             f"(sites cost at least {info.get('knows_drop_bits')} bits per base fewer than flanks {info.get('flank_gap_bp')} bp "
             f"away, z ≤ -{info.get('knows_z')}, at least {info.get('knows_min_sites')} sites). A concept the LM does not know cannot be expected from its SAE; "
             f"one it knows that no feature finds (F1 &lt; {FOUND_F1}) is the SAE's miss. "
             f"Gene concepts, then motifs, lowest delta first; all concepts are in concepts.tsv.</p>")
    cols = ["concept", "kind", "sites", "bits at sites", "bits at flanks", "delta", "±95%", "z", "LM knows",
            "best SAE F1", "best neuron F1", "reading"]
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows[:ROWS_SHOWN])
    table = ("<div class='tablewrap'><table><thead><tr>" + "".join(f"<th>{c}</th>" for c in cols)
             + f"</tr></thead><tbody>{body}</tbody></table></div>")
    return head + intro + table + "</section>"
