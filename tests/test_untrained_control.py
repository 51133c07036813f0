"""The untrained-LM control: ``genesae lm init`` and ``genesae run --control-untrained``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from genesae_fast.cli import cli
from genesae_fast.controls import concept_groups, control_lines
from genesae_fast.errors import InputError
from genesae_fast.models import load_model
from genesae_fast.models.untrained import write_untrained


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_untrained_model_is_the_builtin_architecture_with_seeded_weights(tmp_path):
    import torch

    before = torch.random.get_rng_state()
    a, b, c = (write_untrained(tmp_path / n, seed=s) for n, s in (("a", 0), ("b", 0), ("c", 1)))
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's random stream is untouched
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    builtin = load_model("builtin", device="cpu")
    assert set(wa) == set(builtin.net.state_dict())
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not all(np.array_equal(wa[k], wc[k]) for k in wa)
    assert not all(np.array_equal(wa[k], builtin.net.state_dict()[k].numpy()) for k in wa)
    model = load_model(str(a), device="cpu")
    assert (model.n_layers, model.d_model) == (builtin.n_layers, builtin.d_model)
    assert json.loads((a / "lm_config.json").read_text())["untrained"]["seed"] == 0
    assert sum(len(blk) for blk in model.extract("ACGT" * 50, layer=2)) == 200


def test_lm_init_cli(tmp_path):
    res = CliRunner().invoke(cli, ["lm", "init", str(tmp_path / "r"), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert load_model(str(tmp_path / "r"), device="cpu").n_layers >= 1
    res = CliRunner().invoke(cli, ["lm", "init", str(tmp_path / "q"), "--like", str(tmp_path / "none")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "none" in res.output


def test_concept_groups_counts_and_best():
    concepts = {"concept": ["m1", "m2", "m3", "CDS", "start"], "kind": ["motif", "motif", "motif", "gene", "gene"],
                "f1": ["0.1", "0.35", "0.6", "0.2", "nan"], "neuron_f1": ["0.3", "0.1", "0.0", "0.5", "0.1"]}
    g = concept_groups(concepts)
    assert g["motif"] == {"concepts": 3, "best_f1": 0.6, "median_best_f1": 0.35, "sae_f1_ge_0.3": 2,
                          "neuron_f1_ge_0.3": 1, "sae_f1_ge_0.5": 1, "neuron_f1_ge_0.5": 0, "best_concept": "m3"}
    assert g["gene"]["best_f1"] == 0.2 and g["gene"]["sae_f1_ge_0.3"] == 0 and g["gene"]["neuron_f1_ge_0.5"] == 1
    assert control_lines({}) == []


def test_control_refuses_a_model_it_cannot_copy(tmp_path):
    from genesae_fast.controls import untrained_model

    with pytest.raises(InputError, match="--control-untrained"):
        untrained_model(tmp_path / "c", model=str(tmp_path))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from genesae_fast.data import genome_path
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.sequences import read_fasta, write_fasta

    d = tmp_path_factory.mktemp("ctl")
    rec = read_fasta(genome_path())[0]
    write_fasta([(rec.name, rec.sequence[:20_000])], d / "g.fa")
    write_meme(load_motifs()[:4], d / "m.meme")
    return d


def test_run_with_control_writes_it_and_reports_it(inputs):
    from genesae_fast.pipeline import RunSettings, format_summary, run_pipeline

    out = inputs / "out"
    tiny = dict(max_tokens=None, expansion=2, k=4, batch=512, min_train_tokens=20_000, max_train_tokens=20_000)
    messages = []
    s = run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=RunSettings(**tiny),
                     progress=False, echo=messages.append, workers=1, control_untrained=True, layer=3)
    assert "[control] ..." in messages and messages.index("[control] ...") < messages.index("[report] ...")
    ctl = out / "controls" / "untrained"
    for p in ("model/lm_config.json", "store.zarr/zarr.json", "sae/sae.safetensors", "annotate/concepts.tsv"):
        assert (ctl / p).exists(), p
    from genesae_fast.store import ActivationStore

    main_store, ctl_store = ActivationStore.open(out / "store.zarr"), ActivationStore.open(ctl / "store.zarr")
    assert ctl_store.attrs["layer"] == main_store.attrs["layer"] and ctl_store.n_rows == main_store.n_rows
    c = s["control_untrained"]
    assert set(c["groups"]) == {"motif", "gene"} == set(c["main_groups"])
    assert c["concepts_sae_f1_ge_0.3"] == json.loads((ctl / "annotate" / "summary.json").read_text())[
        "concepts_sae_f1_ge_0.3"]
    text = format_summary(s)
    assert "untrained-LM control" in text and "motif concepts: best F1" in text
    assert "untrained-LM control" in (out / "annotate" / "report.html").read_text()
    # a rerun skips the control like every other stage
    messages.clear()
    run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=RunSettings(**tiny),
                 progress=False, echo=messages.append, workers=1, control_untrained=True, layer=3)
    assert "[control] already complete, skipped" in messages and "[report] already complete, skipped" in messages


def test_run_help_explains_the_control_default():
    res = CliRunner().invoke(cli, ["run", "--help"])
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    assert "--control-untrained / --no-control-untrained" in text and "doubles the run time" in text
