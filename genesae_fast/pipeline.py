"""``genesae run``: extract, train, annotate and report, each stage skipped when done.

Outputs ``DIR/layers.tsv`` (the layer chosen by data, ``layer_choice``; with ``--layer auto``
or a list), ``DIR/store.zarr``, ``DIR/sae/``, ``DIR/annotate/`` (with ``report.html``) and,
with ``seeds`` > 1, ``DIR/seeds.tsv`` (``seed_spread``). Each
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
from dataclasses import dataclass, field
from pathlib import Path

from genesae_fast.errors import InputError
from genesae_fast.threads import usable_cores

DEFAULT_MOTIFS = "jaspar2024:CORE:vertebrates"
STAGES = ("layers", "extract", "train", "annotate", "causal", "seeds", "control", "report")
SUMMARY = "summary.json"  # the annotation folder's completion marker (annotate.folder.MARKER)

# Tokens per second of the built-in model's stages on an idle 2-core VM (issue 12's
# measurements of `genesae run` on the bundled genome: extract 7.5 s on one core, train
# 10.4 s for 2M tokens, annotate 68.6 s). Only the plan's rough estimates use them;
# extraction scales with its worker processes.
RATES = {"extract": 300_000.0, "train": 190_000.0, "annotate": 36_000.0, "report": 2_000_000.0, "causal": 1_000_000.0}
# Measured on 2 cores (benchmarks/RESULTS.md, scale table): both strands cost the annotation
# about 1.7x one pass; the causal stage about 34 s for its 20 default pairs plus 1 s per Mbp.
BOTH_STRANDS_ANNOTATE = 1.7
CAUSAL_SECONDS_PER_PAIR = 1.7


@dataclass
class RunSettings:
    """Defaults of ``genesae run`` (full) and of ``--quick``.

    From notes/sae-motif-calibration.md: small k (8 at d = 48), 16x latents. The layer is
    chosen by data (``layer_choice``) on ``choice_bp`` select-split bases with SAEs of
    ``choice_tokens`` tokens; ``seeds`` > 1 adds SAE seeds and their spread. Training tokens:
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
    seeds: int = 1                  # SAE seeds; more than 1 adds seeds.tsv (spread of held-out F1)
    choice_bp: int = 300_000        # --layer auto: select-split bases the layers are compared on
    choice_tokens: int = 300_000    # --layer auto: SAE training tokens per candidate layer
    causal: bool | None = None      # the causal stage: None = on for the built-in model only
    causal_pairs: int = 20          # (feature, concept) pairs it tests (bounds its time)
    causal_sites: int = 200         # held-out sites per pair

    @classmethod
    def quick(cls) -> "RunSettings":
        """A 250 kbp slice (about 230 genes) and a small SAE trained on 150k tokens: one to two
        minutes on 2 CPU cores."""
        return cls(max_tokens=250_000, expansion=8, k=8, batch=1024, min_train_tokens=150_000,
                   max_train_tokens=150_000, choice_bp=60_000, choice_tokens=60_000, causal_pairs=10,
                   causal_sites=100)

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
    strands: str = "forward"    # "both": the reverse-complement pass too (twice the extraction)
    extra: dict = field(default_factory=dict)   # optional stage -> what it handles (layers, seeds)

    def describe(self, model: str = "builtin") -> str:
        """The plan as the lines ``genesae run`` prints."""
        passes = self.train_tokens / max(self.tokens, 1)
        head = (f"plan: genome {self.genome} ({self.genome_bp:,} bp in {self.n_records} "
                f"record{'s' if self.n_records != 1 else ''}), {self.workers} worker{'s' if self.workers != 1 else ''}")
        both = " x 2 (forward and reverse-complement passes)" if self.strands == "both" else ""
        what = {"layers": self.extra.get("layers"), "extract": f"{self.tokens:,} tokens{both}",
                "train": f"{self.train_tokens:,} tokens ({passes:.2g} pass{'' if passes == 1 else 'es'})",
                "annotate": f"{self.tokens:,} tokens", "causal": self.extra.get("causal"),
                "seeds": self.extra.get("seeds"), "control": self.extra.get("control"), "report": "HTML atlas"}
        what = {k: v for k, v in what.items() if v is not None}
        lines = [head] + [f"  {k:<9} {v}  " + ("(already complete)" if self.done.get(k) else
                                                f"~{_fmt_seconds(self.seconds[k])}") for k, v in what.items()]
        todo = sum(v for k, v in self.seconds.items() if not self.done.get(k) and k in what)
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


