"""Causal evidence: does the LM *use* an SAE feature at the sites of its concept?

For each of the best (feature, concept) pairs of ``concepts.tsv`` (highest held-out F1,
``--pairs``, default 20), on the concept's held-out sites (at most ``--sites`` per pair):

1. **Splice.** The output ``h`` of the store's layer L is replaced by the SAE reconstruction
   ``x_hat = denorm(decode(encode(norm(h))))`` at every position of the window. This is the
   baseline (not the clean model), so the SAE's own error is common to both arms.
2. **Ablate.** The same, with feature f's value set to 0 wherever it fires (its decoder
   contribution ``a_f(t) W_dec[f]`` removed, in the SAE's input space).
3. **Measure** the LM's bits at the site's bases, ``bits(p) = -log2 P(base p | bases < p)``.

Per site i with ``n_i`` scored (A/C/G/T) bases, ``d_i = sum_p bits_ablated(p) - bits_spliced(p)``.
Two controls: the same number of **random intervals** (same lengths, uniformly placed in the
held-out split, ``r_j`` over ``m_j`` bases) with f ablated, and a **random feature** g of
similar firing rate (one of the 3 nearest in log frequency) ablated at the same sites
(``g_i``). Effects are extra bits per base and the specificity ratios compare them:

    delta_site           = sum_i d_i / sum_i n_i
    delta_random         = sum_j r_j / sum_j m_j
    delta_random_feature = sum_i g_i / sum_i n_i
    ratio_random  = delta_site / delta_random
    ratio_feature = delta_site / delta_random_feature

A ratio is +inf when its control is <= 0 while ``delta_site > 0`` (the control did nothing:
a feature that never fires outside sites changes nothing there), NA when both are <= 0.
95% intervals: percentile bootstrap (1000 resamples) over sites, with the random intervals
resampled independently (:mod:`genesae_fast.causal.stats`).

A site longer than 64 bp (a gene, an intergenic run) is scored on a random 64 bp stretch
inside it. Only windows around the sites are run (``[s - context, e)``, context = the built-in CNN's
receptive field, so each score equals a whole-record pass exactly; :mod:`.measure`). The
activations come from the forward (+ strand) pass only: when the run also has a reverse-
complement pass, a feature chosen for a - strand concept is tested on the + strand reading.

``causal.tsv`` columns (one row per pair; bits per base):

``concept, kind, strand`` the concept (``strand``: the concept row's strand, else ``both`` for
a motif, whose hits on both strands are pooled, and empty for gene concepts, named by strand);
``feature, f1`` the SAE feature and its held-out F1; ``n_sites, n_bases`` held-out sites
tested and their scored bases; ``n_random`` random intervals; ``site_fire_frac,
random_fire_frac`` fraction of sites / random intervals where f fires on one of its bases;
``bits_clean, bits_spliced`` LM bits per base at the sites, clean and with the SAE spliced in;
``delta_site`` (``_lo, _hi``: 95% CI), ``delta_random``, ``random_feature`` (g, -1 if none),
``delta_random_feature``; ``ratio_random``, ``ratio_feature`` with ``_lo, _hi``.

A pair counts as *specific* (``summary.json``: ``causal_pairs_specific``) when the lower
bounds of both ratios exceed 1.
"""
from __future__ import annotations

from genesae_fast.causal.measure import SiteSet, Splice, score_sites
from genesae_fast.causal.stage import COLUMNS, OUTPUT, run_causal
from genesae_fast.causal.stats import effect, ratio

__all__ = ["COLUMNS", "OUTPUT", "SiteSet", "Splice", "effect", "ratio", "run_causal", "score_sites"]
