// Shared declarations of the genesae_fast._native extension.
//
// Each feature lives in its own translation unit (fasta.cpp, kmers.cpp, scan.cpp, ...)
// and exposes one `bind_<feature>(module)` function that bindings.cpp calls. The compute
// code is plain C++17 and does not need Python; only the bind_* functions touch pybind11.
#pragma once

#include <pybind11/pybind11.h>

namespace genesae {

// Base codes shared by every native routine: A=0, C=1, G=2, T=3, anything else 4.
constexpr unsigned char kCodeN = 4;

void bind_fasta(pybind11::module_& m);
void bind_kmers(pybind11::module_& m);
void bind_scan(pybind11::module_& m);

}  // namespace genesae