def make_plan(out, genome, settings: "RunSettings", workers: int | None, done: dict, strands: str = "forward", *,
              candidates: list | None = None, optional: tuple = ()) -> Plan:
    """The plan of a run: genome size, tokens per stage, training tokens, stage estimates.

    The token count is the finished store's when there is one, else the genome's bases
    (every shipped model tokenises one token per base), capped by ``settings.max_tokens``.
    ``workers`` None: what extraction picks by default (all cores, fewer for a small genome).
    ``candidates``: the layers a ``--layer auto`` (or list) choice will compare, None for none.
    ``optional``: which of the optional stages ``causal`` and ``control`` will run.
    """
    from genesae_fast.extract import MIN_ROWS_PER_WORKER

    bp, n_rec = genome_size(genome)
    rows = _store_rows(Path(out) / "store.zarr")
    if rows is None:
        rows = bp if settings.max_tokens is None else min(bp, int(settings.max_tokens))
    train = settings.train_tokens(rows)
    w = int(workers) if workers else min(usable_cores(), max(1, rows // MIN_ROWS_PER_WORKER))
    seconds = estimate_seconds(rows, train, w)
    if strands == "both":
        seconds["extract"] *= 2
        seconds["annotate"] *= BOTH_STRANDS_ANNOTATE
    plan = Plan(str(genome), bp, n_rec, rows, train, w, seconds, done, strands)
    _plan_extras(plan, settings, candidates)
    _plan_optional(plan, settings, optional)
    return plan


def _plan_optional(plan: Plan, settings: "RunSettings", optional: tuple) -> None:
    """The lines and estimates of the causal stage and the untrained-LM control."""
    if "causal" in optional:
        plan.extra["causal"] = (f"<= {settings.causal_pairs} (feature, concept) pairs, "
                                f"<= {settings.causal_sites} held-out sites each")
        plan.seconds["causal"] = CAUSAL_SECONDS_PER_PAIR * settings.causal_pairs + plan.tokens / RATES["causal"]
    if "control" in optional:
        plan.extra["control"] = "untrained LM: extract, train and annotate again"
        plan.seconds["control"] = sum(plan.seconds[k] for k in ("extract", "train", "annotate"))


def _plan_extras(plan: Plan, settings: "RunSettings", candidates: list | None) -> None:
    """The optional stages' lines and estimates: the layer choice and the extra SAE seeds."""
    if candidates is not None:
        from genesae_fast.layer_choice import ChoiceSettings

        bp = min(settings.choice_bp, plan.genome_bp)
        cs = ChoiceSettings(budget_bp=bp, train_tokens=settings.choice_tokens)
        plan.extra["layers"] = (f"{len(candidates)} candidate layers ({','.join(map(str, candidates))}): "
                                f"a small SAE each on <= {bp:,} select-split bases")
        plan.seconds["layers"] = cs.estimate_seconds(len(candidates), RATES)
    if settings.seeds > 1:
        extra = settings.seeds - 1
        plan.extra["seeds"] = f"{extra} more SAE seed{'s' if extra > 1 else ''}: train and annotate each"
        plan.seconds["seeds"] = extra * (plan.seconds["train"] + plan.seconds["annotate"])


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
    strands: str = "forward"  # resolved: "forward" or "both"

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

    @property
    def control(self) -> Path:
        from genesae_fast.controls import CONTROL_DIR

        return self.out / CONTROL_DIR


def _completion(p: _Paths) -> dict:
    """Stage -> is its output complete (so the stage is skipped)."""
    r, m = p.ann / "report.html", p.ann / SUMMARY
    from genesae_fast.layer_choice import LAYERS_FILE
    from genesae_fast.seed_spread import SEEDS_FILE
    from genesae_fast.store.strands import rc_store_path

    extracted = _store_complete(p.store) and (p.strands != "both" or _store_complete(Path(rc_store_path(p.store))))
    return {"layers": (p.out / LAYERS_FILE).is_file(), "extract": extracted,
            "train": _sae_complete(p.sae), "annotate": m.is_file(), "seeds": (p.out / SEEDS_FILE).is_file(),
            "control": m.is_file() and (p.control / "annotate" / SUMMARY).is_file()
            and '"control_untrained"' in m.read_text(), "causal": (p.ann / "causal.tsv").is_file(),
            "report": r.is_file() and m.is_file() and r.stat().st_mtime >= m.stat().st_mtime}


def run_pipeline(out="genesae_run", genome=None, model="builtin", layer="auto", *, motifs=DEFAULT_MOTIFS,
                 quick=False, gff=None, threads=None, workers=None, seed=0, device=None, progress=True,
                 settings: RunSettings | None = None, only=None, echo=print, strands="auto",
                 control_untrained=False) -> dict:
    """Run every stage into ``out``; returns the annotation summary plus stage times.

    Parameters
    ----------
    out : output folder
    genome : FASTA (default: the bundled genome)
    model : "builtin" or a model folder
    layer : "auto" (default; None too): chosen by data, ``genesae_fast.layer_choice``; a list
        of layers ("2,3" or [2, 3]): chosen by data among them; an int: that layer
    motifs : motif SPEC or file; "" or None for none
    quick : a slice of the genome and a small SAE (a demonstration)
    threads : native threads of the annotation (default: all cores)
    workers : extraction worker processes (default: all cores)
    settings : sizes, training tokens, SAE seeds (default ``RunSettings()`` or ``RunSettings.quick()``)
    only : run only these stages (names from ``STAGES``); the others are left as they are
    echo : where the plan and stage messages go
    strands : "auto" (both for a model that reads one direction), "both" or "forward" (``genesae_fast.strands``)
    control_untrained : also run the untrained-LM control (``controls``) before the report

    Returns
    -------
    dict
        The annotation summary (``summary.json``) with ``stage_seconds`` and ``report``;
        only ``stage_seconds`` while the annotation is not done.
    """
    from genesae_fast.layer_choice import parse_layer_spec

    if genome is None:
        from genesae_fast.data import genome_path

        genome = str(genome_path())
    from genesae_fast.strands import resolve_strands

    spec = parse_layer_spec(layer)
    s = settings or (RunSettings.quick() if quick else RunSettings())
    paths = _Paths(Path(out), resolve_strands(strands, str(model)))
    paths.out.mkdir(parents=True, exist_ok=True)
    run = _Run(genome, model, spec, paths, s, dict(motifs=motifs or None, gff=gff, threads=int(threads or usable_cores()),
                                                 workers=workers, seed=seed, device=device, progress=progress))
    stages = _select_stages(run.stages(echo), only, s, control_untrained)
    plan = make_plan(paths.out, genome, s, workers, _completion(paths), paths.strands, candidates=run.candidates(),
                     optional=tuple(k for k in ("causal", "control") if k in stages))
    echo(plan.describe(model))
    run.plan = plan
    _run_stages(stages, paths, plan, quick=quick, echo=echo)
    times = json.loads(paths.times.read_text()).get("stage_seconds", {}) if paths.times.is_file() else {}
    if not (paths.ann / SUMMARY).is_file():
        return {"stage_seconds": times}
    summary = json.loads((paths.ann / SUMMARY).read_text())
    summary.update(_extras(paths, s))
    summary["stage_seconds"] = times
    summary["report"] = str(paths.ann / "report.html")
    return summary


def _select_stages(stages: dict, only, s: RunSettings, control_untrained: bool = False) -> dict:
    """The stages to run: optional ones only when asked for (a layer choice, extra seeds, the
    untrained-LM control: ``control_untrained`` or named in ``only``), and only those named in
    ``only`` (the layer choice goes with ``extract``, which needs it)."""
    if s.seeds <= 1:
        stages.pop("seeds", None)
    if not control_untrained and "control" not in (only or ()):
        stages.pop("control", None)
    if only is None:
        return stages
    unknown = sorted(set(only) - set(STAGES))
    if unknown:
        raise InputError(f"--stages {','.join(only)}: unknown stage {unknown[0]} (choose from {','.join(STAGES)})")
    wanted = set(only) | ({"layers"} if "extract" in only else set())
    return {k: v for k, v in stages.items() if k in wanted}


@dataclass
class _Run:
    """What every stage of one run needs; ``stages`` makes the stage functions."""

    genome: str
    model: object
    spec: object            # int, "auto" or a tuple of layers (layer_choice.parse_layer_spec)
    paths: _Paths
    s: RunSettings
    opts: dict              # motifs, gff, threads, workers, seed, device, progress
    plan: Plan | None = None
    _loaded: object = None

    def loaded_model(self):
        if self._loaded is None:
            from genesae_fast.models import load_model

            self._loaded = (self.model if not isinstance(self.model, (str, os.PathLike))
                            else load_model(str(self.model), device=self.opts["device"]))
        return self._loaded

    def candidates(self) -> list | None:
        """The layers the choice compares; None when the layer is given."""
        if isinstance(self.spec, int):
            return None
        from genesae_fast.layer_choice import candidate_layers

        return candidate_layers(self.loaded_model(), self.spec)

    def layer(self) -> int:
        """The layer to extract: the given one, else the choice's (``layers.tsv``)."""
        if isinstance(self.spec, int):
            return self.spec
        from genesae_fast.layer_choice import read_choice

        choice = read_choice(self.paths.out)
        if choice is None:
            raise InputError(f"{self.paths.out}: no layers.tsv; run the layers stage or give --layer N")
        return choice["layer"]

    def split_block(self) -> int | None:
        """The annotation's select/evaluate block when a choice runs (the choice used the same)."""
        if isinstance(self.spec, int):
            return None
        from genesae_fast.annotate.concepts import default_block

        return default_block(self.covered_bp())

    def covered_bp(self) -> int:
        """Bases the run's store will cover: the genome, or its first ``max_tokens`` bases (one
        token per base, as every shipped model; for k-mer tokenisers an upper bound)."""
        bp = self.plan.genome_bp
        return bp if self.s.max_tokens is None else min(bp, int(self.s.max_tokens))

    def stages(self, echo) -> dict:
        """Stage name -> function, in order; ``layers`` only when a choice is wanted."""
        o, p, s = self.opts, self.paths, self.s
        stages = {
            "layers": lambda: _choose(self, echo),
            "extract": lambda: _extract(self.genome, self.model, self.layer(), p, s, workers=o["workers"],
                                        device=o["device"], progress=o["progress"]),
            "train": lambda: _train(p, s, seed=o["seed"], device=o["device"], progress=o["progress"]),
            "annotate": lambda: _annotate(self.genome, p, s, motifs=o["motifs"], gff=o["gff"], threads=o["threads"],
                                          seed=o["seed"], progress=o["progress"], block=self.split_block()),
            "causal": lambda: _causal(p, s, seed=o["seed"], device=o["device"], progress=o["progress"]),
            "seeds": lambda: _seeds(self),
            "control": lambda: _control(self.genome, self.model, p, s, motifs=o["motifs"], gff=o["gff"],
                                        threads=o["threads"], workers=o["workers"], seed=o["seed"],
                                        device=o["device"], progress=o["progress"], echo=echo,
                                        block=self.split_block()),
            "report": lambda: _report(p),
        }
        if isinstance(self.spec, int):
            del stages["layers"]
        if not (s.causal if s.causal is not None else _builtin_family(self.model)):
            del stages["causal"]  # other models: only where asked (`genesae causal` or settings.causal)
        return stages


def _choose(run: _Run, echo) -> None:
    from genesae_fast.layer_choice import Choice, ChoiceSettings, choose_layer, describe_choice

    s, o = run.s, run.opts
    cs = ChoiceSettings(budget_bp=s.choice_bp, train_tokens=s.choice_tokens, expansion=s.expansion, k=s.k,
                        batch=min(s.batch, 1024))
    job = Choice(run.paths.out / "layers", run.loaded_model(), cs, o["motifs"], seed=o["seed"], threads=o["threads"],
                 device=o["device"], progress=o["progress"])
    choice = choose_layer(run.genome, job, run.candidates(), split_block=run.split_block(),
                          covered_bp=run.covered_bp(), echo=echo)
    echo(describe_choice(choice))


def _seeds(run: _Run) -> None:
    from genesae_fast.seed_spread import run_seeds
    from genesae_fast.store import ActivationStore

    s, o, p = run.s, run.opts, run.paths
    rows = ActivationStore.open(p.store).n_rows
    run_seeds(p.out, p.store, run.genome, seeds=s.seeds, base_seed=o["seed"], motifs=o["motifs"], gff=o["gff"],
              threads=o["threads"], block=run.split_block(), progress=o["progress"],
              train_kwargs=dict(expansion=s.expansion, k=s.k, batch_size=s.batch, tokens=s.train_tokens(rows),
                                device=o["device"]))
    _attach_extras(p, s)


def _extras(paths: _Paths, s: RunSettings) -> dict:
    """``layer_choice`` (when a choice ran) and ``seed_spread`` for ``summary.json``."""
    from genesae_fast.layer_choice import read_choice
    from genesae_fast.seed_spread import spread_summary

    out = {"seed_spread": spread_summary(paths.out, s.seeds)}
    choice = read_choice(paths.out)
    if choice is not None:
        out["layer_choice"] = {k: v for k, v in choice.items() if k != "rows"}
        out["layer_choice"]["scores"] = {str(k): v for k, v in choice["scores"].items()}
        out["layer_choice"]["mean_f1"] = {str(k): v for k, v in choice["mean_f1"].items()}
    return out


def _attach_extras(paths: _Paths, s: RunSettings) -> None:
    """Add :func:`_extras` to ``summary.json`` (atomically; untouched when already there, so a
    finished report stays finished)."""
    from genesae_fast.outputs import open_output

    path = paths.ann / SUMMARY
    summary = json.loads(path.read_text())
    extras = _extras(paths, s)
    if all(summary.get(k) == v for k, v in extras.items()):
        return
    summary.update(extras)
    with open_output(path, "w") as fh:
        json.dump(summary, fh, indent=2)


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

    # LM bits feed the annotation's "LM knows this concept" diagnostic (models with a next-token head)
    extract_to_store(genome, model, layer, paths.store, max_tokens=s.max_tokens, progress=progress, device=device,
                     workers=workers, lm_bits="auto", strands=paths.strands)


def _train(paths: _Paths, s: RunSettings, *, seed, device, progress):
    from genesae_fast.store import ActivationStore
    from genesae_fast.train import train_sae

    rows = ActivationStore.open(paths.store).n_rows
    train_sae(paths.store, paths.sae, expansion=s.expansion, k=s.k, batch_size=s.batch, tokens=s.train_tokens(rows),
              seed=seed, device=device, progress=progress, lm_loss=False, strands=paths.strands)


def _annotate(genome, paths: _Paths, s: RunSettings, *, motifs, gff, threads, seed, progress, block=None):
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.core import Config

    cfg = Config(neurons=s.neurons, threads=threads, seed=seed, block=block)
    annotate(paths.store, paths.sae, paths.ann, genome=genome, motifs=motifs or None, gff=gff, cfg=cfg,
             progress=progress, overwrite=True, strands="auto" if paths.strands == "both" else "forward")
    _attach_extras(paths, s)


def _control(genome, model, paths: _Paths, s: RunSettings, *, echo, **kw):
    """The untrained-LM control: the stages on a random copy of ``model`` at the main run's layer."""
    from genesae_fast.controls import add_control_to_summary, untrained_model
    from genesae_fast.store import ActivationStore

    layer = ActivationStore.open(paths.store).attrs.get("layer")
    sub = _Paths(paths.control, paths.strands)
    model_dir = str(untrained_model(sub.out, model))
    stages = {"extract": lambda: _extract(genome, model_dir, layer, sub, s, workers=kw["workers"], device=kw["device"],
                                          progress=kw["progress"]),
              "train": lambda: _train(sub, s, seed=kw["seed"], device=kw["device"], progress=kw["progress"]),
              "annotate": lambda: _annotate(genome, sub, s, motifs=kw["motifs"], gff=kw["gff"], threads=kw["threads"],
                                            seed=kw["seed"], progress=kw["progress"], block=kw["block"])}
    plan = make_plan(sub.out, genome, s, kw["workers"], {}, sub.strands)
    _run_stages(stages, sub, plan, quick=False, echo=lambda m: echo(f"  control {m}"))
    add_control_to_summary(paths.ann, sub.ann)


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
    lines.append(_lm_knowledge_line(summary.get("lm_knowledge") or {}))
    if summary.get("strands") == "both":
        c = summary.get("motif_best_feature_strand") or {}
        lines.append("both strands pooled; motifs whose best feature reads both / + only / - only / neither: "
                     + " / ".join(str(c.get(k, 0)) for k in ("both", "+", "-", "none")))
    best = summary.get("best") or []
    if best:
        lines.append("best features (held-out F1, q-value):")
        for b in best[:10]:
            lines.append(f"  feature {b['feature']:>5}  {b['concept']:<34} F1 {b['f1']:.3f}  q {b['qvalue']:.2g}")
    lines += _extra_lines(summary)
    if "causal_pairs_tested" in summary:
        lines.append(f"causal evidence: {summary['causal_pairs_specific']} of {summary['causal_pairs_tested']} "
                     "(feature, concept) pairs specific (ablation raises LM bits at the sites more than at random "
                     "positions and more than a random feature; both 95% CIs above 1), annotate/causal.tsv")
    st = summary.get("stage_seconds") or {}
    if st:
        lines.append("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in st.items()))
    from genesae_fast.controls import control_lines

    lines += control_lines(summary)
    lines.append(f"report: {summary.get('report')}")
    return "\n".join(lines)


def _lm_knowledge_line(info: dict) -> str:
    """One line of the LM-knowledge diagnostic (annotate/lm_knowledge.py), or why it is absent."""
    if "absent" in info or not info:
        return f"LM knows the concepts: not measured ({info.get('absent', 'no LM bits')})"
    shown = ", ".join(info.get("known", [])[:6])
    return (f"LM knows {info.get('concepts_known')} of {info.get('concepts_measured')} concepts (sites cost >= "
            f"{info.get('knows_drop_bits')} bits/base fewer than flanks, z <= -{info.get('knows_z')})"
            + (f": {shown}" if shown else "") + "; lm_* columns of concepts.tsv")


def _extra_lines(summary: dict) -> list:
    """The layer choice and the seed spread, when the summary has them."""
    from genesae_fast.layer_choice import describe_choice
    from genesae_fast.seed_spread import describe_spread

    lines = []
    if summary.get("layer_choice"):
        lines.append(describe_choice(summary["layer_choice"]))
    if summary.get("seed_spread"):
        lines.append(describe_spread(summary["seed_spread"]))
    return lines


__all__ = ["run_pipeline", "RunSettings", "Plan", "make_plan", "format_summary", "DEFAULT_MOTIFS"]
