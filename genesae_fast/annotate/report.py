"""``genesae report``: the annotation folder as one self-contained HTML atlas.

No server and no network: styles, the script and the figures are inline. Summary figures
are SVG drawn here; per-feature cards (SVG sequence logos beside the matched motif's logo,
activation histogram, top examples with active bases highlighted, and a genome-browser view
of the activation around the top examples beside gene calls and motif hits) are drawn in the
browser from a compact JSON blob, so a folder with thousands of features stays a few MB.
The genome view is igv.js (vendored, MIT; ``genesae_fast/data/igv``), embedded gzip-compressed.
``#feature-<i>`` in the address opens feature i's card, so a card can be shared.

Optional inputs read from the annotation folder when present: ``genes.bed`` (BED6 gene calls:
seq, start, end, name, score, strand), ``motif_hits.bed``, ``example_windows.parquet``
(``feature``, ``rank``, ``seq``, ``start``, ``end``, ``activation`` list<float32> per bp:
a wider activation window per example) and ``summary.json["sequence_lengths"]``.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from genesae_fast.annotate.lm_report import lm_section
from genesae_fast.annotate.report_causal import causal_section, read_causal
from genesae_fast.annotate.strand_report import strand_figure, strand_stats
from genesae_fast.errors import InputError

_COLORS = {"A": "#2ca02c", "C": "#1f77b4", "G": "#ff9f0e", "T": "#d62728"}
TABLE_COLUMNS = [
    ("feature", "feature", "int"), ("frequency", "freq", "num"), ("max_activation", "max", "num"),
    ("motif", "motif", "str"), ("motif_name", "TF", "str"), ("motif_f1", "motif F1", "num"),
    ("motif_qvalue", "motif q", "num"), ("concept", "gene concept", "str"), ("concept_f1", "concept F1", "num"),
    ("concept_qvalue", "concept q", "num"), ("logo_consensus", "logo", "str"), ("logo_match", "logo match", "str"),
    ("logo_match_score", "match score", "num"), ("top_kmer", "top k-mer", "str"), ("score", "score", "num"),
]


def _num(s: str) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return float("nan")


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def svg_histogram(values, bins: int = 20, lo: float = 0.0, hi: float = 1.0, title: str = "", xlabel: str = "",
                  width: int = 360, height: int = 180) -> str:
    """A bar chart of ``values`` binned on [lo, hi] as an inline SVG string."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return svg_bars(counts, [f"{e:.2g}" for e in edges[:-1]], title, xlabel, width, height)


