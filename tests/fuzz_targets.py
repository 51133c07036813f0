"""Fuzz targets shared by tests/test_fuzz_parsers.py (a few dozen examples each, in CI)
and fuzz/run_fuzz.py (thousands).

Each ``check_*`` function takes one generated input and asserts the only two outcomes a
parser may have: a result that matches a plain reference (or round-trips), or an
``InputError`` / exit status 2 with a one-line message naming the input. Anything else
(another exception, a warning, a traceback, a silently different result) fails.
"""
from __future__ import annotations

import atexit
import contextlib
import gzip
import json
import re
import shutil
import tempfile
import warnings
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from genesae_fast.errors import InputError

# --------------------------------------------------------------------------- common

# Tokens that broke or could break number parsing somewhere.
NASTY_TOKENS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "1e309", "-1", "-0", "1_0", "0x10", "", " ",
                "1e-400", "0", "4.5", "1e5", "99999999999999999999999", "\u0665", "\x00", "\xe9", "+", "-", ".",
                "?", "X", "1,5", "1.5.2", "e5", "5e", "0.25", "100", "1e30"]

_SCRATCH = Path(tempfile.mkdtemp(prefix="genesae-fuzz-"))
atexit.register(shutil.rmtree, _SCRATCH, True)


def scratch(name: str) -> Path:
    """A path in a per-process scratch folder (overwritten by every example)."""
    return _SCRATCH / name


def assert_one_line_error(exc: BaseException, source: str) -> None:
    """The error a parser may raise: InputError, one line, naming the input."""
    assert isinstance(exc, InputError), f"{type(exc).__name__}: {exc}"
    msg = str(exc)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
    assert source in msg, f"{source!r} not in {msg!r}"


@contextlib.contextmanager
def no_warnings():
    """Turn warnings into errors: a parser must not warn, then carry on."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def outcome(fn, source: str):
    """``("ok", result)`` or ``("error", message)``; any other exception propagates."""
    try:
        with no_warnings():
            return "ok", fn()
    except InputError as exc:
        assert_one_line_error(exc, source)
        return "error", str(exc)


def mutate_lines(draw, text: str, tokens=NASTY_TOKENS, max_edits: int = 4) -> str:
    """Apply a few random edits to ``text``: replace a word with a nasty token, delete,
    duplicate or swap lines, insert random text, truncate."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(0, max_edits))):
        op = draw(st.sampled_from(["token", "token", "token", "delete", "dup", "swap", "insert", "truncate"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "token" and lines:
            words = re.split(r"(\s+)", lines[i])
            j = draw(st.integers(0, max(0, len(words) - 1)))
            words[j] = draw(st.sampled_from(tokens))
            lines[i] = "".join(words)
        elif op == "delete" and lines:
            del lines[i]
        elif op == "dup" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=20)))
        elif op == "truncate":
            text2 = "\n".join(lines)
            return text2[:draw(st.integers(0, len(text2)))]
    return "\n".join(lines)


# --------------------------------------------------------------------------- FASTA

_IUPAC = b"ACGTURYSWKMBDHVN"
_CODE = {ord(c): i for i, c in enumerate("ACGT")}


