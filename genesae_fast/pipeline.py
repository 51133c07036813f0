"""``genesae run``: extract, train, annotate and report, each stage skipped when done.

Outputs ``DIR/store.zarr``, ``DIR/sae/``, ``DIR/annotate/`` (with ``report.html``). Each
stage checks its own completion marker, and extraction and training resume themselves, so
rerunning after a crash continues where it stopped. Stage times go to ``DIR/run.json``.

Before any work the run prints its plan (:func:`make_plan`): genome size, tokens each
stage handles, training tokens and a rough time per stage from per-token rates. The
default number of training tokens grows with the genome (:meth:`RunSettings.train_tokens`):
one pass over the extracted tokens, at least 2M (several passes on a small genome) and at
most 100M (a fixed budget beyond 100 Mbp; more passes add little to a TopK SAE).

This module sits above the stages (cli -> pipeline -> extract / train / annotate); no
stage imports another.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from genesae_fast.errors import InputError

DEFAULT_MOTIFS = "jaspar2024:CORE:vertebrates"
STAGES = ("extract", "train", "annotate", "causal", "report")
SUMMARY = "summary.json"  # the annotation folder's completion marker (annotate.folder.MARKER)

# Tokens per second of the built-in model's stages on an idle 2-core VM (issue 12's
# measurements of `genesae run` on the bundled genome: extract 7.5 s on one core, train
# 10.4 s for 2M tokens, annotate 68.6 s). Only the plan's rough estimates use them;
# extraction scales with its worker processes.
RATES = {"extract": 300_000.0, "train": 190_000.0, "annotate": 36_000.0, "report": 2_000_000.0}


@dataclass
class RunSettings:
    """Defaults of ``genesae run`` (full) and of ``--quick``.

    From notes/sae-motif-calibration.md: a layer whose receptive field is about a motif's
    width (``extract.default_layer``), small k (8 at d = 48), 16x latents. Training tokens:
    ``train_passes`` passes over the store, clamped to ``[min_train_tokens, max_train_tokens]``,
    unless ``train_tokens_override`` is set.
    """

    max_tokens: int | None = None
    expansion: int = 16
    k: int = 8
    batch: int = 4096
    train_passes: float = 1.0
    min_train_tokens: int = 2_000_000
    max_train_tokens: int = 100_000_000
    train_tokens_override: int | None = None
    neurons: bool = True
    causal: bool | None = None      # the causal stage: None = on for the built-in model only
    causal_pairs: int = 20          # (feature, concept) pairs it tests (bounds its time)
    causal_sites: int = 200         # held-out sites per pair

    @classmethod
    def quick(cls) -> "RunSettings":
        """A 250 kbp slice (about 230 genes) and a small SAE trained on 150k tokens: one to two
        minutes on 2 CPU cores."""
        return cls(max_tokens=250_000, expansion=8, k=8, batch=1024, min_train_tokens=150_000,
                   max_train_tokens=150_000, causal_pairs=10, causal_sites=100)

    def train_tokens(self, rows: int) -> int:
        """Training tokens for a store of ``rows`` tokens."""
        if self.train_tokens_override is not None:
            return int(self.train_tokens_override)
        return int(min(max(self.train_passes * rows, self.min_train_tokens), self.max_train_tokens))


@dataclass
class Plan:
    """What a run will do, known before any work: sizes and rough stage times."""

    genome: str
    genome_bp: int
    n_records: int
    tokens: int                 # rows of the store (extraction, annotation)
    train_tokens: int
    workers: int
    seconds: dict               # stage -> estimated seconds (built-in model rates)
    done: dict                  # stage -> already complete

    def describe(self, model: str = "builtin") -> str:
        """The plan as the lines ``genesae run`` prints."""
        passes = self.train_tokens / max(self.tokens, 1)
        head = (f"plan: genome {self.genome} ({self.genome_bp:,} bp in {self.n_records} "
                f"record{'s' if self.n_records != 1 else ''}), {self.workers} worker{'s' if self.workers != 1 else ''}")
        what = {"extract": f"{self.tokens:,} tokens",
                "train": f"{self.train_tokens:,} tokens ({passes:.2g} pass{'' if passes == 1 else 'es'})",
                "annotate": f"{self.tokens:,} tokens", "report": "HTML atlas"}
        lines = [head] + [f"  {k:<9} {v}  " + ("(already complete)" if self.done.get(k) else
                                                f"~{_fmt_seconds(self.seconds[k])}") for k, v in what.items()]
        todo = sum(v for k, v in self.seconds.items() if not self.done.get(k))
        note = "" if model == "builtin" else " (rates of the built-in model; a larger model extracts slower)"
        lines.append(f"  estimated total ~{_fmt_seconds(todo)} on CPU{note}")
        return "\n".join(lines)


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def genome_size(path) -> tuple[int, int]:
    """(bases, records) of a FASTA file (plain or gzip), streamed line by line: the plan
    must not hold the genome. Raises :class:`InputError` for a missing or unreadable file."""
    import gzip

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: is not a file, expected a FASTA file")
    bp = records = 0
    with open(p, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(p, "rb") if gz else open(p, "rb")) as fh:
            for line in fh:
                if line.startswith(b">"):
                    records += 1
                elif not line.startswith(b";"):
                    bp += len(line.strip())
    except (OSError, EOFError) as exc:
        raise InputError(f"{p}: unreadable ({exc})") from None
    return bp, records


def _store_rows(path: Path) -> int | None:
    if not (path / "zarr.json").is_file():
        return None
    from genesae_fast.store import ActivationStore

    try:
        return int(ActivationStore.open(path).n_rows)
    except InputError:
        return None


def estimate_seconds(tokens: int, train_tokens: int, workers: int) -> dict:
    """Rough seconds per stage from :data:`RATES` (extraction spread over ``workers``)."""
    return {"extract": tokens / (RATES["extract"] * max(1, int(workers))),
            "train": train_tokens / RATES["train"],
            "annotate": tokens / RATES["annotate"],
            "report": tokens / RATES["report"]}


def make_plan(out, genome, settings: "RunSettings", workers: int | None, done: dict) -> Plan:
    """The plan of a run: genome size, tokens per stage, training tokens, stage estimates.

    The token count is the finished store's when there is one, else the genome's bases
    (every shipped model tokenises one token per base), capped by ``settings.max_tokens``.
    ``workers`` None: what extraction picks by default (all cores, fewer for a small genome).
    """
    from genesae_fast.extract import MIN_ROWS_PER_WORKER

    bp, n_rec = genome_size(genome)
    rows = _store_rows(Path(out) / "store.zarr")
    if rows is None:
        rows = bp if settings.max_tokens is None else min(bp, int(settings.max_tokens))
    train = settings.train_tokens(rows)
    w = int(workers) if workers else min(os.cpu_count() or 1, max(1, rows // MIN_ROWS_PER_WORKER))
    return Plan(str(genome), bp, n_rec, rows, train, w, estimate_seconds(rows, train, w), done)


def _store_complete(path: Path) -> bool:
    if not (path / "zarr.json").is_file():
        return False
    from genesae_fast.store import ActivationStore

    try:
        return bool(ActivationStore.open(path).complete)
    except InputError:
        return False


def _sae_complete(path: Path) -> bool:
    return (path / "sae.safetensors").is_file() and not (path / "trainer_state.pt").exists()


@dataclass
class _Paths:
    out: Path

    @property
    def store(self) -> Path:
        return self.out / "store.zarr"

    @property
    def sae(self) -> Path:
        return self.out / "sae"

    @property
    def ann(self) -> Path:
        return self.out / "annotate"

    @property
    def times(self) -> Path:
        return self.out / "run.json"


def _completion(p: _Paths) -> dict:
    """Stage -> is its output complete (so the stage is skipped)."""
    r, m = p.ann / "report.html", p.ann / SUMMARY
    return {"extract": _store_complete(p.store), "train": _sae_complete(p.sae), "annotate": m.is_file(),
            "report": r.is_file() and m.is_file() and r.stat().st_mtime >= m.stat().st_mtime,
            "causal": (p.ann / "causal.tsv").is_file()}


def run_pipeline(out="genesae_run", genome=None, model="builtin", layer=None, *, motifs=DEFAULT_MOTIFS,
                 quick=False, gff=None, threads=None, workers=None, seed=0, device=None, progress=True,
                 settings: RunSettings | None = None, only=None, echo=print) -> dict:
    """Run every stage into ``out``; returns the annotation summary plus stage times.

    Parameters
    ----------
    out : output folder
    genome : FASTA (default: the bundled genome)
    model : "builtin" or a model folder
    layer : model layer (default: chosen by receptive field, ``extract.default_layer``)
    motifs : motif SPEC or file; "" or None for none
    quick : a slice of the genome and a small SAE (a demonstration)
    threads : native threads of the annotation (default: all cores)
    workers : extraction worker processes (default: all cores)
    settings : sizes and training tokens (default ``RunSettings()`` or ``RunSettings.quick()``)
    only : run only these stages (names from ``STAGES``); the others are left as they are
    echo : where the plan and stage messages go

    Returns
    -------
    dict
        The annotation summary (``summary.json``) with ``stage_seconds`` and ``report``;
        only ``stage_seconds`` while the annotation is not done.
    """
    if genome is None:
        from genesae_fast.data import genome_path

        genome = str(genome_path())
    s = settings or (RunSettings.quick() if quick else RunSettings())
    cores = os.cpu_count() or 1
    paths = _Paths(Path(out))
    paths.out.mkdir(parents=True, exist_ok=True)
    done = _completion(paths)
    plan = make_plan(paths.out, genome, s, workers, done)
    echo(plan.describe(model))
    stages = {
        "extract": lambda: _extract(genome, model, layer, paths, s, workers=workers, device=device, progress=progress),
        "train": lambda: _train(paths, s, seed=seed, device=device, progress=progress),
        "annotate": lambda: _annotate(genome, paths, s, motifs=motifs, gff=gff, threads=int(threads or cores),
                                      seed=seed, progress=progress),
        "causal": lambda: _causal(paths, s, seed=seed, device=device, progress=progress),
        "report": lambda: _report(paths),
    }
    if not (s.causal if s.causal is not None else _builtin_family(model)):
        del stages["causal"]  # other models: only where asked (`genesae causal` or settings.causal)
    if only is not None:
        unknown = sorted(set(only) - set(STAGES))
        if unknown:
            raise InputError(f"--stages {','.join(only)}: unknown stage {unknown[0]} (choose from {','.join(STAGES)})")
        stages = {k: v for k, v in stages.items() if k in only}
    _run_stages(stages, paths, plan, quick=quick, echo=echo)
    times = json.loads(paths.times.read_text()).get("stage_seconds", {}) if paths.times.is_file() else {}
    if not (paths.ann / SUMMARY).is_file():
        return {"stage_seconds": times}
    summary = json.loads((paths.ann / SUMMARY).read_text())
    summary["stage_seconds"] = times
    summary["report"] = str(paths.ann / "report.html")
    return summary


def _run_stages(stages: dict, paths: _Paths, plan: Plan, *, quick: bool, echo) -> None:
    """Run each stage whose output is not complete; its seconds go to ``run.json``."""
    times = json.loads(paths.times.read_text()).get("stage_seconds", {}) if paths.times.is_file() else {}
    for name, fn in stages.items():
        if _completion(paths)[name]:
            echo(f"[{name}] already complete, skipped")
            continue
        echo(f"[{name}] ...")
        t0 = time.perf_counter()
        fn()
        times[name] = round(time.perf_counter() - t0, 2)
        paths.times.write_text(json.dumps({"stage_seconds": times, "quick": bool(quick),
                                           "plan": {"tokens": plan.tokens, "train_tokens": plan.train_tokens,
                                                    "genome_bp": plan.genome_bp, "workers": plan.workers}}, indent=2))


def _extract(genome, model, layer, paths: _Paths, s: RunSettings, *, workers, device, progress):
    from genesae_fast.extract import extract_to_store

    extract_to_store(genome, model, layer, paths.store, max_tokens=s.max_tokens, progress=progress, device=device,
                     workers=workers)


def _train(paths: _Paths, s: RunSettings, *, seed, device, progress):
    from genesae_fast.store import ActivationStore
    from genesae_fast.train import train_sae

    rows = ActivationStore.open(paths.store).n_rows
    train_sae(paths.store, paths.sae, expansion=s.expansion, k=s.k, batch_size=s.batch, tokens=s.train_tokens(rows),
              seed=seed, device=device, progress=progress, lm_loss=False)


def _annotate(genome, paths: _Paths, s: RunSettings, *, motifs, gff, threads, seed, progress):
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.core import Config

    cfg = Config(neurons=s.neurons, threads=threads, seed=seed)
    annotate(paths.store, paths.sae, paths.ann, genome=genome, motifs=motifs or None, gff=gff, cfg=cfg,
             progress=progress, overwrite=True)


def _builtin_family(model) -> bool:
    """The built-in model or a `genesae lm train` folder (the CNN the causal stage runs by default)."""
    return str(model) == "builtin" or (Path(str(model)) / "lm_config.json").is_file()


def _causal(paths: _Paths, s: RunSettings, *, seed, device, progress):
    from genesae_fast.causal import run_causal

    run_causal(paths.out, n_pairs=s.causal_pairs, max_sites=s.causal_sites, seed=seed, device=device,
               progress=progress)


def _report(paths: _Paths):
    from genesae_fast.annotate import write_report

    write_report(paths.ann, sae=paths.sae)


def format_summary(summary: dict) -> str:
    """The terminal summary printed at the end of ``genesae run``."""
    lines = [
        f"SAE: {summary.get('n_features')} features, FVU {summary.get('fvu', float('nan')):.4f}, "
        f"L0 {summary.get('l0', float('nan')):.2f}, dead fraction {summary.get('dead_fraction', float('nan')):.3f}",
        f"features with a significant concept (q <= {summary.get('qvalue_level', 0.05)}): "
        f"{summary.get('features_with_any_concept')} of {summary.get('features_tested')} tested "
        f"({summary.get('features_with_motif')} motif, {summary.get('features_with_gene_concept')} gene structure)",
        f"concepts with held-out F1 >= 0.5: SAE features {summary.get('concepts_sae_f1_ge_0.5')}, "
        f"neurons {summary.get('concepts_neuron_f1_ge_0.5')}; the best SAE feature beats the best neuron on "
        f"{summary.get('concepts_sae_beats_neuron')} concepts",
    ]
    best = summary.get("best") or []
    if best:
        lines.append("best features (held-out F1, q-value):")
        for b in best[:10]:
            lines.append(f"  feature {b['feature']:>5}  {b['concept']:<34} F1 {b['f1']:.3f}  q {b['qvalue']:.2g}")
    if "causal_pairs_tested" in summary:
        lines.append(f"causal evidence: {summary['causal_pairs_specific']} of {summary['causal_pairs_tested']} "
                     "(feature, concept) pairs specific (ablation raises LM bits at the sites more than at random "
                     "positions and more than a random feature; both 95% CIs above 1), annotate/causal.tsv")
    st = summary.get("stage_seconds") or {}
    if st:
        lines.append("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    lines.append(f"report: {summary.get('report')}")
    return "\n".join(lines)


__all__ = ["run_pipeline", "RunSettings", "Plan", "make_plan", "format_summary", "DEFAULT_MOTIFS"]
