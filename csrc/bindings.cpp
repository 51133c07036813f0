// Module definition of genesae_fast._native: one bind_* call per feature file.
#include "native.hpp"

PYBIND11_MODULE(_native, m) {
    m.doc() = "genesae_fast native routines: FASTA decoding, k-mer counting, motif scanning";
    genesae::bind_fasta(m);
    genesae::bind_kmers(m);
    genesae::bind_scan(m);
}