def reference_fasta(data: bytes):
    """A plain Python FASTA reader with the documented grammar: ``[(name, description,
    codes, mask)]``, or ``("error", line)`` (line 0: bad gzip data)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return "error", 0
    records = []
    for lineno, line in enumerate(re.split(rb"\r\n|\r|\n", data), 1):
        if not line:
            continue
        if line[:1] == b">":
            if b"\0" in line:
                return "error", lineno
            header = line[1:].decode("utf-8", errors="replace").strip().split(maxsplit=1)
            records.append((header[0] if header else "", header[1] if len(header) > 1 else "", [], []))
            continue
        if line[:1] == b";":
            continue
        if not records:
            return "error", lineno
        codes, mask = records[-1][2], records[-1][3]
        for c in line:
            if c in _IUPAC or (65 <= c - 32 <= 90 and bytes([c - 32]) in _IUPAC and c >= 97):
                codes.append(_CODE.get(c if c < 97 else c - 32, 4))
                mask.append(c >= 97)
            elif c == ord("-"):
                codes.append(4)
                mask.append(False)
            elif c not in b" \t\v\f":
                return "error", lineno
    if not records:
        return "error", len(re.split(rb"\r\n|\r|\n", data))
    return records


def fasta_bytes():
    """FASTA-like bytes: headers, sequence lines (valid and invalid characters), comments,
    blank lines, three line endings, stray binary."""
    seq_line = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in b"\r\n>")) | st.text(
        alphabet="ACGTNacgtnRYKM- \t", max_size=40).map(str.encode)
    header = st.text(max_size=20).map(lambda t: b">" + t.encode("utf-8", "surrogatepass")
                                      .replace(b"\n", b" ").replace(b"\r", b" "))
    line = st.one_of(header, seq_line, seq_line, st.just(b""), st.just(b";comment"), st.binary(max_size=8))
    eol = st.sampled_from([b"\n", b"\r\n", b"\r"])
    text = st.lists(st.tuples(line, eol), max_size=12).map(lambda xs: b"".join(a + b for a, b in xs))
    gz = st.tuples(text, st.integers(0, 200)).map(lambda t: gzip.compress(t[0])[:len(t[0]) + 20 - t[1] % 25])
    return st.one_of(text, text, text, gz)


def check_fasta(data: bytes) -> None:
    """read_fasta on a file of ``data`` equals the reference reader, error lines included."""
    from genesae_fast.sequences import read_fasta

    path = scratch("x.fa")
    path.write_bytes(data)
    kind, got = outcome(lambda: read_fasta(path), str(path))
    want = reference_fasta(data)
    if kind == "error":
        assert isinstance(want, tuple) and want[0] == "error", (got, want)
        assert ("gzip" in got) if want[1] == 0 else (f"line {want[1]}:" in got), (got, want)
        return
    assert not (isinstance(want, tuple) and want[0] == "error"), (want, got)
    assert [(r.name, r.description) for r in got] == [(w[0], w[1]) for w in want]
    for r, w in zip(got, want, strict=True):
        assert r.codes.tolist() == w[2] and r.softmask.tolist() == w[3]


# --------------------------------------------------------------------------- motifs

def random_motifs(draw, n_max: int = 3):
    """1-n_max motifs with count-like probabilities and nsites."""
    from genesae_fast.motifs import Motif

    out = []
    for i in range(draw(st.integers(1, n_max))):
        w = draw(st.integers(1, 12))
        counts = np.array(draw(st.lists(st.lists(st.integers(0, 60), min_size=4, max_size=4), min_size=w,
                                        max_size=w)), dtype=np.float64)
        counts[:, 0] += 1
        nsites = float(draw(st.integers(1, 1000)))
        out.append(Motif(id=f"M{i}.{draw(st.integers(1, 3))}", alt_id=draw(st.sampled_from(["", "TF", "Sox2"])),
                         probs=counts / counts.sum(1, keepdims=True), nsites=nsites))
    return out


def check_motif_invariants(motifs, source: str) -> None:
    """What every parsed motif must satisfy, whatever the file said; and it must pass
    FIMO's pseudocount and log-odds without a non-finite value."""
    from genesae_fast.fimo_pvalues import apply_pseudocount

    assert isinstance(motifs, list) and motifs, source
    bg = np.full(4, 0.25)
    for m in motifs:
        p = m.probs
        assert p.dtype == np.float64 and p.ndim == 2 and p.shape[1] == 4 and p.shape[0] >= 1, p.shape
        assert np.all(np.isfinite(p)) and np.all(p >= 0), p
        assert np.allclose(p.sum(1), 1.0, atol=1e-5), p.sum(1)
        assert m.nsites is None or (np.isfinite(m.nsites) and m.nsites >= 0), m.nsites
        q = apply_pseudocount(p, m.nsites, bg, 0.1)
        assert np.all(np.isfinite(np.log(q / bg))), q


MOTIF_FORMATS = ("meme", "jaspar", "transfac")


def write_motifs(motifs, fmt: str, path: Path) -> None:
    from genesae_fast.motifs import write_jaspar, write_meme, write_transfac

    {"meme": write_meme, "jaspar": write_jaspar, "transfac": write_transfac}[fmt](motifs, path)


