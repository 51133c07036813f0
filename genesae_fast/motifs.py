"""Transcription-factor motifs: reading MEME, JASPAR and TRANSFAC files, and JASPAR specs.

``load_motifs(spec)`` accepts

* ``jaspar2024:CORE:vertebrates`` (the default): JASPAR 2024 CORE, latest version of each
  vertebrate matrix, loaded from the MEME file shipped in ``genesae_fast/data`` (made by
  ``scripts/make_default_motifs.py``; no extra package needed);
* ``jasparYYYY:COLLECTION:TAXON`` for any other JASPAR release (2014-2026), collection
  (CORE, CNE, PHYLOFACTS, SPLICE, POLII, FAM, PBM, PBM_HOMEO, PBM_HLH, UNVALIDATED) and
  taxon group (vertebrates, plants, insects, nematodes, fungi, urochordates, ... or ``all``),
  read from the SQLite databases of the optional ``pyjaspar`` package;
* a path to a MEME (minimal) text file, a JASPAR ``.jaspar``/``.pfm`` count file, or a
  TRANSFAC file (the format is sniffed from the content).

Bad files raise :class:`~genesae_fast.errors.InputError` with one line naming the file,
the line and the motif.
"""
from __future__ import annotations

import gzip
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from genesae_fast.errors import InputError

DEFAULT_SPEC = "jaspar2024:CORE:vertebrates"
DEFAULT_FILE = "jaspar2024_core_vertebrates.meme"
_SPEC_RE = re.compile(r"^jaspar(\d{4}):([A-Za-z_0-9]+):([A-Za-z_]+)$", re.IGNORECASE)
# MEME's reader renormalises a row only when its sum is off by more than this.
_MEME_NORM_TOL = 1e-5
# A MEME row whose sum is further than this from 1 is not a probability row.
_PROB_ROW_TOL = 0.02


# A plain decimal or scientific number; float() alone would also take "nan", "inf",
# "1_0" (as 10) and non-ASCII digits.
_NUMBER_RE = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _number(text: str) -> float | None:
    """``text`` as a finite float, or None when it is not a plain finite number."""
    if not _NUMBER_RE.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _numbers(words) -> list[float] | None:
    """Every word as a finite float, or None if any is not one."""
    out = [_number(w) for w in words]
    return None if any(v is None for v in out) else out


@dataclass
class Motif:
    """A position probability matrix.

    Attributes
    ----------
    id : str
        Identifier (JASPAR matrix ID, MEME ``MOTIF`` name).
    alt_id : str
        Alternative name (TF name); may be empty.
    probs : numpy.ndarray, shape (w, 4), float64
        Rows sum to 1, columns in A, C, G, T order.
    nsites : float or None
        Number of sites behind the matrix (FIMO weighs the pseudocount by it).
    """

    id: str
    alt_id: str
    probs: np.ndarray
    nsites: float | None = None

    @property
    def width(self) -> int:
        return int(self.probs.shape[0])

    def consensus(self) -> str:
        """Most probable base at each position."""
        return "".join("ACGT"[i] for i in np.argmax(self.probs, axis=1))


def shuffle_columns(motif: Motif, rng: np.random.Generator) -> Motif:
    """A control motif: the same columns in a random order (base composition kept)."""
    perm = rng.permutation(motif.width)
    return replace(motif, id=motif.id + "_shuffled", probs=motif.probs[perm].copy())


# --------------------------------------------------------------------------- loading


def load_motifs(spec: str | os.PathLike = DEFAULT_SPEC) -> list[Motif]:
    """Motifs from a JASPAR spec or a motif file.

    Parameters
    ----------
    spec : str or path
        ``jaspar2024:CORE:vertebrates`` (default, shipped), ``jasparYYYY:COLLECTION:TAXON``
        (needs ``pyjaspar``), or a MEME / JASPAR / TRANSFAC file (optionally gzipped).

    Returns
    -------
    list of Motif, in file (or JASPAR ID) order.
    """
    text_spec = str(spec)
    m = _SPEC_RE.match(text_spec)
    if m and not Path(text_spec).exists():
        year, collection, taxon = m.group(1), m.group(2).upper(), m.group(3).lower()
        if (year, collection, taxon) == ("2024", "CORE", "vertebrates"):
            from genesae_fast.data import __file__ as data_init

            return read_meme(Path(data_init).parent / DEFAULT_FILE)
        return _load_pyjaspar(year, collection, taxon, text_spec)
    path = Path(text_spec)
    if not path.exists():
        raise InputError(f"{spec}: no such motif file (or use a spec like {DEFAULT_SPEC})")
    if path.is_dir():
        raise InputError(f"{spec}: is a directory, expected a motif file")
    text = _read_text(path)
    fmt = sniff_format(text, path)
    if fmt == "meme":
        return parse_meme(text, str(path))
    if fmt == "transfac":
        return parse_transfac(text, str(path))
    return parse_jaspar(text, str(path))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: corrupt gzip data ({exc})") from None
    return raw.decode("utf-8", errors="replace")


