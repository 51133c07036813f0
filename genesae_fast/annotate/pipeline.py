"""``genesae run``: extract, train, annotate and report, each stage skipped when done.

Outputs ``DIR/store.zarr``, ``DIR/sae/``, ``DIR/annotate/`` (with ``report.html``). Each
stage checks its own completion marker, and extraction and training resume themselves, so
rerunning after a crash continues where it stopped. Stage times go to ``DIR/run.json``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from genesae_fast.errors import InputError

DEFAULT_MOTIFS = "jaspar2024:CORE:vertebrates"


@dataclass
class RunSettings:
    """Defaults of ``genesae run`` (full) and of ``--quick``.

    From notes/sae-motif-calibration.md: a layer whose receptive field is about a motif's
    width (``extract.default_layer``), small k (8 at d = 48), 16x latents.
    """

    max_tokens: int | None = None
    expansion: int = 16
    k: int = 8
    batch: int = 4096
    epochs: float = 3.0          # training tokens = epochs x store rows ...
    max_train_tokens: int = 2_000_000  # ... capped: CPU training runs at a few k tokens/s
    neurons: bool = True

    @classmethod
    def quick(cls) -> "RunSettings":
        """A 250 kbp slice (about 230 genes) and a small SAE trained on 150k tokens: one to two
        minutes on 2 CPU cores."""
        return cls(max_tokens=250_000, expansion=8, k=8, batch=1024, epochs=1.0, max_train_tokens=150_000)


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


def run_pipeline(out="genesae_run", genome=None, model="builtin", layer=None, motifs=DEFAULT_MOTIFS, quick=False,
                 gff=None, threads=None, seed=0, device=None, progress=True, settings: RunSettings | None = None,
                 echo=print) -> dict:
    """Run every stage into ``out``; returns the annotation summary plus stage times.

    Parameters
    ----------
    out : output folder
    genome : FASTA (default: the bundled genome)
    model : "builtin" or a model folder
    layer : model layer (default: chosen by receptive field, ``extract.default_layer``)
    motifs : motif SPEC or file; "" or None for none
    quick : a slice of the genome and a small SAE (a demonstration)
    """
    import os

    from genesae_fast.annotate.core import Config
    from genesae_fast.annotate.folder import MARKER, annotate
    from genesae_fast.annotate.report import write_report

    if genome is None:
        from genesae_fast.data import genome_path

        genome = str(genome_path())
    s = settings or (RunSettings.quick() if quick else RunSettings())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store_p, sae_p, ann_p = out / "store.zarr", out / "sae", out / "annotate"
    times_file = out / "run.json"
    times = json.loads(times_file.read_text()).get("stage_seconds", {}) if times_file.is_file() else {}

    def stage(name, done, fn):
        if done():
            echo(f"[{name}] already complete, skipped")
            return
        echo(f"[{name}] ...")
        t0 = time.perf_counter()
        fn()
        times[name] = round(time.perf_counter() - t0, 2)
        times_file.write_text(json.dumps({"stage_seconds": times, "quick": bool(quick)}, indent=2))

    def do_extract():
        from genesae_fast.extract import extract_to_store

        extract_to_store(genome, model, layer, store_p, max_tokens=s.max_tokens, progress=progress, device=device)

    def do_train():
        from genesae_fast.store import ActivationStore
        from genesae_fast.train import train_sae

        rows = ActivationStore.open(store_p).n_rows
        train_sae(store_p, sae_p, expansion=s.expansion, k=s.k, batch_size=s.batch, tokens=int(min(s.epochs * rows, s.max_train_tokens)),
                  seed=seed, device=device, progress=progress, lm_loss=False)

    def do_annotate():
        cfg = Config(neurons=s.neurons, threads=int(threads or os.cpu_count() or 1), seed=seed)
        annotate(store_p, sae_p, ann_p, genome=genome, motifs=motifs or None, gff=gff, cfg=cfg, progress=progress,
                 overwrite=True)

    def report_done():
        r, m = ann_p / "report.html", ann_p / MARKER
        return r.is_file() and m.is_file() and r.stat().st_mtime >= m.stat().st_mtime

    stage("extract", lambda: _store_complete(store_p), do_extract)
    stage("train", lambda: _sae_complete(sae_p), do_train)
    stage("annotate", lambda: (ann_p / MARKER).is_file(), do_annotate)
    stage("report", report_done, lambda: write_report(ann_p, sae=sae_p))
    summary = json.loads((ann_p / MARKER).read_text())
    summary["stage_seconds"] = times
    summary["report"] = str(ann_p / "report.html")
    return summary


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
    st = summary.get("stage_seconds") or {}
    if st:
        lines.append("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    lines.append(f"report: {summary.get('report')}")
    return "\n".join(lines)
