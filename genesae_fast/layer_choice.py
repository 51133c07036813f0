"""Which layer of the gene LM to annotate, chosen by data (``genesae run --layer auto``).

For each candidate layer a small SAE is trained and annotated on a slice of the genome, and
the layer whose features match the concepts best on average is kept. Only the *select* part of the
full run's held-out split is used: the slice is cut from the select blocks of the genome
(the same alternating blocks the full annotation chooses thresholds and best features on),
written as a FASTA of its own, and everything of the choice (extraction, SAE training,
annotation) runs on that file. The evaluate part, on which the run reports F1, is never
read, so the choice cannot leak into the reported scores.

Score of a layer (:func:`score_concepts`, :func:`pick`): the mean, over the concepts (motifs
and gene-structure concepts with at least one hit), of the best feature's F1, the F1 being
``concepts.tsv``'s (best feature chosen on one half of the slice, F1 measured on the other);
ties go to the larger number of concepts at F1 >= ``F1_LEVEL`` (0.3, the ``score`` column),
then to the shallower layer. Why the mean and not that count: on a slice few concepts reach
0.3, so the count moves by one or two with noise, and gene concepts, which every layer
matches, decide it. On the planted-motif genome (benchmarks/RESULTS.md) the count chose
layer 5 (4 concepts against 3) although layer 2 had the best mean (0.124 against
0.078-0.084) and gave 3/6 planted motifs at held-out F1 >= 0.3 against 0/6 at layer 3;
on the bundled genome both rules choose layer 2.

Candidates: the given list, else for a model that reports receptive fields every layer
whose receptive field is 3..63 bp (the built-in CNN: blocks 1-5), else up to five layers
spread over the depth. Results go to ``DIR/layers/`` (one folder per layer) and
``DIR/layers.tsv`` (complete or absent: it is the stage's completion marker).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genesae_fast.errors import InputError

LAYERS_FILE = "layers.tsv"
CHOICE_DIR = "layers"
F1_LEVEL = 0.3
RF_RANGE_BP = (3, 63)      # receptive fields worth trying: a base's neighbours up to a long motif
MAX_SPREAD = 5             # candidates of a model without receptive fields
MIN_PIECE_BP = 200         # select pieces shorter than this are left out of the slice
COLUMNS = ("layer", "receptive_field_bp", "score", "mean_best_f1", "concepts", "motif_f1_ge_0.3",
           "gene_f1_ge_0.3", "best_concept", "best_f1", "fvu", "l0", "seconds", "chosen")
RULE = (f"highest mean best-feature F1 over the concepts on the select split "
        f"(ties: more concepts at F1 >= {F1_LEVEL}, then the shallower layer)")


def parse_layer_spec(value):
    """``--layer``: "auto" (or None), one layer number, or a comma-separated list.

    Returns
    -------
    "auto", int, or tuple of int (sorted, unique; a list of one is that int)

    Raises
    ------
    InputError
        One line naming the value, for anything else (negative numbers, empty items, words).
    """
    if value is None:
        return "auto"
    if isinstance(value, bool):
        raise InputError(f"--layer {value!r}: expected 'auto', a layer number or a list such as 2,3")
    if isinstance(value, (int, np.integer)):
        return _one_layer(int(value), value)
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        text = str(value).strip()
        if text.lower() == "auto":
            return "auto"
        items = text.split(",")
    layers = []
    for item in items:
        item = item.strip()
        if not item.isdigit():
            raise InputError(f"--layer {value}: expected 'auto', a layer number or a list such as 2,3 "
                             f"(bad item {item!r})")
        layers.append(int(item))
    layers = sorted(set(layers))
    return layers[0] if len(layers) == 1 else tuple(layers)


def _one_layer(layer: int, value) -> int:
    if layer < 0:
        raise InputError(f"--layer {value}: must be 0 or more (0 = embeddings, i = output of block i)")
    return layer


def receptive_fields(model) -> list | None:
    """Receptive field in bp of layers 0..n_layers, when the model reports them; else None."""
    info = model.layer_info() if callable(getattr(model, "layer_info", None)) else {}
    rf = (info or {}).get("receptive_field_bp")
    if rf is None:
        rf = getattr(model, "receptive_fields", None)
        rf = rf() if callable(rf) else rf
    return None if rf is None else [int(x) for x in rf]


def candidate_layers(model, spec) -> list[int]:
    """The layers a choice tries: ``spec`` (tuple) checked against the model, else the defaults
    (receptive field in :data:`RF_RANGE_BP`, or up to :data:`MAX_SPREAD` spread over the depth)."""
    n = int(model.n_layers)
    if isinstance(spec, tuple):
        bad = [x for x in spec if not 0 <= x <= n]
        if bad:
            raise InputError(f"--layer {','.join(map(str, spec))}: layer {bad[0]} is out of range for "
                             f"{model.name} (valid layers 0..{n})")
        return list(spec)
    rf = receptive_fields(model)
    if rf is not None:
        lo, hi = RF_RANGE_BP
        picked = [i for i in range(1, n + 1) if i < len(rf) and lo <= rf[i] <= hi]
        if picked:
            return picked
    return sorted({int(round(x)) for x in np.linspace(1, n, min(n, MAX_SPREAD))}) if n else [0]


@dataclass
class ChoiceSettings:
    """Sizes of the choice: bases of the slice, SAE tokens and shape per layer."""

    budget_bp: int = 300_000
    train_tokens: int = 300_000
    expansion: int = 16
    k: int = 8
    batch: int = 1024

    def estimate_seconds(self, n_layers: int, rates: dict) -> float:
        """Rough seconds of the whole choice from per-token stage rates (as the run's plan)."""
        per = (self.budget_bp / rates["extract"] + self.train_tokens / rates["train"]
               + self.budget_bp / rates["annotate"])
        return n_layers * per


def select_pieces(genome, *, split_block: int, covered_bp: int, budget_bp: int) -> list[tuple[str, int, int]]:
    """Pieces ``(record, start, end)`` of the select part (even split blocks, global coordinates
    of the records laid end to end) inside the first ``covered_bp`` bases, in genome order,
    until ``budget_bp`` bases; pieces under :data:`MIN_PIECE_BP` are skipped."""
    from genesae_fast.extract import stream_records

    pieces, total, off = [], 0, 0
    for rec in stream_records(genome):
        end = min(off + len(rec), covered_bp)
        g = off
        while g < end and total < budget_bp:
            b = g // split_block
            g1 = min((b + 1) * split_block, end, g + budget_bp - total)
            if b % 2 == 0 and g1 - g >= MIN_PIECE_BP:
                pieces.append((rec.name, g - off, g1 - off))
                total += g1 - g
            g = (b + 1) * split_block if b % 2 else g1
        off += len(rec)
        if off >= covered_bp or total >= budget_bp:
            break
    return pieces


def write_select_genome(genome, path, pieces) -> int:
    """The select pieces as a FASTA (``>record:start-end``), atomically; returns its bases."""
    from genesae_fast.extract import stream_records
    from genesae_fast.outputs import open_output

    if not pieces:
        raise InputError(f"{genome}: too small to choose a layer on (no select-split piece of {MIN_PIECE_BP} bp); "
                         "give --layer N")
    wanted = {}
    for name, a, b in pieces:
        wanted.setdefault(name, []).append((a, b))
    total = 0
    with open_output(path, "w") as fh:
        for rec in stream_records(genome):
            seq = rec.sequence
            for a, b in wanted.get(rec.name, []):
                fh.write(f">{rec.name}:{a}-{b}\n")
                for i in range(a, b, 60):
                    fh.write(seq[i:min(i + 60, b)] + "\n")
                total += b - a
    return total


def score_concepts(concepts: dict) -> dict:
    """A layer's score from its ``concepts.tsv`` columns (string lists from ``read_tsv``)."""
    n_hits = np.array([int(x) for x in concepts.get("n_hits", [])], dtype=np.int64)
    f1 = np.nan_to_num(np.array([float(x) if x != "NA" else np.nan for x in concepts.get("f1", [])]))
    kind = np.array(concepts.get("kind", []), dtype=object)
    has = n_hits > 0
    good = has & (f1 >= F1_LEVEL)
    best = int(np.argmax(np.where(has, f1, -1))) if has.any() else -1
    return {"score": int(good.sum()), "mean_best_f1": float(f1[has].mean()) if has.any() else 0.0,
            "concepts": int(has.sum()), "motif_f1_ge_0.3": int((good & (kind == "motif")).sum()),
            "gene_f1_ge_0.3": int((good & (kind == "gene")).sum()),
            "best_concept": concepts["concept"][best] if best >= 0 else "",
            "best_f1": float(f1[best]) if best >= 0 else 0.0}


def pick(rows: list[dict]) -> int:
    """The chosen layer: highest mean best F1, then more concepts at F1 >= 0.3 (``score``),
    then the shallower layer."""
    return int(min(rows, key=lambda r: (-r["mean_best_f1"], -r["score"], r["layer"]))["layer"])


def light_config(seed: int, threads: int, block: int | None = None):
    """The annotation settings of a choice (and of extra seeds): F1s as the full annotation
    computes them (same thresholds, same split for the same ``block``), without its
    significance controls, neuron baseline, tracks or logos."""
    from genesae_fast.annotate.core import Config

    return Config(neurons=False, n_shuffles=0, gene_shifts=0, n_tracks=0, n_examples=1, n_logo_peaks=20,
                  seed=seed, threads=threads, block=block)


@dataclass
class Choice:
    """Where and how one choice runs."""

    folder: Path
    model: object
    settings: ChoiceSettings
    motifs: str | None
    seed: int = 0
    threads: int = 1
    device: object = None
    progress: bool = False


def run_layer(job: Choice, fasta: Path, layer: int, rf: list | None) -> dict:
    """Extract, train and annotate one layer on the select FASTA; its row of ``layers.tsv``.

    Each step is skipped when its output is complete (annotation ``summary.json``), and the
    layer's store is deleted once annotated (it is the biggest file and not needed after)."""
    import shutil

    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.extract import extract_to_store
    from genesae_fast.train import train_sae

    d = job.folder / f"L{layer}"
    ann, store, sae = d / "annotate", d / "store.zarr", d / "sae"
    t0 = time.perf_counter()
    if not (ann / "summary.json").is_file():
        s = job.settings
        extract_to_store(fasta, job.model, layer, store, progress=job.progress, device=job.device, workers=1)
        if not (sae / "sae.safetensors").is_file() or (sae / "trainer_state.pt").exists():
            try:
                train_sae(store, sae, expansion=s.expansion, k=s.k, batch_size=s.batch, tokens=s.train_tokens,
                          seed=job.seed, device=job.device, progress=job.progress, lm_loss=False)
            except InputError as exc:  # e.g. a layer that is constant on the slice: it cannot win, the run goes on
                shutil.rmtree(store, ignore_errors=True)
                return _unusable_row(layer, rf, str(exc), time.perf_counter() - t0)
        annotate(store, sae, ann, genome=fasta, motifs=job.motifs, cfg=light_config(job.seed, job.threads),
                 progress=job.progress, overwrite=True, workers=1)
    shutil.rmtree(store, ignore_errors=True)
    summary = json.loads((ann / "summary.json").read_text())
    row = {"layer": int(layer), "receptive_field_bp": rf[layer] if rf is not None and layer < len(rf) else "NA",
           **score_concepts(read_tsv(ann / "concepts.tsv")), "fvu": float(summary.get("fvu", np.nan)),
           "l0": float(summary.get("l0", np.nan)), "seconds": round(time.perf_counter() - t0, 2)}
    return row


def _unusable_row(layer: int, rf: list | None, why: str, seconds: float) -> dict:
    """The ``layers.tsv`` row of a layer no SAE could be trained on (score 0 and mean best F1 -1, so never chosen
    over a usable layer; ``best_concept`` says why)."""
    return {"layer": int(layer), "receptive_field_bp": rf[layer] if rf is not None and layer < len(rf) else "NA",
            "score": 0, "mean_best_f1": -1.0, "concepts": 0, "motif_f1_ge_0.3": 0, "gene_f1_ge_0.3": 0,
            "best_concept": f"(unusable: {why.split(': ', 1)[-1][:80]})", "best_f1": 0.0, "fvu": float("nan"),
            "l0": float("nan"), "seconds": round(seconds, 2)}


def choose_layer(genome, job: Choice, candidates: list[int], *, split_block: int, covered_bp: int,
                 echo=print) -> dict:
    """Run the choice over ``candidates``; write ``layers.tsv`` beside ``job.folder``.

    Parameters
    ----------
    genome : the run's FASTA
    job : Choice (``job.folder``: the per-layer work folders go there)
    candidates : layers to try (:func:`candidate_layers`)
    split_block : block size of the full run's select/evaluate split (bp)
    covered_bp : bases the full run's store will cover (its select part is inside them)

    Returns
    -------
    dict
        :func:`read_choice` of the written table.
    """
    job.folder.mkdir(parents=True, exist_ok=True)
    pieces = select_pieces(genome, split_block=split_block, covered_bp=covered_bp,
                           budget_bp=job.settings.budget_bp)
    fasta = job.folder / "select.fa"
    bases = write_select_genome(genome, fasta, pieces)
    _forget_other_choices(job, fasta)
    rf = receptive_fields(job.model)
    rows = []
    for layer in candidates:
        echo(f"  layer {layer}: {bases:,} select bases")
        rows.append(run_layer(job, fasta, int(layer), rf))
    chosen = pick(rows)
    for r in rows:
        r["chosen"] = int(r["layer"] == chosen)
    write_layers_tsv(rows, job.folder.parent / LAYERS_FILE,
                     meta={"split_block_bp": split_block, "select_bp": bases, "rule": RULE})
    return read_choice(job.folder.parent)


def _forget_other_choices(job: Choice, fasta: Path) -> None:
    """Drop per-layer results of a choice made with other inputs or settings (a resumed choice
    reuses only its own): the key of this one is kept in ``choice.json``."""
    import dataclasses
    import shutil

    from genesae_fast.outputs import open_output
    from genesae_fast.sequences import file_sha256

    key = {"select_sha256": file_sha256(fasta), "settings": dataclasses.asdict(job.settings), "motifs": job.motifs,
           "seed": job.seed, "model": dict(getattr(job.model, "identity", {}) or {})}
    path = job.folder / "choice.json"
    old = json.loads(path.read_text()) if path.is_file() else None
    if old == key:
        return
    for d in job.folder.glob("L*"):
        shutil.rmtree(d, ignore_errors=True)
    with open_output(path, "w") as fh:
        json.dump(key, fh, indent=1)


def write_layers_tsv(rows: list[dict], path, *, meta: dict) -> None:
    """``layers.tsv``: ``#`` lines of settings, then one row per layer (atomic)."""
    from genesae_fast.outputs import open_output

    def fmt(v):
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    with open_output(path, "w") as fh:
        for key, val in meta.items():
            fh.write(f"# {key}: {val}\n")
        fh.write("\t".join(COLUMNS) + "\n")
        for r in rows:
            fh.write("\t".join(fmt(r[c]) for c in COLUMNS) + "\n")


def read_choice(out) -> dict | None:
    """``out/layers.tsv`` as ``{"layer", "candidates", "rows", "rule", ...}``; None when absent."""
    path = Path(out) / LAYERS_FILE
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    meta = dict(ln[2:].split(": ", 1) for ln in lines if ln.startswith("# "))
    table = [ln.split("\t") for ln in lines if not ln.startswith("#")]
    head, body = table[0], table[1:]
    rows = [dict(zip(head, r)) for r in body]
    chosen = [int(r["layer"]) for r in rows if r["chosen"] == "1"]
    return {"layer": chosen[0], "candidates": [int(r["layer"]) for r in rows],
            "scores": {int(r["layer"]): int(r["score"]) for r in rows},
            "mean_f1": {int(r["layer"]): float(r["mean_best_f1"]) for r in rows}, "rule": meta.get("rule", RULE),
            "select_bp": int(meta.get("select_bp", 0)), "split_block_bp": int(meta.get("split_block_bp", 0)),
            "rows": rows}


def describe_choice(choice: dict) -> str:
    """One line for the terminal summary and the report."""
    return (f"layer {choice['layer']} chosen by data from {len(choice['candidates'])} candidates on "
            f"{choice['select_bp']:,} select-split bases ({per_layer_text(choice)})")


def per_layer_text(choice: dict) -> str:
    """Each candidate's mean best F1 and concepts at F1 >= 0.3, e.g. ``2: 0.124 (3), 3: 0.084 (3)``.
    A summary written before the mean was recorded gives the counts alone."""
    means = choice.get("mean_f1") or {}
    parts = [f"{layer}: {float(means[layer]):.3f} ({n})" if layer in means else f"{layer}: ({n})"
             for layer, n in choice["scores"].items()]
    return f"mean best F1 (concepts with F1 >= {F1_LEVEL}) per layer: " + ", ".join(parts)


__all__ = ["parse_layer_spec", "candidate_layers", "choose_layer", "read_choice", "describe_choice", "per_layer_text",
           "ChoiceSettings", "Choice", "LAYERS_FILE", "F1_LEVEL", "RULE"]