def sniff_format(text: str, source: str | Path = "<text>") -> str:
    """``"meme"``, ``"transfac"`` or ``"jaspar"`` from the file content."""
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("MEME version") or s.startswith("MOTIF") or s.startswith("ALPHABET"):
            return "meme"
        if s.startswith(">"):
            return "jaspar"
        if re.match(r"^(AC|ID|DE|XX|NA|BF|P0|PO|VV)(\s|$)", s):
            return "transfac"
        if re.match(r"^[ACGT]?\s*\[?\s*[-+0-9.eE\s]+\]?$", s):
            return "jaspar"
        break
    raise InputError(f"{source}: not a MEME, JASPAR or TRANSFAC motif file")


def _load_pyjaspar(year: str, collection: str, taxon: str, spec: str) -> list[Motif]:
    try:
        from pyjaspar import jaspardb
    except ImportError:
        raise InputError(
            f"{spec}: only {DEFAULT_SPEC} ships with genesae_fast; install pyjaspar "
            "(pip install 'genesae_fast[jaspar]') for other JASPAR releases and collections"
        ) from None
    import pyjaspar

    if not (Path(pyjaspar.__file__).parent / "data" / f"JASPAR{year}.sqlite").is_file():
        raise InputError(f"{spec}: pyjaspar has no JASPAR{year} release")
    db = jaspardb(release=f"JASPAR{year}")
    kwargs = {"collection": collection, "all_versions": False}
    if taxon != "all":
        kwargs["tax_group"] = [taxon]
    ms = db.fetch_motifs(**kwargs)
    if not ms:
        raise InputError(f"{spec}: JASPAR{year} has no matrices in collection {collection} for taxon {taxon}")
    return [motif_from_counts(str(m.matrix_id), str(m.name), [m.counts[b] for b in "ACGT"], spec) for m in ms]