def svg_bars(counts, labels, title="", xlabel="", width=360, height=180, color="#4c72b0", log=False) -> str:
    """Vertical bars with a few tick labels, as an SVG string."""
    counts = np.asarray(counts, dtype=np.float64)
    n = max(len(counts), 1)
    pl, pr, pt, pb = 40, 10, 22, 34
    w, h = width - pl - pr, height - pt - pb
    top = float(np.log10(counts.max() + 1)) if log and counts.size else float(counts.max()) if counts.size else 1.0
    top = top or 1.0
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{width / 2}" y="14" text-anchor="middle" class="ctitle">{_esc(title)}</text>',
           f'<line x1="{pl}" y1="{pt + h}" x2="{pl + w}" y2="{pt + h}" stroke="#888"/>',
           f'<text x="{pl - 4}" y="{pt + 8}" text-anchor="end" class="tick">{int(counts.max()) if counts.size else 0}</text>']
    bw = w / n
    for i, c in enumerate(counts):
        val = math.log10(c + 1) if log else c
        bh = h * val / top
        out.append(f'<rect x="{pl + i * bw + 0.5:.1f}" y="{pt + h - bh:.1f}" width="{max(bw - 1, 0.5):.1f}" height="{bh:.1f}" fill="{color}"><title>{_esc(labels[i] if i < len(labels) else i)}: {int(c)}</title></rect>')
    step = max(1, n // 5)
    for i in range(0, n, step):
        if i < len(labels):
            out.append(f'<text x="{pl + i * bw:.1f}" y="{pt + h + 14}" class="tick">{_esc(labels[i])}</text>')
    out.append(f'<text x="{pl + w / 2}" y="{height - 4}" text-anchor="middle" class="tick">{_esc(xlabel)}</text></svg>')
    return "".join(out)


def svg_lines(series: dict, title="", xlabel="", width=360, height=180, logy=False) -> str:
    """Line plot of {name: (x, y)} as an SVG string (each series scaled to the shared axes)."""
    pl, pr, pt, pb = 46, 10, 22, 34
    w, h = width - pl - pr, height - pt - pb
    pts = [(np.asarray(x, float), np.asarray(y, float)) for x, y in series.values()]
    pts = [(x[np.isfinite(y) & (y > 0 if logy else True)], y[np.isfinite(y) & (y > 0 if logy else True)]) for x, y in pts]
    xs = np.concatenate([p[0] for p in pts]) if pts else np.zeros(0)
    ys = np.concatenate([p[1] for p in pts]) if pts else np.zeros(0)
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{width / 2}" y="14" text-anchor="middle" class="ctitle">{_esc(title)}</text>']
    if xs.size == 0:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="tick">no data</text></svg>')
        return "".join(out)
    tf = np.log10 if logy else (lambda a: a)
    x0, x1 = float(xs.min()), float(xs.max()) or 1.0
    y0, y1 = float(tf(ys).min()), float(tf(ys).max())
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    out.append(f'<rect x="{pl}" y="{pt}" width="{w}" height="{h}" fill="none" stroke="#ccc"/>')
    for i, (name, (x, y)) in enumerate(zip(series, pts, strict=True)):
        px = pl + (x - x0) / (x1 - x0) * w
        py = pt + h - (tf(y) - y0) / (y1 - y0) * h
        d = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
        out.append(f'<polyline fill="none" stroke="{palette[i % 5]}" stroke-width="1.5" points="{d}"/>')
        out.append(f'<text x="{pl + 6}" y="{pt + 12 + 12 * i}" class="tick" fill="{palette[i % 5]}">{_esc(name)}</text>')
    fmt = (lambda v: f"{10 ** v:.3g}") if logy else (lambda v: f"{v:.3g}")
    out.append(f'<text x="{pl - 3}" y="{pt + 8}" text-anchor="end" class="tick">{fmt(y1)}</text>')
    out.append(f'<text x="{pl - 3}" y="{pt + h}" text-anchor="end" class="tick">{fmt(y0)}</text>')
    out.append(f'<text x="{pl}" y="{pt + h + 14}" class="tick">{x0:.3g}</text>')
    out.append(f'<text x="{pl + w}" y="{pt + h + 14}" text-anchor="end" class="tick">{x1:.3g}</text>')
    out.append(f'<text x="{pl + w / 2}" y="{height - 4}" text-anchor="middle" class="tick">{_esc(xlabel)}</text></svg>')
    return "".join(out)


def read_metrics(sae_dir) -> dict:
    """Training curves from an SAE folder's metrics.jsonl: {name: (tokens, values)}."""
    path = Path(sae_dir) / "metrics.jsonl" if sae_dir else None
    if path is None or not path.is_file():
        return {}
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    if not rows:
        return {}
    xkey = next((k for k in ("tokens", "step") if k in rows[0]), None)
    out = {}
    for key in ("fvu", "loss", "mse", "l0", "dead_fraction"):
        pairs = [(r.get(xkey, i), r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
        if pairs:
            out[key] = (np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float))
    return out


def _quant(acts, amax) -> str:
    """Per-base activations as a string of digits 0-9 (share of the example's maximum)."""
    a = np.asarray(acts, dtype=np.float64)
    if amax <= 0:
        return "0" * a.size
    return "".join(str(int(d)) for d in np.clip(np.ceil(a / amax * 9), 0, 9))


def safe_json(obj) -> str:
    """``obj`` as JSON that can sit inside a ``<script>`` element whatever its strings hold.

    ``<``, ``>`` and ``&`` become ``\\u003c``-style escapes (no string can close the script or
    open an HTML comment, as ``<!--<script>`` in a motif name would), and so do U+2028/2029.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def collect(ann_dir) -> dict:
    """Everything the page needs from an annotation folder."""
    import pyarrow.parquet as pq

    from genesae_fast.annotate.folder import read_tsv

    ann = Path(ann_dir)
    for name in ("summary.json", "features.tsv"):
        if not (ann / name).is_file():
            raise InputError(f"{ann_dir}: not an annotation folder (no {name}; run genesae annotate)")
    summary = json.loads((ann / "summary.json").read_text())
    feats = read_tsv(ann / "features.tsv")
    concepts = read_tsv(ann / "concepts.tsv") if (ann / "concepts.tsv").is_file() else {}
    logos = json.loads((ann / "logos.json").read_text()) if (ann / "logos.json").is_file() else {"features": {}, "motifs": {}}
    examples: dict[int, list] = {}
    if (ann / "examples.parquet").is_file():
        t = pq.read_table(ann / "examples.parquet").to_pydict()
        for i in range(len(t["feature"])):
            f = int(t["feature"][i])
            examples.setdefault(f, []).append([
                t["seq"][i], int(t["start"][i]), round(float(t["activation"][i]), 3), int(t["context_start"][i]),
                t["context"][i], _quant(t["context_activation"][i], float(t["activation"][i]))])
    _add_windows(ann / "example_windows.parquet", examples)
    return {"summary": summary, "features": feats, "concepts": concepts, "logos": logos, "examples": examples,
            "genes": read_genes(ann / "genes.bed"), "hits": read_motif_hits(ann / "motif_hits.bed", examples),
            "causal": read_causal(ann)}


def read_genes(path: Path) -> dict:
    """Gene calls of a BED6 file as ``{seq: [[start, end, strand, name], ...]}`` ({} if absent)."""
    genes: dict[str, list] = {}
    if not Path(path).is_file():
        return genes
    for line in Path(path).read_text().splitlines():
        f = line.split("\t")
        if len(f) < 3 or line.startswith(("#", "track", "browser")):
            continue
        strand = f[5] if len(f) > 5 and f[5] in "+-" else "."
        genes.setdefault(f[0], []).append([int(f[1]), int(f[2]), strand, f[3] if len(f) > 3 else ""])
    return genes


def read_motif_hits(path: Path, examples: dict, pad: int = 0) -> list:
    """Motif hits of ``motif_hits.bed`` that overlap any example window, sorted.

    Returns ``[[seq, start, end, strand, label], ...]``; the genome-wide file can hold
    hundreds of thousands of hits, so only those a card can show are kept.
    """
    if not Path(path).is_file():
        return []
    windows: dict[str, list] = {}
    for exs in examples.values():
        for x in exs:
            lo, hi = _window(x)
            windows.setdefault(x[0], []).append((lo - pad, hi + pad))
    merged = {k: _merge(v) for k, v in windows.items()}
    out = []
    with open(path) as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) >= 6 and f[0] in merged and _overlaps(merged[f[0]], int(f[1]), int(f[2])):
                out.append([f[0], int(f[1]), int(f[2]), f[5], f[3]])
    return sorted(out)


def _window(x: list) -> tuple[int, int]:
    """Genome interval an example's card shows: its context, or its wider window when present."""
    lo, hi = x[3], x[3] + len(x[4])
    if len(x) > 6:
        lo, hi = min(lo, x[6][0]), max(hi, x[6][0] + len(x[6][1]))
    return lo, hi


def _merge(intervals: list) -> tuple[np.ndarray, np.ndarray]:
    iv = sorted(intervals)
    starts, ends = [], []
    for a, b in iv:
        if starts and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return np.asarray(starts), np.asarray(ends)


def _overlaps(merged: tuple, start: int, end: int) -> bool:
    starts, ends = merged
    i = int(np.searchsorted(starts, end, side="left")) - 1
    return i >= 0 and ends[i] > start


def _add_windows(path: Path, examples: dict) -> None:
    """Append ``[window_start, digits]`` to each example that has a wider activation window."""
    if not path.is_file():
        return
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["feature", "rank", "start", "activation"]).to_pydict()
    for f, rank, start, acts in zip(t["feature"], t["rank"], t["start"], t["activation"], strict=True):
        ex = examples.get(int(f), [])
        if 0 <= int(rank) < len(ex):
            ex[int(rank)].append([int(start), _quant(acts, ex[int(rank)][2])])


def _significant(q: str, level: float) -> bool:
    v = _num(q)
    return not math.isnan(v) and v < level


def table_rows(feats: dict, level: float) -> list:
    """Feature-table rows in :data:`TABLE_COLUMNS` order.

    A motif or gene concept whose q-value is not below ``level`` is shown as ``none`` (its
    F1 and q stay, greyed by the page), so no feature looks like a motif match it is not.
    """
    n = len(feats.get("feature", []))
    cols = {c: feats.get(c, [""] * n) for c, _, _ in TABLE_COLUMNS}
    rows = []
    for i in range(n):
        row = {c: cols[c][i] for c in cols}
        if not _significant(row["motif_qvalue"], level):
            row["motif"], row["motif_name"] = "none", ""
        if not _significant(row["concept_qvalue"], level):
            row["concept"] = "none"
        rows.append([row[c] for c, _, _ in TABLE_COLUMNS])
    return rows


def feature_cards(data: dict, level: float) -> dict:
    """Per-feature card data: histogram, logos, examples, significance and the motif hits to draw."""
    feats = data["features"]
    n = len(feats.get("feature", []))
    col = lambda c: feats.get(c, [""] * n)  # noqa: E731
    by_motif: dict[str, list] = {}  # hits by BED label and by motif id (the label is "id_name")
    for h in data.get("hits", []):
        for key in {h[4], h[4].split("_", 1)[0]}:
            by_motif.setdefault(key, []).append(h)
    cards = {}
    for i in range(n):
        f, match, motif = feats["feature"][i], col("logo_match")[i], col("motif")[i]
        exs = data["examples"].get(int(f), [])
        spans = {(x[0],) + _window(x) for x in exs}
        hits = {tuple(h) for m in {motif, match} if m for h in by_motif.get(m, [])
                if any(h[0] == c and h[1] < hi and h[2] > lo for c, lo, hi in spans)}
        hits = [list(h) for h in sorted(hits)]
        cards[f] = {"h": [int(x) for x in col("histogram")[i].split(",") if x], "l": data["logos"]["features"].get(str(f)),
                    "m": match, "ml": data["logos"]["motifs"].get(match), "bm": motif, "bmn": col("motif_name")[i],
                    "bml": data["logos"]["motifs"].get(motif), "x": exs, "mh": hits,
                    "sig": _significant(col("motif_qvalue")[i], level), "bq": col("motif_qvalue")[i],
                    "bf": col("motif_f1")[i], "cs": _significant(col("concept_qvalue")[i], level),
                    "c": col("concept")[i], "cq": col("concept_qvalue")[i], "cf": col("concept_f1")[i]}
    return cards


def _genes_near_examples(data: dict) -> dict:
    """Gene calls overlapping any example window (the only ones a card can show)."""
    spans: dict[str, list] = {}
    for exs in data["examples"].values():
        for x in exs:
            spans.setdefault(x[0], []).append(_window(x))
    merged = {k: _merge(v) for k, v in spans.items()}
    return {c: [g for g in gs if _overlaps(merged[c], g[0], g[1])] for c, gs in data.get("genes", {}).items() if c in merged}


def _summary_figures(data: dict, sae_dir) -> list:
    feats, s = data["features"], data["summary"]
    mf1 = [_num(x) for x in feats.get("motif_f1", [])]
    cf1 = [_num(x) for x in feats.get("concept_f1", [])]
    figs = [svg_histogram(mf1, title="best motif F1 per feature (held out)", xlabel="F1"),
            svg_histogram(cf1, title="best gene-concept F1 per feature (held out)", xlabel="F1", )]
    cc = data["concepts"]
    if cc:
        gene = [i for i, k in enumerate(cc["kind"]) if k == "gene"]
        if gene:
            names = [cc["concept"][i] for i in gene]
            sae_f1 = [_num(cc["f1"][i]) for i in gene]
            neu_f1 = [_num(cc["neuron_f1"][i]) for i in gene]
            figs.append(svg_paired(names, sae_f1, neu_f1, "gene concepts: best SAE feature vs best neuron (F1)"))
        motif = [i for i, k in enumerate(cc["kind"]) if k == "motif"]
        if motif:
            figs.append(svg_histogram([_num(cc["f1"][i]) for i in motif], title="motifs: best SAE feature F1", xlabel="F1"))
            figs.append(svg_histogram([_num(cc["neuron_f1"][i]) for i in motif], title="motifs: best neuron F1", xlabel="F1"))
        figs.extend(strand_figure(cc, svg_paired, _num))
    curves = read_metrics(sae_dir or s.get("sae"))
    for key in ("fvu", "loss", "l0", "dead_fraction"):
        if key in curves:
            figs.append(svg_lines({key: curves[key]}, title=f"training: {key}", xlabel="tokens", logy=key in ("fvu", "loss")))
    return figs


def _stats_html(s: dict) -> str:
    stats = [("features", s.get("n_features")), ("tokens", s.get("n_tokens")), ("FVU", s.get("fvu")),
             ("L0", s.get("l0")), ("dead fraction", s.get("dead_fraction")), ("features tested", s.get("features_tested")),
             ("motifs", s.get("n_motifs", s.get("motifs"))),
             (f"features with a motif (q ≤ {s.get('qvalue_level', 0.05)})", s.get("features_with_motif")),
             ("features with a gene concept", s.get("features_with_gene_concept")),
             ("concepts with F1 ≥ 0.5: SAE / neurons", f"{s.get('concepts_sae_f1_ge_0.5')} / {s.get('concepts_neuron_f1_ge_0.5')}"),
             ("concepts with F1 ≥ 0.3: SAE / neurons", f"{s.get('concepts_sae_f1_ge_0.3')} / {s.get('concepts_neuron_f1_ge_0.3')}"),
             ("concepts where the best SAE feature beats the best neuron", s.get("concepts_sae_beats_neuron"))]
    stats += strand_stats(s)
    stats += _run_extras(s)
    control = s.get("control_untrained")
    if control:  # the untrained-LM reference line (genesae run --control-untrained)
        stats.append(("untrained-LM control: concepts with F1 ≥ 0.3, SAE / neurons",
                      f"{control.get('concepts_sae_f1_ge_0.3')} / {control.get('concepts_neuron_f1_ge_0.3')}"))
        stats += [(f"untrained-LM control: best {kind} concept F1", g.get("best_f1"))
                  for kind, g in control.get("groups", {}).items()]
    return "".join(f"<div class='stat'><b>{_esc(_fmt(v))}</b><span>{_esc(k)}</span></div>" for k, v in stats)


def _run_extras(s: dict) -> list:
    """``genesae run``'s layer choice and SAE-seed spread, when the summary has them."""
    out = []
    lc = s.get("layer_choice")
    if lc:
        from genesae_fast.layer_choice import per_layer_text

        out.append((f"layer chosen on the select split ({per_layer_text(lc)})", lc.get("layer")))
    sp = s.get("seed_spread")
    if sp and sp.get("measured"):
        out.append((f"median (max {sp['max_range']:.3f}) range of held-out best F1 over {sp['seeds']} SAE seeds, "
                    f"{sp['concepts']} concepts", f"{sp['median_range']:.3f}"))
    elif sp:
        out.append(("SAE seeds (seed-to-seed spread not measured)", sp.get("seeds")))
    return out


def igv_payload() -> str:
    """The vendored igv.js bundle, gzip-compressed, as base64 text (decompressed by the page)."""
    import base64

    from genesae_fast.data import data_dir

    return base64.b64encode((data_dir() / "igv" / "igv.min.js.gz").read_bytes()).decode("ascii")


def build_html(data: dict, sae_dir=None) -> str:
    """The atlas page as a string."""
    s = data["summary"]
    level = float(s.get("qvalue_level", 0.05))
    lens = s.get("sequence_lengths") if isinstance(s.get("sequence_lengths"), dict) else {}
    payload = safe_json({"rows": table_rows(data["features"], level), "cards": feature_cards(data, level),
                         "genes": _genes_near_examples(data), "lens": lens, "qlevel": level})
    head = "".join(f"<th data-type='{t}' title='sort'>{_esc(label)}</th>" for _, label, t in TABLE_COLUMNS)
    title = f"genesae atlas: {Path(str(s.get('sae', ''))).name or 'SAE'}"
    figs = "".join(_summary_figures(data, sae_dir)) + lm_section(data) + causal_section(data.get("causal"))
    return _PAGE.format(title=_esc(title), stats=_stats_html(s), figs=figs, head=head,
                        payload=payload, igv=igv_payload(),
                        prov=_esc(f"store {s.get('store', '')} | SAE {s.get('sae', '')} | genome {s.get('genome', '')} | "
                                  f"layer {s.get('layer', '')} | held-out split blocks {s.get('split_block_bp', '')} bp"),
                        css=_CSS, js=_JS)


def svg_paired(names, a, b, title, width=720, height=220, labels=("SAE feature", "neuron")) -> str:
    """Grouped bars: SAE F1 (blue) and neuron F1 (orange) per concept (``labels`` name the two)."""
    pl, pr, pt, pb = 36, 10, 22, 70
    w, h = width - pl - pr, height - pt - pb
    n = max(len(names), 1)
    bw = w / n
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
           f'<text x="{width / 2}" y="14" text-anchor="middle" class="ctitle">{_esc(title)}</text>',
           f'<line x1="{pl}" y1="{pt + h}" x2="{pl + w}" y2="{pt + h}" stroke="#888"/>',
           f'<text x="{pl - 4}" y="{pt + 8}" text-anchor="end" class="tick">1</text>']
    for i, name in enumerate(names):
        for j, (v, col) in enumerate(((a[i], "#4c72b0"), (b[i], "#dd8452"))):
            v = 0.0 if math.isnan(v) else v
            bh = h * v
            out.append(f'<rect x="{pl + i * bw + j * bw / 2 + 1:.1f}" y="{pt + h - bh:.1f}" width="{max(bw / 2 - 2, 1):.1f}" '
                       f'height="{bh:.1f}" fill="{col}"><title>{_esc(name)} {_esc(labels[j])}: {v:.3f}</title></rect>')
        x = pl + (i + 0.5) * bw
        out.append(f'<text transform="translate({x:.1f},{pt + h + 8}) rotate(50)" class="tick">{_esc(name)}</text>')
    out.append(f'<text x="{width - 150}" y="{pt + 10}" class="tick" fill="#4c72b0">■ {_esc(labels[0])}</text>'
               f'<text x="{width - 70}" y="{pt + 10}" class="tick" fill="#dd8452">■ {_esc(labels[1])}</text></svg>')
    return "".join(out)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_report(ann_dir, out=None, sae=None) -> Path:
    """Write ``report.html`` (default inside ``ann_dir``) and return its path."""
    data = collect(ann_dir)
    page = build_html(data, sae)
    out = Path(out) if out else Path(ann_dir) / "report.html"
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:12px 20px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;font-size:12px;color:#cfd8dc}
main{padding:12px 20px}.stats{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:10px}
.stat{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px 10px;min-width:110px}
.stat b{display:block;font-size:17px}.stat span{font-size:11px;color:#555}
.figs{display:flex;flex-wrap:wrap;gap:8px}.chart{background:#fff;border:1px solid #ddd;border-radius:6px}
.ctitle{font-size:12px;font-weight:600}.tick{font-size:10px;fill:#444}
#controls{margin:12px 0 6px}#search{width:320px;padding:5px}
table{border-collapse:collapse;background:#fff;font-size:12px;width:100%}
th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;white-space:nowrap}
th{position:sticky;top:0;background:#eceff1;cursor:pointer;user-select:none}th.asc:after{content:" ▲"}th.desc:after{content:" ▼"}
tbody tr:hover{background:#e3f2fd;cursor:pointer}.tablewrap{max-height:60vh;overflow:auto;border:1px solid #ddd}
#card{display:none;position:fixed;top:4%;left:6%;right:6%;bottom:4%;background:#fff;border:1px solid #999;border-radius:8px;
box-shadow:0 8px 30px rgba(0,0,0,.3);overflow:auto;padding:14px 18px;z-index:10}
#card h2{margin:0 0 8px;font-size:18px}#close{float:right;cursor:pointer;font-size:18px;border:none;background:none}
.logos{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-end}.logo{background:#fff;border:1px solid #eee}
.ex{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin:2px 0;white-space:pre}
.ex span{padding:0}.exmeta{color:#666;font-size:11px;font-family:system-ui,sans-serif}
#count{font-size:12px;color:#555;margin-left:8px}
td.ns,span.ns{color:#9e9e9e}svg.logo.ns{opacity:.45}.permalink{font-size:14px;color:#90a4ae;text-decoration:none}
#genome{min-height:120px;border:1px solid #eee;margin-top:6px}#locus{margin:4px 0;font-size:12px}
"""

_JS = r"""
(function(){
const D = JSON.parse(document.getElementById('data').textContent);
const COLS = Array.from(document.querySelectorAll('#ftable th')).map(th => th.dataset.type);
const tbody = document.querySelector('#ftable tbody');
let rows = D.rows.map(r => r.slice());
let sortCol = COLS.length - 1, sortDir = -1;
function val(r, i){ if (COLS[i] === 'str') return (r[i] || '').toLowerCase(); const v = parseFloat(r[i]); return isNaN(v) ? -Infinity : v; }
function render(){
  const q = document.getElementById('search').value.trim().toLowerCase();
  const shown = rows.filter(r => !q || r.join(' ').toLowerCase().includes(q));
  shown.sort((a, b) => { const x = val(a, sortCol), y = val(b, sortCol); return x < y ? -sortDir : x > y ? sortDir : 0; });
  const frag = document.createDocumentFragment();
  for (const r of shown.slice(0, 2000)) {
    const tr = document.createElement('tr'); tr.dataset.feature = r[0];
    for (let i = 0; i < r.length; i++) { const td = document.createElement('td'); let v = r[i];
      if (COLS[i] === 'num' && v !== '' && v !== 'NA') { const f = parseFloat(v); v = Math.abs(f) >= 1e-3 || f === 0 ? f.toPrecision(3) : f.toExponential(1); }
      td.textContent = v;
      if ((i >= 3 && i <= 6 && r[3] === 'none') || (i >= 7 && i <= 9 && r[7] === 'none')) td.className = 'ns';
      tr.appendChild(td); }
    frag.appendChild(tr);
  }
  tbody.replaceChildren(frag);
  document.getElementById('count').textContent = shown.length + ' of ' + rows.length + ' features';
  document.querySelectorAll('#ftable th').forEach((th, i) => { th.className = i === sortCol ? (sortDir > 0 ? 'asc' : 'desc') : ''; });
}
document.querySelectorAll('#ftable th').forEach((th, i) => th.addEventListener('click', () => {
  if (sortCol === i) sortDir = -sortDir; else { sortCol = i; sortDir = COLS[i] === 'str' || i === 0 ? 1 : -1; }
  render(); }));
document.getElementById('search').addEventListener('input', render);
tbody.addEventListener('click', e => { const tr = e.target.closest('tr'); if (tr) location.hash = 'feature-' + tr.dataset.feature; });
function closeCard(){
  document.getElementById('card').style.display = 'none';
  if (browser && window.igv) { window.igv.removeBrowser(browser); browser = null; }
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
}
document.getElementById('close').addEventListener('click', closeCard);
document.addEventListener('keydown', e => { if (e.key === 'Escape') closeCard(); });
function fromHash(){ const m = /^#feature-(\d+)$/.exec(location.hash); if (m && D.cards[m[1]]) openCard(m[1]); }
window.addEventListener('hashchange', fromHash);
const NS = 'http://www.w3.org/2000/svg', COLOR = {A:'#2ca02c', C:'#1f77b4', G:'#ff9f0e', T:'#d62728'};
function el(tag, attrs, parent){ const e = document.createElementNS(NS, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
function logo(probs, title, cls){
  const cw = 16, H = 80, pad = 18;
  const svg = el('svg', {width: Math.max(probs.length * cw + 30, 240), height: H + pad + 16, 'class': 'logo' + (cls ? ' ' + cls : '')});
  const t = el('text', {x: 4, y: 12, 'class': 'ctitle'}, svg); t.textContent = title;
  el('line', {x1: 26, y1: pad + H, x2: 26 + probs.length * cw, y2: pad + H, stroke: '#888'}, svg);
  const tk = el('text', {x: 2, y: pad + 8, 'class': 'tick'}, svg); tk.textContent = '2 bits';
  probs.forEach((p, j) => {
    let ic = 2; p.forEach(x => { if (x > 0) ic += x * Math.log2(x); });
    let y = pad + H;
    const order = [0, 1, 2, 3].sort((a, b) => p[a] - p[b]);
    for (const b of order) {
      const h = p[b] * ic / 2 * H; if (h < 0.5) continue;
      const letter = 'ACGT'[b];
      const tx = el('text', {x: 0, y: 0, fill: COLOR[letter], 'font-family': 'Arial,Helvetica,sans-serif', 'font-weight': 'bold',
        'font-size': 100, transform: `translate(${26 + j * cw},${y}) scale(${cw / 68},${h / 72})`}, svg);
      tx.textContent = letter; y -= h;
    }
  });
  return svg;
}
function histogram(h){
  const W = 300, H = 110, svg = el('svg', {width: W, height: H + 30, 'class': 'chart'});
  const t = el('text', {x: 6, y: 13, 'class': 'ctitle'}, svg); t.textContent = 'activation histogram (log count; bins of max)';
  const m = Math.max(1, ...h.map(c => Math.log10(c + 1))), bw = (W - 20) / Math.max(h.length, 1);
  h.forEach((c, i) => { const bh = Math.log10(c + 1) / m * (H - 20);
    const r = el('rect', {x: 10 + i * bw, y: H - bh, width: Math.max(bw - 1, 1), height: bh, fill: '#4c72b0'}, svg);
    const tt = el('title', {}, r); tt.textContent = c; });
  return svg;
}
function describe(c, r){
  const p = document.createElement('p'); p.className = 'exmeta';
  const motif = document.createElement('span');
  motif.textContent = c.sig ? `motif ${c.bm} ${c.bmn} (F1 ${c.bf}, q ${c.bq})` : `motif: none significant (best tested ${c.bm || '-'} ${c.bmn || ''}, F1 ${c.bf}, q ${c.bq} ≥ ${D.qlevel})`;
  if (!c.sig) motif.className = 'ns';
  const concept = document.createElement('span');
  concept.textContent = c.cs ? `; gene concept ${c.c} (F1 ${c.cf}, q ${c.cq})` : `; gene concept: none significant (best ${c.c || '-'}, q ${c.cq})`;
  if (!c.cs) concept.className = 'ns';
  const rest = document.createElement('span'); rest.textContent = `; top k-mer ${r[13] || '-'}; frequency ${r[1]}`;
  p.append(motif, concept, rest);
  return p;
}
let IGV = null, browser = null;
function loadIgv(){
  if (!IGV) IGV = (async () => {
    const bin = atob(document.getElementById('igvgz').textContent.trim());
    const bytes = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const text = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text();
    const s = document.createElement('script'); s.textContent = text; document.head.appendChild(s);
    return window.igv;
  })();
  return IGV;
}
function span(x){ const lo = x[3], hi = x[3] + x[4].length; return x.length > 6 ? [Math.min(lo, x[6][0]), Math.max(hi, x[6][0] + x[6][1].length)] : [lo, hi]; }
function genomeConfig(f, c){
  let fasta = '';
  const wig = [], seen = new Set();
  for (const x of c.x) {
    const len = D.lens[x[0]] || span(x)[1];
    fasta += `>${x[0]}:${x[3] + 1}-${x[3] + x[4].length} @len=${len}\n${x[4]}\n`;
    const [w0, digits] = x.length > 6 ? x[6] : [x[3], x[5]];
    for (let i = 0; i < digits.length; i++) { const v = parseInt(digits[i]) / 9 * x[2], key = x[0] + ':' + (w0 + i);
      if (v > 0 && !seen.has(key)) { seen.add(key); wig.push({chr: x[0], start: w0 + i, end: w0 + i + 1, value: v}); } }
  }
  wig.sort((a, b) => a.chr < b.chr ? -1 : a.chr > b.chr ? 1 : a.start - b.start);
  const genes = new Map();  // a gene near several examples is drawn once
  for (const x of c.x) { const [lo, hi] = span(x); for (const g of (D.genes[x[0]] || [])) if (g[0] < hi && g[1] > lo) genes.set(x[0] + ':' + g.join(':'), {chr: x[0], start: g[0], end: g[1], strand: g[2], name: g[3]}); }
  const hits = c.mh.map(h => ({chr: h[0], start: h[1], end: h[2], strand: h[3], name: h[4]}));
  const loci = c.x.map(x => { const [lo, hi] = span(x); return `${x[0]}:${lo + 1}-${hi}`; });
  return {loci, cfg: {reference: {id: 'genome', name: 'genome', fastaURL: 'data:text/plain;base64,' + btoa(fasta), indexed: false},
    loadDefaultGenomes: false, locus: loci[0], showNavigation: true, showTrackLabels: true,
    tracks: [{name: `feature ${f} activation`, type: 'wig', features: wig, color: '#c62828', height: 70, autoscale: true},
             {name: 'gene calls', type: 'annotation', displayMode: 'EXPANDED', features: Array.from(genes.values()), color: '#1565c0'},
             {name: 'motif hits (best / logo-matched motif)', type: 'annotation', displayMode: 'EXPANDED', features: hits, color: c.sig ? '#6a1b9a' : '#9e9e9e'}]}};
}
function genomeView(f, c, body){
  const h = document.createElement('h3'); h.textContent = 'Genome view around the top examples'; body.appendChild(h);
  if (!c.x.length) { const p = document.createElement('p'); p.textContent = 'no examples'; body.appendChild(p); return; }
  const {loci, cfg} = genomeConfig(f, c);
  const pick = document.createElement('select'); pick.id = 'locus';
  loci.forEach((l, i) => { const o = document.createElement('option'); o.value = l; o.textContent = `example ${i + 1}: ${l} (activation ${c.x[i][2]})`; pick.appendChild(o); });
  pick.addEventListener('change', () => { if (browser) browser.search(pick.value); });
  const host = document.createElement('div'); host.id = 'genome';
  body.append(pick, host);
  loadIgv().then(igv => igv.createBrowser(host, cfg)).then(b => {
    if (document.getElementById('genome') !== host) { window.igv.removeBrowser(b); return; }
    browser = b; host.dataset.ready = '1';
  }).catch(e => { host.textContent = 'genome view unavailable in this browser: ' + e; host.dataset.ready = 'failed'; });
}
function openCard(f){
  const c = D.cards[f]; if (!c) return;
  if (browser && window.igv) { window.igv.removeBrowser(browser); browser = null; }
  const card = document.getElementById('card'), body = document.getElementById('cardbody');
  body.replaceChildren();
  const r = D.rows.find(x => String(x[0]) === String(f));
  const h = document.createElement('h2'); h.textContent = 'Feature ' + f;
  const a = document.createElement('a'); a.href = '#feature-' + f; a.textContent = ' #'; a.className = 'permalink'; a.title = 'link to this card';
  h.appendChild(a); body.appendChild(h);
  body.appendChild(describe(c, r));
  const lg = document.createElement('div'); lg.className = 'logos';
  if (c.l) lg.appendChild(logo(c.l, 'feature logo (peak at column 21)'));
  if (c.ml) lg.appendChild(logo(c.ml, 'most similar motif logo: ' + c.m));
  if (c.bml && c.bm !== c.m) lg.appendChild(c.sig ? logo(c.bml, 'best concept motif: ' + c.bm) : logo(c.bml, 'best tested motif (not significant): ' + c.bm, 'ns'));
  lg.appendChild(histogram(c.h)); body.appendChild(lg);
  genomeView(f, c, body);
  const ht = document.createElement('h3'); ht.textContent = 'Top examples'; body.appendChild(ht);
  for (const x of c.x) {
    const d = document.createElement('div'); d.className = 'ex';
    const meta = document.createElement('div'); meta.className = 'exmeta';
    meta.textContent = `${x[0]}:${x[1]} activation ${x[2]}`; d.appendChild(meta);
    for (let i = 0; i < x[4].length; i++) { const s = document.createElement('span'); s.textContent = x[4][i];
      const a = parseInt(x[5][i] || '0') / 9; if (a > 0) s.style.background = `rgba(229,57,53,${a.toFixed(2)})`;
      s.className = a > 0 ? 'on' : ''; d.appendChild(s); }
    body.appendChild(d);
  }
  card.style.display = 'block';
}
render();
fromHash();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style></head>
<body><header><h1>{title}</h1><p>{prov}</p></header>
<main>
<section class="stats">{stats}</section>
<section class="figs">{figs}</section>
<div id="controls"><input id="search" type="search" placeholder="filter features (motif, concept, k-mer ...)"><span id="count"></span></div>
<div class="tablewrap"><table id="ftable"><thead><tr>{head}</tr></thead><tbody></tbody></table></div>
</main>
<div id="card"><button id="close" title="close">✕</button><div id="cardbody"></div></div>
<script id="data" type="application/json">{payload}</script>
<script id="igvgz" type="application/octet-stream">{igv}</script>
<script>{js}</script>
</body></html>
"""
