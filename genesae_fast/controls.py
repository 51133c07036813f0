"""The untrained-LM control of ``genesae run``: what a model that learned nothing gives.

The same stages (extract, train, annotate) run on a randomly initialised copy of the model
(same architecture, fixed seed, ``models.untrained``) at the main run's layer, into
``RUN/controls/untrained/``. Its concept counts and best F1 per concept group are the
reference line for the main run's: a concept the trained LM matches no better than the
untrained one says nothing about what the LM learned (random convolutions already pass
base composition and short k-mers through).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from genesae_fast.errors import InputError

CONTROL_DIR = Path("controls") / "untrained"
CONTROL_KEY = "control_untrained"
CONTROL_SEED = 0
THRESHOLDS = (0.3, 0.5)


def untrained_model(control_dir: str | os.PathLike, model: str = "builtin", seed: int = CONTROL_SEED) -> Path:
    """``control_dir/model``: the randomly initialised copy of ``model`` (written once)."""
    from genesae_fast.models.builtin import CONFIG_FILE
    from genesae_fast.models.untrained import write_untrained

    folder = Path(control_dir) / "model"
    if model != "builtin" and not (Path(model) / CONFIG_FILE).is_file():
        raise InputError(f"--control-untrained: --model {model} is not the built-in LM or a `genesae lm train` folder")
    if not (folder / CONFIG_FILE).is_file():
        write_untrained(folder, like=model, seed=seed)
    return folder


def _floats(values) -> list[float]:
    out = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        out.append(0.0 if math.isnan(x) else x)
    return out


def concept_groups(concepts: dict) -> dict:
    """Per concept group (``kind`` of concepts.tsv): concepts, counts matched at F1 >= each
    threshold by the best SAE feature and the best neuron, and the best and median F1.

    ``concepts``: concepts.tsv as a dict of string columns (``annotate.folder.read_tsv``).
    """
    import numpy as np

    kinds = concepts.get("kind", [])
    sae, neuron = np.array(_floats(concepts.get("f1", []))), np.array(_floats(concepts.get("neuron_f1", [])))
    out = {}
    for kind in sorted(set(kinds)):
        sel = np.array([k == kind for k in kinds])
        group = {"concepts": int(sel.sum()), "best_f1": float(sae[sel].max()),
                 "median_best_f1": float(np.median(sae[sel]))}
        for t in THRESHOLDS:
            group[f"sae_f1_ge_{t}"] = int(np.sum(sae[sel] >= t))
            if neuron.size:
                group[f"neuron_f1_ge_{t}"] = int(np.sum(neuron[sel] >= t))
        best = int(np.argmax(np.where(sel, sae, -1.0)))
        group["best_concept"] = concepts["concept"][best]
        out[kind] = group
    return out


def control_summary(ann_dir: str | os.PathLike) -> dict:
    """The control's line: summary counts and :func:`concept_groups` of an annotation folder."""
    from genesae_fast.annotate.folder import read_tsv

    ann = Path(ann_dir)
    summary = json.loads((ann / "summary.json").read_text())
    keys = [f"concepts_{who}_f1_ge_{t}" for t in THRESHOLDS for who in ("sae", "neuron")]
    out = {k: summary.get(k) for k in keys + ["fvu", "features_with_any_concept", "features_tested"]}
    concepts = read_tsv(ann / "concepts.tsv") if (ann / "concepts.tsv").is_file() else {}
    out["groups"] = concept_groups(concepts) if concepts.get("concept") else {}
    out["folder"] = str(CONTROL_DIR)
    return out


def add_control_to_summary(main_ann: str | os.PathLike, control_ann: str | os.PathLike) -> dict:
    """Write the control's line into the main run's ``summary.json`` (atomically); returns it."""
    path = Path(main_ann) / "summary.json"
    summary = json.loads(path.read_text())
    summary[CONTROL_KEY] = control_summary(control_ann)
    main_concepts = Path(main_ann) / "concepts.tsv"
    if main_concepts.is_file():
        from genesae_fast.annotate.folder import read_tsv

        summary[CONTROL_KEY]["main_groups"] = concept_groups(read_tsv(main_concepts))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, path)
    return summary[CONTROL_KEY]


def control_lines(summary: dict) -> list[str]:
    """The reference lines of the terminal summary and the report (empty without a control)."""
    c = summary.get(CONTROL_KEY)
    if not c:
        return []
    lines = [f"untrained-LM control (what a model that learned nothing gives): concepts with held-out F1 >= 0.3: "
             f"SAE {c.get('concepts_sae_f1_ge_0.3')} (trained LM {summary.get('concepts_sae_f1_ge_0.3')}), "
             f"neurons {c.get('concepts_neuron_f1_ge_0.3')} (trained {summary.get('concepts_neuron_f1_ge_0.3')})"]
    main = c.get("main_groups", {})
    for kind, g in c.get("groups", {}).items():
        m = main.get(kind, {})
        trained = f" (trained LM {m['best_f1']:.3f}, {m.get('sae_f1_ge_0.3')} at >= 0.3)" if m else ""
        lines.append(f"  {kind} concepts: best F1 {g['best_f1']:.3f}, {g.get('sae_f1_ge_0.3')} of {g['concepts']} "
                     f"at >= 0.3{trained}")
    return lines


__all__ = ["CONTROL_DIR", "CONTROL_KEY", "add_control_to_summary", "concept_groups", "control_lines",
           "control_summary", "untrained_model"]
