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

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


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
    hits = scan_motifs([rec], motifs, threads=1)
    ctrl = scan_motifs([rec], [shuffle_columns(m, rng) for m in motifs], threads=1)
    dense = np.maximum(rng.normal(size=(n, 10)) - 1.5, 0).astype(np.float32)
    for s, m in zip(hits.start, hits.motif):  # feature m fires at the end of motif m's hits
        dense[min(s + 8, n - 1), m % 10] += 3
    enc = Encoded(SparseActs.from_dense(dense), SparseActs.from_dense(dense[:, :4]), 0.05, 2.0)
    calls = predict_genes([rec])
    res = annotate_encoded(Genome.from_records([rec]), np.zeros(n, np.int64), np.arange(n), np.arange(n) + 1, enc,
                           motifs, hits, ctrl, calls, Config(min_active=5, gene_shifts=2))
    res.summary["sae"] = str(d / "sae")
    write_result(res, d / "ann", Genome.from_records([rec]), motifs, hits)
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


@pytest.mark.skipif(shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
                    reason="chromium is not installed (the CI script installs it)")
def test_report_in_headless_chromium(ann_dir, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from genesae_fast.annotate.report import write_report

    page = write_report(ann_dir, tmp_path / "atlas.html", sae=ann_dir.parent / "sae")
    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")),
                              options=opts)
    try:
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
        driver.find_element(By.ID, "close").click()
        assert not card.is_displayed()
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()