def check_motif_round_trip(motifs, fmt: str) -> None:
    """Written then loaded (format sniffed), the motifs come back: ids, names, matrices."""
    from genesae_fast.motifs import load_motifs

    path = scratch(f"m.{fmt}")
    write_motifs(motifs, fmt, path)
    with no_warnings():
        back = load_motifs(path)
    assert [m.id for m in back] == [m.id for m in motifs]
    assert [m.alt_id for m in back] == [m.alt_id for m in motifs]
    for a, b in zip(back, motifs, strict=True):
        np.testing.assert_allclose(a.probs, b.probs, atol=2e-6 if fmt == "meme" else 1e-9)
        assert a.nsites == b.nsites if fmt == "meme" else abs(a.nsites - b.nsites) <= 1e-6 * b.nsites


def check_motif_text(text: str, fmt: str) -> None:
    """A mutated motif file: parsed motifs that satisfy every invariant, or one line."""
    from genesae_fast.motifs import load_motifs, parse_jaspar, parse_meme, parse_transfac

    parse = {"meme": parse_meme, "jaspar": parse_jaspar, "transfac": parse_transfac}[fmt]
    kind, got = outcome(lambda: parse(text, "fuzz.txt"), "fuzz.txt")
    if kind == "ok":
        check_motif_invariants(got, "fuzz.txt")
    path = scratch(f"mut.{fmt}")
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    kind, got = outcome(lambda: load_motifs(path), str(path))
    if kind == "ok":
        check_motif_invariants(got, str(path))


# --------------------------------------------------------------------------- GFF3

GFF_SEQS = {"chr1": 400, "chr2": 250}
_GFF_FEATURES = ("CDS", "RBS", "ribosome_entry_site", "Shine_Dalgarno_sequence")


def gff_records():
    from genesae_fast.sequences import Record

    rng = np.random.default_rng(7)
    return [Record(name, "", rng.integers(0, 4, n).astype(np.uint8), np.zeros(n, bool))
            for name, n in GFF_SEQS.items()]