def motif_from_counts(mid: str, alt: str, rows_acgt, source: str = "<counts>") -> Motif:
    """A Motif from a 4 x w count (or probability) matrix, columns normalised.

    ``nsites`` is the count total of the first column.
    """
    counts = np.asarray(rows_acgt, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != 4:
        raise InputError(f"{source}: motif {mid}: expected 4 rows (A C G T), got {counts.shape[0]}")
    if counts.shape[1] == 0:
        raise InputError(f"{source}: motif {mid}: empty matrix")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise InputError(f"{source}: motif {mid}: counts must be finite and non-negative")
    with np.errstate(over="ignore"):  # an overflow is reported below, not warned about
        sums = counts.sum(axis=0)
    big = np.flatnonzero(~np.isfinite(sums))
    if big.size:
        raise InputError(f"{source}: motif {mid}: column {big[0] + 1} counts overflow (sum beyond 1.8e308)")
    bad = np.flatnonzero(sums <= 0)
    if bad.size:
        raise InputError(f"{source}: motif {mid}: column {bad[0] + 1} has no counts")
    probs = (counts / sums).T.copy()
    return Motif(id=mid, alt_id=alt, probs=probs, nsites=float(sums[0]))


# --------------------------------------------------------------------------- MEME


def read_meme(path: str | os.PathLike) -> list[Motif]:
    """Motifs of a MEME text file (see :func:`parse_meme`)."""
    return parse_meme(_read_text(Path(path)), str(path))


def read_meme_background(path: str | os.PathLike) -> list[float] | None:
    """The ``Background letter frequencies`` of a MEME file (A, C, G, T), or None."""
    lines = _read_text(Path(path)).splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("Background letter frequencies"):
            words: list[str] = []
            for nxt in lines[i + 1 :]:
                if not nxt.strip():
                    if words:
                        break
                    continue
                if nxt.strip().startswith("MOTIF"):
                    break
                words += nxt.split()
            pairs = dict(zip(words[0::2], words[1::2], strict=False))
            freqs = _numbers([pairs.get(b, "") for b in "ACGT"])
            if freqs is None or min(freqs) < 0 or sum(freqs) <= 0:
                raise InputError(f"{path}:{i + 1}: unreadable background letter frequencies "
                                 "(need A C G T with finite, non-negative values)")
            return freqs
    return None


_MATRIX_RE = re.compile(r"^letter-probability matrix:(.*)$")


def parse_meme(text: str, source: str = "<text>") -> list[Motif]:
    """Parse MEME minimal (text) format.

    Rows are renormalised as MEME does (only when their sum is off by more than 1e-5);
    a row whose sum is not within 0.02 of 1, a negative, non-finite or non-numeric entry,
    a non-DNA alphabet, a width mismatch or a motif without rows raise InputError.
    """
    lines = text.splitlines()
    motifs: list[Motif] = []
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("ALPHABET"):
            alph = s.split("=", 1)[1].strip() if "=" in s else ""
            if alph.upper() != "ACGT":
                raise InputError(f"{source}:{i + 1}: alphabet {alph!r} is not DNA (ACGT)")
        elif s.startswith("MOTIF"):
            motif, i = _meme_motif(lines, i, source)
            motifs.append(motif)
            continue
        i += 1
    if not motifs:
        raise InputError(f"{source}: no motifs found (expected MOTIF blocks with letter-probability matrices)")
    return motifs


def _meme_motif(lines: list[str], i: int, source: str) -> tuple[Motif, int]:
    """The motif whose ``MOTIF`` line is ``lines[i]``, and the index of the line after it."""
    parts = lines[i].split()
    if len(parts) < 2:
        raise InputError(f"{source}:{i + 1}: MOTIF line without a name")
    mid, alt = parts[1], (parts[2] if len(parts) > 2 else "")
    motif_line = i + 1
    i += 1
    # find the matrix header before the next MOTIF
    while i < len(lines) and not lines[i].strip().startswith("letter-probability matrix"):
        if lines[i].strip().startswith("MOTIF"):
            break
        i += 1
    if i == len(lines) or not lines[i].strip().startswith("letter-probability matrix"):
        raise InputError(f"{source}:{motif_line}: motif {mid} has no letter-probability matrix")
    attrs = _meme_attrs(lines[i], source, i + 1, mid)
    if attrs.get("alength", 4) != 4:
        raise InputError(f"{source}:{i + 1}: motif {mid}: alength={attrs['alength']:g}, expected 4 (DNA)")
    width = None if attrs.get("w") is None else int(attrs["w"])
    rows, i = _meme_rows(lines, i + 1, width, source, mid)
    if not rows:
        raise InputError(f"{source}:{motif_line}: motif {mid} is empty (no matrix rows)")
    if width is not None and len(rows) != width:
        raise InputError(f"{source}:{motif_line}: motif {mid}: w= {width} but {len(rows)} rows")
    probs = np.array(rows, dtype=np.float64)
    for r in range(probs.shape[0]):
        total = 0.0
        for v in probs[r]:
            total += float(v)
        if abs(total - 1.0) > _MEME_NORM_TOL:
            probs[r] = [float(v) / total for v in probs[r]]
    return Motif(id=mid, alt_id=alt, probs=probs, nsites=attrs.get("nsites")), i


def _meme_rows(lines: list[str], i: int, width: int | None, source: str, mid: str) -> tuple[list, int]:
    """Probability rows from ``lines[i]`` on (up to ``width``), and the next line index."""
    rows: list[list[float]] = []
    while i < len(lines):
        t = lines[i].strip()
        if not t:
            if rows:
                break
            i += 1
            continue
        if (width is not None and len(rows) == width) or not re.match(r"^[-+0-9.]", t):
            break
        row = _numbers(t.split())
        if row is None:
            raise InputError(f"{source}:{i + 1}: motif {mid}: row {t!r} is not finite numbers")
        if len(row) != 4:
            raise InputError(f"{source}:{i + 1}: motif {mid}: row has {len(row)} values, expected 4 (A C G T)")
        if any(v < 0 for v in row) or abs(sum(row) - 1.0) > _PROB_ROW_TOL:
            raise InputError(f"{source}:{i + 1}: motif {mid}: row {t!r} is not a probability row")
        rows.append(row)
        i += 1
    return rows, i


def _meme_attrs(line: str, source: str, lineno: int, mid: str) -> dict:
    """``key= value`` pairs of a ``letter-probability matrix:`` line; ``w`` and ``alength``
    must be whole numbers (``w`` >= 0, ``alength`` >= 1), ``nsites`` finite and >= 0."""
    body = line.split(":", 1)[1] if ":" in line else ""
    out = {}
    for key, val in re.findall(r"(\w+)\s*=\s*(\S+)", body):
        number = _number(val)
        if number is None and key in ("w", "alength", "nsites"):
            raise InputError(f"{source}:{lineno}: motif {mid}: {key}= {val!r} is not a finite number")
        if number is not None:  # others (E= can be below 1e-308) are not used
            out[key] = number
    for key, low in (("w", 0), ("alength", 1)):  # w= 0 is reported as an empty motif
        if key in out and (out[key] < low or out[key] != int(out[key])):
            raise InputError(f"{source}:{lineno}: motif {mid}: {key}= {out[key]:g} is not a "
                             f"{'non-negative' if low == 0 else 'positive'} integer")
    if out.get("nsites", 0) < 0:
        raise InputError(f"{source}:{lineno}: motif {mid}: nsites= {out['nsites']:g} is negative")
    return out


def write_meme(motifs, path, background=None, decimals: int = 6) -> None:
    """Write motifs as MEME minimal text.

    Parameters
    ----------
    background : sequence of 4 floats or None
        The ``Background letter frequencies`` line (uniform when None).
    decimals : int
        Digits after the point for probabilities (MEME's own tools write 6).
    """
    bg = background if background is not None else (0.25, 0.25, 0.25, 0.25)
    out = ["MEME version 4", "", "ALPHABET= ACGT", "", "strands: + -", "", "Background letter frequencies"]
    out.append(" ".join(f"{b} {float(f):.6f}" for b, f in zip("ACGT", bg, strict=True)))
    out.append("")
    for m in motifs:
        out.append(f"MOTIF {m.id}" + (f" {m.alt_id}" if m.alt_id else ""))
        nsites = f" nsites= {m.nsites:.10g}" if m.nsites is not None else ""
        out.append(f"letter-probability matrix: alength= 4 w= {m.width}{nsites} E= 0")
        for row in m.probs:
            out.append(" ".join(f"{float(v):.{decimals}f}" for v in row))
        out.append("")
    _write_text(path, "\n".join(out) + "\n")


def _write_text(path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- JASPAR


def parse_jaspar(text: str, source: str = "<text>") -> list[Motif]:
    """Parse JASPAR count matrices: ``>ID NAME`` headers then 4 rows, with or without
    ``A [ ... ]`` letters and brackets (the ``.jaspar`` and ``.pfm`` layouts).
    A file with no header holds one motif named after the file."""
    motifs: list[Motif] = []
    header: tuple[str, str, int] | None = None
    rows: list[tuple[int, str, list[float]]] = []

    def flush():
        if header is None and not rows:
            return
        mid, alt, hline = header if header is not None else (Path(source).stem, "", 1)
        if not rows:
            raise InputError(f"{source}:{hline}: motif {mid} is empty (no count rows)")
        if len(rows) != 4:
            raise InputError(f"{source}:{hline}: motif {mid}: {len(rows)} count rows, expected 4 (A C G T)")
        letters = [r[1] for r in rows]
        if all(letters):
            if sorted(letters) != list("ACGT"):
                raise InputError(f"{source}:{rows[0][0]}: motif {mid}: rows labelled {''.join(letters)}, expected A C G T")
            order = [letters.index(b) for b in "ACGT"]
        else:
            order = [0, 1, 2, 3]
        widths = {len(r[2]) for r in rows}
        if len(widths) != 1:
            raise InputError(f"{source}:{rows[0][0]}: motif {mid}: count rows have different lengths {sorted(widths)}")
        motifs.append(motif_from_counts(mid, alt, [rows[k][2] for k in order], f"{source}:{hline}"))

    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith(">"):
            flush()
            parts = s[1:].split(None, 1)
            if not parts:
                raise InputError(f"{source}:{lineno}: header line without a motif ID")
            header = (parts[0], parts[1].strip() if len(parts) > 1 else "", lineno)
            rows = []
            continue
        mid = header[0] if header else Path(source).stem
        m = re.match(r"^([ACGTacgt])\s*\[?(.*?)\]?\s*$", s)
        letter, body = (m.group(1).upper(), m.group(2)) if m else ("", s.strip("[] "))
        body = body.replace("[", " ").replace("]", " ")
        vals = _numbers(body.split())
        if vals is None:
            raise InputError(f"{source}:{lineno}: motif {mid}: row {s!r} is not finite counts")
        if not vals:
            raise InputError(f"{source}:{lineno}: motif {mid}: empty count row")
        if any(v < 0 for v in vals):
            raise InputError(f"{source}:{lineno}: motif {mid}: row {s!r} has negative or non-finite counts")
        if len(rows) == 4:
            raise InputError(f"{source}:{lineno}: motif {mid}: more than 4 count rows")
        rows.append((lineno, letter, vals))
    flush()
    if not motifs:
        raise InputError(f"{source}: no motifs found")
    return motifs


def _counts_of(m: Motif) -> np.ndarray:
    n = m.nsites if m.nsites is not None and m.nsites > 0 else 100.0
    return m.probs * n


def write_jaspar(motifs, path) -> None:
    """Write motifs as JASPAR ``.jaspar`` counts (probabilities times nsites)."""
    out = []
    for m in motifs:
        out.append(f">{m.id}" + (f"\t{m.alt_id}" if m.alt_id else ""))
        counts = _counts_of(m)
        for b in range(4):
            out.append("ACGT"[b] + "  [ " + " ".join(f"{v:.10g}" for v in counts[:, b]) + " ]")
    _write_text(path, "\n".join(out) + "\n")


# --------------------------------------------------------------------------- TRANSFAC


def parse_transfac(text: str, source: str = "<text>") -> list[Motif]:
    """Parse TRANSFAC matrices (``AC``/``ID`` lines, a ``P0``/``PO`` header naming the
    columns, numbered rows of counts or probabilities, ``//`` between motifs)."""
    motifs: list[Motif] = []
    ac = idn = None
    cols: list[str] | None = None
    rows: list[list[float]] = []
    start = 1
    in_matrix = False

    def flush(lineno):
        nonlocal ac, idn, cols, rows, in_matrix, start
        if cols is None and not rows and ac is None and idn is None:
            return
        mid = ac or idn or f"motif{len(motifs) + 1}"
        if cols is None or not rows:
            raise InputError(f"{source}:{start}: motif {mid} is empty (no P0 matrix rows)")
        counts = np.array(rows, dtype=np.float64)  # [w, len(cols)]
        order = [cols.index(b) for b in "ACGT"]
        motifs.append(motif_from_counts(mid, (idn or "") if ac else "", counts[:, order].T, f"{source}:{start}"))
        ac = idn = cols = None
        rows = []
        in_matrix = False
        start = lineno + 1

    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("//"):
            flush(lineno)
            continue
        tag = s[:2]
        if tag == "AC" and ac is None and not in_matrix:
            ac = s[2:].strip() or None
        elif tag == "ID" and not in_matrix:
            if idn is not None and (cols is not None or rows):
                flush(lineno - 1)
            idn = s[2:].strip() or None
        elif tag in ("P0", "PO"):
            cols = [c.upper() for c in s.split()[1:]]
            if sorted(cols) != list("ACGT"):
                mid = ac or idn or "?"
                raise InputError(f"{source}:{lineno}: motif {mid}: columns {' '.join(cols)} are not A C G T")
            in_matrix = True
        elif in_matrix and re.match(r"^[0-9]+\s", s + " ") and tag not in ("XX",):
            rows.append(_transfac_row(s, f"{source}:{lineno}: motif {ac or idn or '?'}"))
        elif in_matrix and tag == "XX":
            in_matrix = False
    flush(len(lines))
    if not motifs:
        raise InputError(f"{source}: no TRANSFAC matrices found")
    return motifs


def _transfac_row(s: str, where: str) -> list[float]:
    """The A C G T counts of a numbered matrix row: four finite non-negative numbers,
    then optionally a consensus letter (never a fifth number)."""
    parts = s.split()
    vals = _numbers(parts[1:5])
    extra = parts[5:]
    if (vals is None or len(vals) != 4 or any(v < 0 for v in vals)
            or (extra and (len(extra) > 1 or _number(extra[0]) is not None))):
        raise InputError(f"{where}: row {s!r} is not 4 finite non-negative counts")
    return vals


def write_transfac(motifs, path) -> None:
    """Write motifs as TRANSFAC matrices (counts = probabilities times nsites)."""
    out = []
    for m in motifs:
        out += [f"AC {m.id}", "XX"]
        if m.alt_id:
            out += [f"ID {m.alt_id}", "XX"]
        out.append("P0      A      C      G      T")
        for i, row in enumerate(_counts_of(m)):
            out.append(f"{i + 1:02d} " + " ".join(f"{v:.10g}" for v in row))
        out += ["XX", "//"]
    _write_text(path, "\n".join(out) + "\n")
