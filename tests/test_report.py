"""The HTML atlas: self-contained, and working in a real headless browser."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from genesae_fast.annotate.report import read_metrics, svg_bars, svg_histogram, svg_lines

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
# where Debian's chromium-driver (what .ci/run installs) and other distributions put the driver
CHROMEDRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver",
                                 "/usr/lib/chromium-browser/chromedriver") if p and Path(p).exists()), None)


@pytest.fixture(scope="module")
def ann_dir(tmp_path_factory):
    """A small annotation folder from synthetic features over real sequence (no store)."""
    from genesae_fast.annotate.concepts import SparseActs
    from genesae_fast.annotate.core import Config, Genome, annotate_encoded
    from genesae_fast.annotate.encode import Encoded
    from genesae_fast.annotate.folder import write_result
    from genesae_fast.annotate.genes import predict_genes
    from genesae_fast.data import genome_path
    from genesae_fast.motifs import load_motifs, shuffle_columns
    from genesae_fast.scan import scan_motifs
    from genesae_fast.sequences import Record, read_fasta

    d = tmp_path_factory.mktemp("report")
    r = read_fasta(genome_path())[0]
    n = 30_000
    rec = Record(r.name, "", r.codes[:n].copy(), r.softmask[:n].copy())
    rng = np.random.default_rng(3)
    motifs = load_motifs()[:12]
    # a hostile motif name: it must neither end the page's JSON script nor comment it out
    for m in motifs:
        m.alt_id = "<!--<script>"
    hits = scan_motifs([rec], motifs, threads=1)
    ctrl = scan_motifs([rec], [shuffle_columns(m, rng) for m in motifs], threads=1)
    dense = np.maximum(rng.normal(size=(n, 10)) - 1.5, 0).astype(np.float32)
    for s, m in zip(hits.start, hits.motif, strict=True):  # feature m fires at the end of motif m's hits
        dense[min(s + 8, n - 1), m % 10] += 3
    enc = Encoded(SparseActs.from_dense(dense), SparseActs.from_dense(dense[:, :4]), 0.05, 2.0)
    calls = predict_genes([rec])
    res = annotate_encoded(Genome.from_records([rec]), np.zeros(n, np.int64), np.arange(n), np.arange(n) + 1, enc,
                           motifs=motifs, real_hits=hits, control_hits=ctrl, gene_calls=calls,
                           cfg=Config(min_active=5, gene_shifts=2))
    res.summary["sae"] = str(d / "sae")
    write_result(res, d / "ann", Genome.from_records([rec]), motifs, hits)
    # gene calls as BED6, the form the atlas reads (genes.bed)
    (d / "ann" / "genes.bed").write_text("".join(f"{rec.name}\t{c.start}\t{c.end}\tgene_{i}\t0\t{'+' if c.strand > 0 else '-'}\n"
                                                 for i, c in enumerate(calls)))
    (d / "sae").mkdir()
    lines = [json.dumps({"tokens": 1000 * (i + 1), "fvu": 1.0 / (i + 1), "l0": 8.0}) for i in range(20)]
    (d / "sae" / "metrics.jsonl").write_text("\n".join(lines) + "\n{broken")
    return d / "ann"


def test_svg_helpers():
    svg = svg_histogram([0.1, 0.1, 0.5, float("nan")], bins=4, title="t")
    assert svg.startswith("<svg") and svg.count("<rect") == 4
    assert svg_bars([1, 2], ["a", "b"]).count("<rect") == 2
    assert "no data" in svg_lines({})
    assert svg_lines({"fvu": ([1, 2, 3], [1.0, 0.5, 0.2])}, logy=True).count("<polyline") == 1


def test_read_metrics_skips_a_cut_line(ann_dir):
    m = read_metrics(ann_dir.parent / "sae")
    assert list(m) == ["fvu", "l0"] and m["fvu"][0].shape == (20,)
    assert read_metrics(None) == {} and read_metrics(ann_dir) == {}


def test_report_is_self_contained(ann_dir):
    from genesae_fast.cli import cli

    r = CliRunner().invoke(cli, ["report", str(ann_dir)])
    assert r.exit_code == 0, r.output
    page = (ann_dir / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|url\(|@import", page)
    # the only URL is the SVG namespace name, which is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert "training: fvu" in page and "best motif F1" in page
    assert not (ann_dir / "report.html.partial").exists()


def test_report_of_a_non_annotation_folder_is_a_clear_error(tmp_path):
    from genesae_fast.cli import cli

    r = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "not an annotation folder" in r.output and "Traceback" not in r.output


needs_chromium = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (the CI script installs it)"),
    pytest.mark.skipif(Path(CHROMIUM).exists() and CHROMEDRIVER is None,
                       reason="chromium is installed without chromedriver (apt-get install chromium-driver)"),
]


@pytest.fixture
def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def severe(driver):
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


@needs_chromium[0]
@needs_chromium[1]
def test_report_in_headless_chromium(ann_dir, tmp_path, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from genesae_fast.annotate.report import write_report

    page = write_report(ann_dir, tmp_path / "atlas.html", sae=ann_dir.parent / "sae")
    driver = chrome
    driver.get(page.resolve().as_uri())
    wait = WebDriverWait(driver, 20)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ftable tbody tr"))
    rows = lambda: driver.find_elements(By.CSS_SELECTOR, "#ftable tbody tr")
    first_col = lambda: [int(r.find_element(By.CSS_SELECTOR, "td").text) for r in rows()]
    assert len(rows()) == 10
    # sort by feature: ascending, then descending
    header = driver.find_elements(By.CSS_SELECTOR, "#ftable th")[0]
    header.click()
    assert first_col() == sorted(first_col())
    header.click()
    assert first_col() == sorted(first_col(), reverse=True)
    # filter: typing a motif id keeps only rows mentioning it
    motif = driver.execute_script("return JSON.parse(document.getElementById('data').textContent).rows[0][3];")
    box = driver.find_element(By.ID, "search")
    box.send_keys(motif)
    shown = rows()
    assert 1 <= len(shown) <= 10 and all(motif.lower() in r.text.lower() for r in shown)
    box.clear()
    box.send_keys("no-such-feature-text")
    assert len(rows()) == 0
    box.clear()
    box.send_keys(" ")
    box.clear()
    driver.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    assert len(rows()) == 10
    # a feature's card opens with its logo, histogram and examples
    rows()[0].click()
    card = driver.find_element(By.ID, "card")
    wait.until(lambda d: card.is_displayed())
    assert card.find_elements(By.CSS_SELECTOR, "svg.logo")
    assert card.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert card.find_elements(By.CSS_SELECTOR, ".ex span.on")
    driver.save_screenshot(str(tmp_path / "card.png"))
    assert (tmp_path / "card.png").stat().st_size > 10_000
    # the card's address opens it; closing clears it
    assert driver.execute_script("return location.hash") == "#feature-" + rows()[0].find_element(By.CSS_SELECTOR, "td").text
    driver.find_element(By.ID, "close").click()
    assert not card.is_displayed() and driver.execute_script("return location.hash") == ""
    assert severe(driver) == []


@needs_chromium[0]
@needs_chromium[1]
def test_card_hash_genome_view_and_hostile_names_in_chromium(ann_dir, tmp_path, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from genesae_fast.annotate.report import write_report

    page = write_report(ann_dir, tmp_path / "atlas.html", sae=ann_dir.parent / "sae")
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', page.read_text(), re.S).group(1))
    feature = next(f for f, c in data["cards"].items() if c["x"] and c["mh"])
    chrome.get(page.resolve().as_uri() + f"#feature-{feature}")
    wait = WebDriverWait(chrome, 60)
    card = chrome.find_element(By.ID, "card")
    wait.until(lambda d: card.is_displayed())
    assert card.find_element(By.TAG_NAME, "h2").text.startswith(f"Feature {feature}")
    # the genome view: igv.js draws the reference, the activation, gene calls and motif hits
    wait.until(lambda d: d.execute_script("const g = document.getElementById('genome'); return g && g.dataset.ready"))
    assert chrome.execute_script("return document.getElementById('genome').dataset.ready") == "1"
    # igv.js draws inside a shadow root on the host element
    labels = chrome.execute_script("return Array.from(document.getElementById('genome').shadowRoot"
                                   ".querySelectorAll('.igv-track-label')).map(e => e.textContent)")
    assert labels[:2] == [f"feature {feature} activation", "gene calls"] and labels[2].startswith("motif hits"), labels
    assert chrome.execute_script("return document.getElementById('genome').shadowRoot.querySelectorAll('canvas').length") >= 4
    assert data["genes"]  # gene calls near the examples were embedded for the gene track
    n_ex = len(data["cards"][feature]["x"])
    assert len(card.find_elements(By.CSS_SELECTOR, "#locus option")) == n_ex
    chrome.save_screenshot(str(tmp_path / "genome.png"))
    # the hostile motif name arrived as data, and the table still rendered
    assert chrome.execute_script("return JSON.parse(document.getElementById('data').textContent).cards[%s].mh.length" % json.dumps(feature)) > 0
    assert "<!--<script>" in json.dumps(data) and len(chrome.find_elements(By.CSS_SELECTOR, "#ftable tbody tr")) == 10
    # another feature through the address bar (hashchange), then a feature that does not exist
    other = next(f for f in data["cards"] if f != feature)
    chrome.execute_script(f"location.hash = 'feature-{other}'")
    wait.until(lambda d: card.find_element(By.TAG_NAME, "h2").text.startswith(f"Feature {other}"))
    wait.until(lambda d: d.execute_script("const g = document.getElementById('genome'); return g && g.dataset.ready"))
    # non-significant best motifs show as "none", greyed
    motif_cells = [r.find_elements(By.CSS_SELECTOR, "td")[3] for r in chrome.find_elements(By.CSS_SELECTOR, "#ftable tbody tr")]
    assert all(c.text == "none" and "ns" in c.get_attribute("class") for c in motif_cells)
    assert severe(chrome) == []


def test_embedded_json_cannot_end_or_comment_out_the_script():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from genesae_fast.annotate.report import safe_json

    @settings(max_examples=300, deadline=None)
    @given(st.recursive(st.text() | st.integers() | st.none(), lambda c: st.lists(c) | st.dictionaries(st.text(), c),
                        max_leaves=8))
    def check(obj):
        text = safe_json(obj)
        assert json.loads(text) == obj
        assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}

    check()
    assert safe_json(["<!--<script>", "</script>"]) == '["\\u003c!--\\u003cscript\\u003e","\\u003c/script\\u003e"]'


def test_table_shows_no_motif_for_a_non_significant_best_motif():
    from genesae_fast.annotate.report import table_rows

    feats = {"feature": ["0", "1", "2"], "motif": ["MA1", "MA2", "MA3"], "motif_name": ["A", "B", "C"],
             "motif_qvalue": ["0.01", "0.6", "NA"], "concept": ["CDS(+)", "RBS(+)", "CDS(-)"],
             "concept_qvalue": ["0.049", "0.05", "0.9"]}
    rows = table_rows(feats, 0.05)
    assert [r[3:5] for r in rows] == [["MA1", "A"], ["none", ""], ["none", ""]]
    assert [r[7] for r in rows] == ["CDS(+)", "none", "none"]
    assert [r[6] for r in rows] == ["0.01", "0.6", "NA"]  # the q-values stay visible


def test_motif_hits_kept_are_exactly_those_near_examples(tmp_path):
    """The interval merge + binary search against a brute-force overlap test."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from genesae_fast.annotate.report import read_motif_hits

    iv = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 200), st.integers(1, 40))

    @settings(max_examples=150, deadline=None)
    @given(st.lists(iv, max_size=8), st.lists(iv, max_size=30))
    def check(windows, hits):
        examples = {0: [[c, s, 1.0, s, "A" * w, "9" * w] for c, s, w in windows]}
        bed = tmp_path / "hits.bed"
        bed.write_text("".join(f"{c}\t{s}\t{s + w}\tM{i}_X\t10\t+\n" for i, (c, s, w) in enumerate(hits)))
        expected = sorted([c, s, s + w, "+", f"M{i}_X"] for i, (c, s, w) in enumerate(hits)
                          if any(c == c2 and s < s2 + w2 and s + w > s2 for c2, s2, w2 in windows))
        assert read_motif_hits(bed, examples) == expected

    check()
    assert read_motif_hits(tmp_path / "absent.bed", {}) == []


