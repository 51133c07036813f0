"""Read an annotation folder from Python (a notebook API for ``genesae annotate`` output).

>>> from genesae_fast import atlas
>>> a = atlas.open("run/annotate")
>>> a.features.sort_values("motif_f1", ascending=False).head()   # pandas, else a pyarrow Table
>>> f = a.feature(12)
>>> f.examples, f.logo, f.motifs, f.concepts                     # top examples, [w, 4] logo, matches
>>> t = a.track("NZ_LN831026.1", 10_000, 10_500, feature=12)     # activations, encoded on demand
>>> t.start, t.end, t.values                                      # per token: bp interval and value

Tables come back as pandas DataFrames when pandas is installed, else as pyarrow Tables.
``track`` reads the store and the SAE recorded in ``summary.json`` (override with
``open(..., store=, sae=)``); the SAE may be in any format :func:`~genesae_fast.sae_formats.load_any` reads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from genesae_fast.errors import InputError

__all__ = ["open", "Atlas", "Feature", "Track"]


def _frame(table):
    """A pyarrow Table as a pandas DataFrame when pandas is installed, else unchanged."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        return table
    return table.to_pandas()


def _read_tsv(path: Path):
    """A TSV written by the annotation as a typed pyarrow Table (``NA`` and empty cells are null)."""
    import pyarrow.csv as pcsv

    return pcsv.read_csv(path, parse_options=pcsv.ParseOptions(delimiter="\t"),
                         convert_options=pcsv.ConvertOptions(null_values=["NA", ""], strings_can_be_null=True))


@dataclass
class Feature:
    """One feature of an annotation.

    Attributes
    ----------
    index : feature number
    row : its row of ``features.tsv`` as a dict
    examples : top-activating examples (DataFrame or Table; ``examples.parquet`` rows)
    logo : activation-weighted logo, float [w, 4] (A, C, G, T), or None
    motifs : its rows of ``feature_motif.tsv`` (motif, precision, recall, F1, q-value ...)
    concepts : its rows of ``feature_concept.tsv`` (gene-structure concepts)
    """

    index: int
    row: dict
    examples: object
    logo: Optional[np.ndarray]
    motifs: object
    concepts: object


@dataclass
class Track:
    """Activations over a genome interval, one entry per store token overlapping it.

    Attributes
    ----------
    chrom : sequence name
    start, end : int64 [t], each token's bp interval (0-based, half-open)
    values : float32 [t] for one feature, else [t, n_latents] (0 where a latent is silent)
    feature : the feature, or None for all
    """

    chrom: str
    start: np.ndarray
    end: np.ndarray
    values: np.ndarray
    feature: Optional[int] = None

    def to_frame(self):
        """``start``, ``end`` and ``activation`` (one feature) or ``f<i>`` columns, as a DataFrame or Table."""
        import pyarrow as pa

        cols = {"chrom": [self.chrom] * len(self.start), "start": self.start, "end": self.end}
        if self.values.ndim == 1:
            cols["activation"] = self.values
        else:
            cols.update({f"f{i}": self.values[:, i] for i in range(self.values.shape[1])})
        return _frame(pa.table(cols))


@dataclass
class Atlas:
    """An opened annotation folder (see :func:`open`)."""

    path: Path
    summary: dict
    features: object
    store_path: Optional[str] = None
    sae_path: Optional[str] = None
    _cache: dict = field(default_factory=dict, repr=False)

    def _table(self, name: str):
        if name not in self._cache:
            p = self.path / name
            if name.endswith(".parquet"):
                import pyarrow.parquet as pq

                self._cache[name] = pq.read_table(p) if p.is_file() else None
            else:
                self._cache[name] = _read_tsv(p) if p.is_file() else None
        return self._cache[name]

    def _rows_of(self, name: str, i: int):
        import pyarrow.compute as pc

        t = self._table(name)
        if t is None:
            return None
        return _frame(t.filter(pc.equal(t["feature"], i)))

    def feature(self, i: int) -> Feature:
        """Feature ``i``: its table row, examples, logo matrix and concept matches."""
        feats = self._table("features.tsv")
        ids = feats["feature"].to_pylist()
        if i not in ids:
            raise InputError(f"{self.path}: no feature {i} (features 0..{max(ids) if ids else -1})")
        row = {k: v[ids.index(i)] for k, v in feats.to_pydict().items()}
        if "logos" not in self._cache:
            lp = self.path / "logos.json"
            self._cache["logos"] = json.loads(lp.read_text()) if lp.is_file() else {"features": {}}
        logo = self._cache["logos"].get("features", {}).get(str(i))
        return Feature(i, row, self._rows_of("examples.parquet", i), None if logo is None else np.asarray(logo, float),
                       self._rows_of("feature_motif.tsv", i), self._rows_of("feature_concept.tsv", i))

    def _models(self):
        if "models" not in self._cache:
            from genesae_fast.sae_formats import check_compatible, load_any
            from genesae_fast.store import ActivationStore

            for what, p in (("store", self.store_path), ("SAE", self.sae_path)):
                if not p:
                    raise InputError(f"{self.path}: summary.json records no {what} path; pass {what.lower()}= to atlas.open")
            store = ActivationStore.open(self.store_path)
            sae = load_any(self.sae_path, device="cpu")
            check_compatible(sae, store)
            self._cache["models"] = (store, sae)
        return self._cache["models"]

    def track(self, chrom: str, start: int, end: int, feature: Optional[int] = None) -> Track:
        """Activations of ``feature`` (or of every latent) over ``[start, end)`` of ``chrom``.

        Reads the store rows overlapping the interval and encodes them with the SAE on
        demand, exactly as the annotation does (``encode(normalize(x))``).
        """
        import torch

        if not 0 <= start < end:
            raise InputError(f"track: need 0 <= start < end, got start={start}, end={end}")
        store, sae = self._models()
        if chrom not in (store.sequence_names or []):
            raise InputError(f"{self.store_path}: no sequence {chrom!r} in the store")
        rows = store.rows_for_interval(chrom, start, end)
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
        _, bp0, bp1, _ = store.coordinates(lo, hi)
        n = int(sae.config["n_latents"])
        with torch.no_grad():
            vals, idx = sae.encode(sae.normalize(torch.from_numpy(store.read_rows(lo, hi))))
        dense = torch.zeros(hi - lo, n).scatter_add_(1, idx, vals.float().clamp_min(0)).numpy()
        if feature is not None:
            if not 0 <= feature < n:
                raise InputError(f"track: feature {feature} is out of range (the SAE has {n} latents)")
            dense = dense[:, feature]
        return Track(chrom, np.asarray(bp0, np.int64), np.asarray(bp1, np.int64), dense.astype(np.float32), feature)


def open(ann_dir, *, store=None, sae=None) -> Atlas:  # noqa: A001 - the notebook spelling atlas.open(...)
    """Open an annotation folder written by ``genesae annotate``.

    Parameters
    ----------
    ann_dir : the annotation folder
    store, sae : override the store and SAE paths recorded in its ``summary.json`` (used by
        :meth:`Atlas.track` only)
    """
    path = Path(ann_dir)
    for name in ("summary.json", "features.tsv"):
        if not (path / name).is_file():
            raise InputError(f"{path}: not an annotation folder (no {name}; run genesae annotate)")
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path / 'summary.json'}: not valid JSON ({exc})") from None
    a = Atlas(path, summary, None, store or summary.get("store"), sae or summary.get("sae"))
    a.features = _frame(a._table("features.tsv"))
    return a