def reference_gff(data: bytes):
    """The strict GFF3 rules as a plain reader: sorted ``[(seq, start, end, strand)]`` of
    merged CDS (by seqid, strand, ID), or ``("error", line)``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "error", data.count(b"\n", 0, exc.start) + 1
    names = list(GFF_SEQS)
    genes: dict = {}
    for n, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
        if line.startswith("##FASTA"):
            break
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 9:
            return "error", n
        if cols[2] not in _GFF_FEATURES:
            continue
        ok_int = all(c and all("0" <= ch <= "9" for ch in c) for c in cols[3:5])
        if cols[0] not in GFF_SEQS or not ok_int or cols[6] not in ("+", "-"):
            return "error", n
        s, e = int(cols[3]) - 1, int(cols[4])
        if not 0 <= s < e <= GFF_SEQS[cols[0]]:
            return "error", n
        if cols[2] == "CDS":
            m = re.search(r"(?:^|;)ID=([^;]+)", cols[8])
            key = (cols[0], cols[6], m.group(1) if m else n)
            genes.setdefault(key, []).append((s, e))
    out = [(names.index(k[0]), min(p[0] for p in v), max(p[1] for p in v), 1 if k[1] == "+" else -1)
           for k, v in genes.items()]
    return sorted(out, key=lambda g: (g[0], g[1]))


def gff_bytes():
    """GFF3-like text: CDS (some sharing IDs across strands/seqids), RBS and other
    features, comments, with nasty tokens in any column and stray bytes."""
    col_start = st.integers(-2, 420).map(str) | st.sampled_from(NASTY_TOKENS)
    line = st.builds(
        lambda seqid, ftype, start, length, strand, ident: "\t".join(
            [seqid, "fz", ftype, start, str(int(start) + length) if start.isdigit() else start, ".", strand, "0",
             f"ID={ident};Name=x"]),
        st.sampled_from(["chr1", "chr2", "chr3", "chr1 "]),
        st.sampled_from(["CDS", "CDS", "CDS", "RBS", "gene", "exon"]),
        col_start, st.integers(-3, 120),
        st.sampled_from(["+", "-", "+", "-", ".", "?", "X", "", "+-"]),
        st.sampled_from(["a", "b", "c", "d"]),
    )
    extra = st.sampled_from(["##gff-version 3", "# comment", "", "chr1\tfz\tCDS\t1\t10", "##FASTA"])
    raw = st.binary(max_size=6)
    parts = st.lists(st.one_of(line.map(str.encode), line.map(str.encode), extra.map(str.encode), raw),
                     max_size=10)
    return st.tuples(parts, st.sampled_from([b"\n", b"\r\n"])).map(lambda t: t[1].join(t[0]))


def check_gff(data: bytes) -> None:
    """read_gff3 equals the reference reader, error lines included."""
    from genesae_fast.annotate.genes import read_gff3

    path = scratch("g.gff3")
    path.write_bytes(data)
    kind, got = outcome(lambda: read_gff3(path, gff_records()), str(path))
    want = reference_gff(data)
    if kind == "error":
        assert isinstance(want, tuple) and want[0] == "error", (got, want)
        assert f"line {want[1]}:" in got, (got, want)
        return
    assert not isinstance(want, tuple), (want, got)
    assert sorted((g.seq, g.start, g.end, g.strand) for g in got) == sorted(want)
    assert all(g.strand in (1, -1) for g in got)


# --------------------------------------------------------------------------- store metadata

STORE_SHAPE = (50, 4, 16)  # rows, d, chunk rows


def base_store() -> Path:
    """A small complete store (built once per process)."""
    path = scratch("base.zarr")
    if not (path / "zarr.json").exists():
        from genesae_fast.store import StoreWriter

        n, d, r = STORE_SHAPE
        x = np.random.default_rng(1).standard_normal((n, d)).astype(np.float32)
        w = StoreWriter.create(path, n_rows=n, d=d, config={"fuzz": 1}, chunk_rows=r, attrs={
            "genome": {"sequences": [{"name": "a", "length": 3 * n, "row_start": 0, "row_end": n}]}})
        for k in range(w.n_chunks):
            a, b = w.chunk_bounds(k)
            w.write_chunk(k, x[a:b])
        pos = np.arange(n) * 3
        w.write_coordinates(np.zeros(n, np.int32), pos, pos + 3, np.arange(n) % 5)
        w.finalize()
    return path


def json_values():
    """Replacement values for a JSON field: other types, edge numbers, near-misses."""
    return st.one_of(
        st.none(), st.booleans(), st.integers(-3, 3), st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
        st.lists(st.integers(-2, 2), max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.sampled_from([0, 1, 16, 50, 4, 1e-30, 1e300, "float16", "bfloat16", "float32", True]),
    )


def _json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):
            yield from _json_paths(v, prefix + (i,))


def _set_path(obj, path, value):
    if not path:
        return value
    cur = obj
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value
    return obj


STORE_FILES = ["zarr.json", "_progress/chunk-000000000.json", "_progress/chunk-000000003.json",
               "_progress/coords.json", "activations/zarr.json", "bp_start/zarr.json"]


def store_mutations():
    """(file in the store, JSON path index, edit): the edit replaces the value at one
    path, deletes the key, or corrupts the file's text."""
    return st.tuples(st.sampled_from(STORE_FILES), st.integers(0, 10**6),
                     st.one_of(json_values().map(lambda v: ("set", v)), st.just(("delete", None)),
                               st.binary(max_size=12).map(lambda b: ("raw", b))))