def test_wider_activation_windows_and_genes_are_read(ann_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genesae_fast.annotate.report import collect, read_genes

    ann = tmp_path / "ann"
    shutil.copytree(ann_dir, ann)
    ex = pq.read_table(ann / "examples.parquet").to_pydict()
    lo = [max(s - 200, 0) for s in ex["context_start"]]
    acts = [[0.0] * 150 + [float(a)] + [0.0] * 249 for a in ex["activation"]]
    pq.write_table(pa.table({"feature": ex["feature"], "rank": ex["rank"], "seq": ex["seq"], "start": lo,
                             "end": [s + 400 for s in lo], "activation": acts}), ann / "example_windows.parquet")
    data = collect(ann)
    x = data["examples"][int(ex["feature"][0])][0]
    assert x[6][0] == lo[0] and len(x[6][1]) == 400 and x[6][1][150] == "9" and set(x[6][1][:150]) == {"0"}
    # hits of the wider windows are kept too
    assert len(data["hits"]) > len(collect(ann_dir)["hits"])
    genes = read_genes(ann / "genes.bed")
    assert sum(map(len, genes.values())) == len((ann / "genes.bed").read_text().splitlines())
    assert all(g[2] in "+-" and g[0] < g[1] for gs in genes.values() for g in gs)