def _apply_store_mutation(root: Path, mutation) -> None:
    name, index, (op, value) = mutation
    f = root / name
    if op == "raw":
        f.write_bytes(f.read_bytes()[: index % 200] + value)
        return
    try:
        doc = json.loads(f.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return  # an earlier raw edit broke the JSON: nothing to edit field-wise
    group_attrs = name == "zarr.json"  # the group's: edit its attributes; an array's: all of it
    if group_attrs and not (isinstance(doc, dict) and "attributes" in doc):
        return
    target = doc["attributes"] if group_attrs else doc
    paths = list(_json_paths(target))
    path = paths[index % len(paths)]
    if op == "delete":
        if not path:
            return
        parent = target
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
    else:
        target = _set_path(target, path, value)
        if group_attrs:
            doc["attributes"] = target
        else:
            doc = target
    f.write_text(json.dumps(doc))


_STORE_FIXTURE: list = []


def _store_fixture():
    """(reference store, its rows, its coordinates, a copy to edit), made once."""
    from genesae_fast.store import ActivationStore

    if not _STORE_FIXTURE:
        base = base_store()
        ref = ActivationStore.open(base)
        root = scratch("mut.zarr")
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(base, root)
        _STORE_FIXTURE.append((ref, ref.read_rows(0, ref.n_rows), ref.coordinates(), root))
    return _STORE_FIXTURE[0]


def check_store_mutation(mutations) -> None:
    """An edited store either reads exactly as before (statistics, rows, batches,
    coordinates) or stops with one line naming the store."""
    from genesae_fast.store import ActivationStore

    ref, want_rows, want_coords, root = _store_fixture()
    for name in STORE_FILES:  # undo the previous example's edits (only these files change)
        (root / name).write_bytes((ref._backend.root / name).read_bytes())
    for m in mutations:
        _apply_store_mutation(root, m)

    def read_all():
        s = ActivationStore.open(root)
        rows = s.read_rows(0, s.n_rows)
        batches = np.concatenate([b.numpy() for b in s.batches(7, shuffle=False, mode="stream")])
        coords = s.coordinates() if s.has_coordinates else want_coords
        return s, rows, batches, coords

    kind, got = outcome(read_all, str(root))
    if kind == "ok":
        s, rows, batches, coords = got
        assert np.array_equal(rows, want_rows) and np.array_equal(batches, want_rows)
        assert all(np.array_equal(a, b) for a, b in zip(coords, want_coords, strict=True))
        assert np.array_equal(s.mean, ref.mean) and s.norm_scale == ref.norm_scale


# --------------------------------------------------------------------------- CLI counts

_COUNT_RE = re.compile(r"\s*([0-9]+|[0-9]*\.[0-9]+)(?:[eE]\+?([0-9]{1,4}))?\s*([kKmMgGbB]?)\s*")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def reference_count(text: str, maximum: int = 10**15) -> int | None:
    """The count a ``--tokens``/``--batch`` value means (exact rational arithmetic), or
    None when it must be refused."""
    m = _COUNT_RE.fullmatch(text)
    if not m:
        return None
    value = Fraction(m.group(1)) * 10 ** int(m.group(2) or 0) * _SUFFIX[m.group(3).lower()]
    if value.denominator != 1 or not 1 <= value <= maximum:
        return None
    return int(value)


def count_texts():
    """Values for count options: numbers in every notation, edge sizes and junk."""
    number = st.one_of(st.integers(-5, 10**6).map(str), st.integers(0, 10**40).map(str),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.builds(lambda a, b, e: f"{a}.{b}e{e}", st.integers(0, 99), st.integers(0, 999),
                                 st.integers(0, 40)))
    return st.one_of(number, st.builds(lambda n, s: f"{n}{s}", number, st.sampled_from(["k", "M", "g", "B", "x"])),
                     st.sampled_from(NASTY_TOKENS), st.text(max_size=8))


def assert_cli_refusal(result, option: str) -> None:
    """Exit status 2, no traceback, and one ``Error:`` line naming the option."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    others = [ln for ln in result.output.splitlines()
              if ln.strip() and not ln.startswith(("Error:", "Usage:", "Try "))]
    assert len(errors) == 1 and not others, result.output
    assert option in errors[0], (option, errors[0])


def check_train_count(option: str, text: str) -> None:
    """``genesae train OPTION TEXT`` against a missing store: a count the reference
    accepts reaches the store check; any other value is refused naming the option."""
    from click.testing import CliRunner

    from genesae_fast.cli import cli

    missing = str(scratch("no-such-store.zarr"))
    result = CliRunner().invoke(cli, ["train", "--store", missing, "--out", str(scratch("sae")), option, text])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if reference_count(text) is None:
        assert_cli_refusal(result, option)
    else:
        assert result.exit_code == 2 and result.output.strip() == f"Error: {missing}: no such store", result.output


def kmer_reference(codes_list, k: int, min_count: int) -> dict[str, int]:
    """k-mer counts by brute force (k-mers with a non-ACGT base skipped)."""
    counts: dict[str, int] = {}
    for codes in codes_list:
        s = "".join("ACGTN"[c] for c in codes)
        for i in range(len(s) - k + 1):
            w = s[i:i + k]
            if "N" not in w:
                counts[w] = counts.get(w, 0) + 1
    return {w: c for w, c in counts.items() if c >= min_count}


def check_kmers_counts(k: str, threads: str, min_count: str, k_max: int = 31) -> None:
    """``genesae kmers -k K --threads T --min-count C`` on a small genome: the brute-force
    counts, or a refusal naming the offending option."""
    from click.testing import CliRunner

    from genesae_fast.cli import cli
    from genesae_fast.sequences import read_fasta

    genome = scratch("k.fa")
    if not genome.exists():
        rng = np.random.default_rng(3)
        genome.write_text(">a\n" + "".join(rng.choice(list("ACGTN"), 300, p=[.24, .24, .24, .24, .04])) +
                          "\n>b\nACGTACGTTTGACCA\n")
    result = CliRunner().invoke(cli, ["kmers", "--genome", str(genome), "-k", k, "--threads", threads,
                                      "--min-count", min_count])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)

    def plain_int(text, lo, hi):  # click's INT: Python's int() of the text, then the range
        try:
            value = int(text)
        except ValueError:
            return None
        return value if lo <= value <= hi else None

    kk, tt, cc = plain_int(k, 1, k_max), plain_int(threads, 1, 2**63), plain_int(min_count, 1, 2**63)
    if kk is None or tt is None or cc is None:
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1, result.output
        return
    assert result.exit_code == 0, result.output
    want = kmer_reference([r.codes for r in read_fasta(genome)], kk, cc)
    lines = result.stdout.splitlines()
    assert lines[0] == "kmer\tcount", lines[:1]
    got = dict(line.split("\t") for line in lines[1:])
    assert {w: int(c) for w, c in got.items()} == want


# --------------------------------------------------------------------------- registry

@st.composite
def motif_round_trip_case(draw):
    return random_motifs(draw), draw(st.sampled_from(MOTIF_FORMATS))


@st.composite
def motif_mutated_case(draw):
    fmt = draw(st.sampled_from(MOTIF_FORMATS))
    path = scratch(f"base.{fmt}")
    write_motifs(random_motifs(draw), fmt, path)
    return mutate_lines(draw, path.read_text()), fmt


def kmers_cases(wide: bool):
    """(k, threads, min_count) texts. Narrow (CI): threads <= 8 and min-count < 2^32,
    the ranges the native counter handled before issue 14's thread cap and 64-bit
    tallies (engineer "kmers"); wide (fuzz/run_fuzz.py): everything."""
    threads = st.integers(-2, 10**6 if wide else 8).map(str)
    min_count = st.integers(-2, 10**30 if wide else 2**32).map(str)
    junk = st.sampled_from(["x", "", "1.5", "nan", " 2", "1_0", "+3"])
    return st.tuples(st.one_of(st.integers(-2, 40).map(str), st.sampled_from(NASTY_TOKENS)),
                     st.one_of(threads, junk), st.one_of(min_count, junk))


def targets(wide: bool = False) -> dict:
    """name -> (strategy of argument tuples, check function)."""
    return {
        "fasta": (st.tuples(fasta_bytes()), check_fasta),
        "motif_round_trip": (motif_round_trip_case(), check_motif_round_trip),
        "motif_mutated": (motif_mutated_case(), check_motif_text),
        "gff3": (st.tuples(gff_bytes()), check_gff),
        "store_metadata": (st.tuples(st.lists(store_mutations(), min_size=1, max_size=2)), check_store_mutation),
        "train_counts": (st.tuples(st.sampled_from(["--tokens", "--batch"]), count_texts()), check_train_count),
        "kmers_counts": (kmers_cases(wide), check_kmers_counts),
        # the campaign also runs the CI ranges, so a crash in the wide ones hides nothing else
        **({"kmers_counts_narrow": (kmers_cases(False), check_kmers_counts)} if wide else {}),
    }
