// Exact integer PWM scanning in FIMO's score domain, and FIMO's exact p-value tables.
//
// Every motif strand ("entry") arrives as a matrix of small non-negative integer cells
// (FIMO's scaled log-odds, 0..1000) and an integer score threshold: a window is a hit when
// the sum of its cells is >= the threshold (the threshold comes from the exact p-value table,
// so the comparison is exact: no floating point at the boundary). Windows that contain a
// base other than A, C, G, T (code 4), or run past the end of the record, are never hits,
// as in FIMO.
//
// Layout, chosen so that the compiler vectorises the hot loop with plain -O3:
//  * entries are sorted by width and packed into blocks of kBlock (64) entries; a block
//    stores, for each pair of columns (2g, 2g+1) and each pair of base codes, the row of the
//    64 entries' summed cells as int16 (25 rows: codes 0-4, where code 4 and columns past an
//    entry's width add 0). For one window the block's 64 scores are then
//    `acc += row[g][bases]` over the column pairs: contiguous int16 vector adds, no gather,
//    accumulators held in registers, half as many adds as one row per column;
//  * one compare of the 64 sums against the 64 thresholds (a vectorised reduction) decides
//    whether the window holds any hit; only then are the lanes inspected one by one;
//  * the work is cut into tiles of kTile window starts of one record; a thread takes a tile
//    and runs every block over it, so the tile's codes and one block's rows (a few KiB) stay
//    in L1: one pass over the sequence for all motifs and both strands.
// Sums are biased by -32768 so that 0..33000 fits a signed 16-bit lane; padding entries get
// a threshold no sum can reach. On x86-64 the kernel is also compiled for AVX2 and picked at
// run time when the CPU has it, so the wheel keeps running on any x86-64 CPU;
// GENESAE_SCAN_SIMD=baseline forces the portable kernel (the tests run both).
//
// Threads come from parallel.hpp's parallel_for: capped at the cores, and a worker's
// exception (std::bad_alloc, say) is rethrown to Python instead of killing the process.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <numeric>
#include <stdexcept>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "native.hpp"
#include "parallel.hpp"
#include "scan_kernel.hpp"

namespace py = pybind11;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GENESAE_HAVE_AVX2 1
#endif

namespace genesae {
namespace scan_detail {

// Blocks of kBlock entries, entries sorted by width (so a block's widths are close).
std::vector<Block> make_blocks(const std::int16_t* cells, const std::int64_t* off, const std::int32_t* thr,
                               std::size_t n_entries) {
    if (n_entries == 0) return {};
    std::vector<std::size_t> order(n_entries);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return off[a + 1] - off[a] < off[b + 1] - off[b]; });
    std::vector<Block> blocks;
    for (std::size_t first = 0; first < n_entries; first += kBlock) {
        const std::size_t last = std::min(n_entries, first + kBlock);
        Block b;
        b.width = static_cast<int>(off[order[last - 1] + 1] - off[order[last - 1]]);
        b.pairs = (b.width + 1) / 2;
        b.rows.assign(static_cast<std::size_t>(b.pairs) * 25 * kBlock, 0);
        for (int l = 0; l < kBlock; ++l) {
            b.thr[l] = INT16_MAX;  // padding: unreachable (sums are <= 232)
            b.entry[l] = -1;
            b.widths[l] = 0;
            b.cells[l] = nullptr;
        }
        for (std::size_t k = first; k < last; ++k) {
            const std::size_t e = order[k];
            const int l = static_cast<int>(k - first);
            const int w = static_cast<int>(off[e + 1] - off[e]);
            const std::int16_t* c = cells + 4 * off[e];
            b.entry[l] = static_cast<std::int32_t>(e);
            b.widths[l] = w;
            b.cells[l] = c;
            // thresholds above the best possible sum (<= 33001) stay unreachable after the bias
            const std::int32_t t = std::min<std::int32_t>(std::max<std::int32_t>(thr[e], 0), 33001);
            b.thr[l] = static_cast<std::int16_t>(t - kBias);
            // Row (b1, b2) of pair g holds cell(2g, b1) + cell(2g+1, b2); a base code 4 (or a
            // column past the entry's width) adds 0, never more than a real base would.
            for (int g = 0; g < b.pairs; ++g) {
                for (int b1 = 0; b1 < 5; ++b1) {
                    for (int b2 = 0; b2 < 5; ++b2) {
                        const int c0 = 2 * g, c1 = 2 * g + 1;
                        const int v = (c0 < w && b1 < 4 ? c[4 * c0 + b1] : 0) + (c1 < w && b2 < 4 ? c[4 * c1 + b2] : 0);
                        b.rows[(static_cast<std::size_t>(g) * 25 + b1 * 5 + b2) * kBlock + l] = static_cast<std::int16_t>(v);
                    }
                }
            }
        }
        blocks.push_back(std::move(b));
    }
    return blocks;
}

// 16 int16 lanes; GCC/Clang lower it to two SSE2 registers or one AVX2 register. aligned(2):
// rows are loaded unaligned. (Plain loops over 64 lanes were vectorised badly by GCC 12,
// which unrolled the column loop and left the lane loop scalar.)
typedef std::int16_t v16 __attribute__((vector_size(32), aligned(2)));
typedef std::uint64_t v4u64 __attribute__((vector_size(32), aligned(2)));
constexpr int kVecs = kBlock / 16;

// Scores of one block over window starts 0..n-1. `boff[i]` is the row of the base pair at
// positions (i, i+1), times kBlock. Records each start where some lane reaches its
// threshold, with the lane mask. W (column pairs) is a compile-time constant so the loop
// unrolls into 4 vector adds per pair with constant displacements.
template <int W>
__attribute__((always_inline)) inline std::size_t block_candidates_w(
    const std::int16_t* __restrict rows, const std::int16_t* __restrict thr, const std::uint16_t* __restrict boff,
    std::size_t n, std::uint32_t* __restrict cand_pos, std::uint64_t* __restrict cand_mask) {
    v16 t[kVecs];
    std::memcpy(t, thr, sizeof(t));
    v16 init;
    for (int l = 0; l < 16; ++l) init[l] = static_cast<std::int16_t>(-kBias);
    std::size_t n_cand = 0;
    for (std::size_t i = 0; i < n; ++i) {
        v16 acc[kVecs];
        for (int v = 0; v < kVecs; ++v) acc[v] = init;
        const std::uint16_t* b = boff + i;
#pragma GCC unroll 17
        for (int j = 0; j < W; ++j) {
            const v16* row = reinterpret_cast<const v16*>(rows + j * 25 * kBlock + b[2 * j]);
            for (int v = 0; v < kVecs; ++v) acc[v] += row[v];
        }
        v16 hit = acc[0] >= t[0];
        for (int v = 1; v < kVecs; ++v) hit |= acc[v] >= t[v];
        v4u64 h64;
        std::memcpy(&h64, &hit, sizeof(h64));
        if (__builtin_expect((h64[0] | h64[1] | h64[2] | h64[3]) != 0, 0)) {
            std::uint64_t mask = 0;
            for (int v = 0; v < kVecs; ++v) {
                for (int l = 0; l < 16; ++l) {
                    mask |= static_cast<std::uint64_t>(acc[v][l] >= t[v][l]) << (16 * v + l);
                }
            }
            cand_pos[n_cand] = static_cast<std::uint32_t>(i);
            cand_mask[n_cand] = mask;
            ++n_cand;
        }
    }
    return n_cand;
}

#define GENESAE_W(w) \
    case w:          \
        return block_candidates_w<w>(rows, thr, boff, n, cand_pos, cand_mask);
#define GENESAE_BLOCK_CANDIDATES_BODY                                                                   \
    switch (pairs) {                                                                                   \
        GENESAE_W(1) GENESAE_W(2) GENESAE_W(3) GENESAE_W(4) GENESAE_W(5) GENESAE_W(6) GENESAE_W(7)     \
        GENESAE_W(8) GENESAE_W(9) GENESAE_W(10) GENESAE_W(11) GENESAE_W(12) GENESAE_W(13)              \
        GENESAE_W(14) GENESAE_W(15) GENESAE_W(16) GENESAE_W(17)                                        \
        default:                                                                                       \
            throw std::invalid_argument("motif width must be 1..33");                                  \
    }

// The same source compiled twice: for the baseline ISA and, where possible, for AVX2.
std::size_t block_candidates_base(const std::int16_t* __restrict rows, int pairs, const std::int16_t* __restrict thr,
                                  const std::uint16_t* __restrict boff, std::size_t n,
                                  std::uint32_t* __restrict cand_pos, std::uint64_t* __restrict cand_mask) {
    GENESAE_BLOCK_CANDIDATES_BODY
}

#ifdef GENESAE_HAVE_AVX2
__attribute__((target("avx2"))) std::size_t block_candidates_avx2(
    const std::int16_t* __restrict rows, int pairs, const std::int16_t* __restrict thr,
    const std::uint16_t* __restrict boff, std::size_t n, std::uint32_t* __restrict cand_pos,
    std::uint64_t* __restrict cand_mask) {
    GENESAE_BLOCK_CANDIDATES_BODY
}
#endif
#undef GENESAE_BLOCK_CANDIDATES_BODY
#undef GENESAE_W

bool cpu_has_avx2() {
#ifdef GENESAE_HAVE_AVX2
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

Simd active_simd() {
    const char* env = std::getenv("GENESAE_SCAN_SIMD");
    if (env != nullptr && std::strcmp(env, "baseline") == 0) return Simd::kBaseline;
    return cpu_has_avx2() ? Simd::kAvx2 : Simd::kBaseline;
}

std::vector<std::string> available_simd() {
    std::vector<std::string> out{"baseline"};
    if (cpu_has_avx2()) out.emplace_back("avx2");
    return out;
}

void maybe_fault(std::size_t unit, long long fault_unit) {
    if (fault_unit >= 0 && unit == static_cast<std::size_t>(fault_unit)) throw std::bad_alloc();
}

int max_width_of(const std::int64_t* off, std::size_t n_entries) {
    int w = 1;
    for (std::size_t e = 0; e < n_entries; ++e) w = std::max(w, static_cast<int>(off[e + 1] - off[e]));
    return w;
}


void scan_unit(const Unit& u, const std::uint8_t* codes, std::size_t length, const std::vector<Block>& blocks,
               int max_width, Simd simd, Scratch& sc, std::vector<Hit>& out) {
    const std::size_t n = u.end - u.begin;
    // pair rows for positions [begin, begin + n + max_width]; past the record the code is 4
    const std::size_t n_pos = n + max_width + 1;
    sc.boff.resize(n_pos);
    auto code_at = [&](std::size_t i) -> unsigned {
        const std::size_t p = u.begin + i;
        const unsigned c = p < length ? codes[p] : 4u;
        return c < 4 ? c : 4u;
    };
    unsigned prev = code_at(0);
    for (std::size_t i = 0; i < n_pos; ++i) {
        const unsigned next = code_at(i + 1);
        sc.boff[i] = static_cast<std::uint16_t>((prev * 5 + next) * kBlock);
        prev = next;
    }
    sc.cand_pos.resize(n);
    sc.cand_mask.resize(n);
    for (const Block& b : blocks) {
#ifdef GENESAE_HAVE_AVX2
        const auto kernel = simd == Simd::kAvx2 ? block_candidates_avx2 : block_candidates_base;
#else
        (void)simd;
        const auto kernel = block_candidates_base;
#endif
        const std::size_t nc = kernel(b.rows.data(), b.pairs, b.thr, sc.boff.data(), n, sc.cand_pos.data(),
                                      sc.cand_mask.data());
        for (std::size_t c = 0; c < nc; ++c) {
            const std::size_t pos = u.begin + sc.cand_pos[c];
            std::uint64_t mask = sc.cand_mask[c];
            while (mask) {
                const int l = __builtin_ctzll(mask);
                mask &= mask - 1;
                const std::size_t w = static_cast<std::size_t>(b.widths[l]);
                if (pos + w > length) continue;
                // exact recount from the codes: rejects windows with a non-ACGT base
                std::int32_t s = 0;
                bool ok = true;
                for (std::size_t j = 0; j < w; ++j) {
                    const unsigned base = codes[pos + j];
                    if (base > 3) {
                        ok = false;
                        break;
                    }
                    s += b.cells[l][4 * j + base];
                }
                if (ok) out.push_back({b.entry[l], u.seq, static_cast<std::int64_t>(pos), s});
            }
        }
    }
}

// The whole scan; no Python involved (callable without the GIL).
std::vector<Hit> scan_all(const std::vector<const std::uint8_t*>& ptrs, const std::vector<std::size_t>& lens,
                          const std::int16_t* cells, const std::int64_t* off, const std::int32_t* thr,
                          std::size_t n_entries, int threads, long long fault_unit) {
    const int max_width = max_width_of(off, n_entries);
    const std::vector<Block> blocks = make_blocks(cells, off, thr, n_entries);
    std::vector<Unit> units;
    for (std::size_t s = 0; s < ptrs.size(); ++s) {
        for (std::size_t b = 0; b < lens[s]; b += kTile) {
            units.push_back({static_cast<std::int32_t>(s), b, std::min(lens[s], b + kTile)});
        }
    }
    std::vector<std::vector<Hit>> per_unit(units.size());
    const int nt = effective_threads(threads);
    std::vector<Scratch> scratch(nt);
    const Simd simd = active_simd();
    parallel_for(nt, units.size(), [&](int tid, std::size_t i) {
        maybe_fault(i, fault_unit);
        const Unit& u = units[i];
        scan_unit(u, ptrs[u.seq], lens[u.seq], blocks, max_width, simd, scratch[tid], per_unit[i]);
    });
    std::size_t total = 0;
    for (const auto& v : per_unit) total += v.size();
    std::vector<Hit> all;
    all.reserve(total);
    for (auto& v : per_unit) all.insert(all.end(), v.begin(), v.end());
    return all;
}

// pv[S] = P(score >= S) of one integer matrix under a 0-order background, computed like MEME's
// get_pdf_table / get_pv_lookup: the same loops in the same order, so the doubles are the
// same (terms are added one base at a time, then summed from the top score down). MEME skips
// zero terms; adding +0.0 leaves a double unchanged, so the branch is dropped here.
#if defined(__GNUC__) && !defined(__clang__)
// MEME rounds the product and the sum separately: no fused multiply-add (aarch64 would fuse).
__attribute__((optimize("fp-contract=off")))
#endif
// One pass of MEME's DP restricted to final scores >= floor_score. Leaves pdf[S] exact for
// S >= floor_score: a term reaching such an S after column i comes from a partial score >=
// floor_score - (best of columns i+1..), so terms below that bound are never needed, and the
// needed ones are added in MEME's order (base by base). Zero terms are skipped by range:
// adding +0.0 would not change a double anyway.
void pdf_tail(const std::int16_t* cells, int w, const double* bg, long floor_score, double* __restrict pdf,
              double* __restrict old, std::size_t size) {
    std::fill(pdf, pdf + size, 0.0);
    pdf[0] = 1.0;
    std::vector<long> rest(w + 1, 0);  // rest[i] = sum of column maxima i..w-1
    for (int i = w - 1; i >= 0; --i) rest[i] = rest[i + 1] + *std::max_element(cells + 4 * i, cells + 4 * i + 4);
    long lo = 0, hi = 0;  // non-zero range of the pdf so far
    for (int i = 0; i < w; ++i) {
        const std::int16_t* c = cells + 4 * i;
        const long cmin = *std::min_element(c, c + 4);
        const long cmax = *std::max_element(c, c + 4);
        const long src = std::max(lo, floor_score - rest[i]);
        if (src <= hi) {
            std::copy(pdf + src, pdf + hi + 1, old + src);
            std::fill(pdf + src, pdf + hi + 1, 0.0);
            for (int j = 0; j < 4; ++j) {
                const double b = bg[j];
                double* __restrict dst = pdf + c[j];
                for (long k = src; k <= hi; ++k) dst[k] = dst[k] + old[k] * b;
            }
        }
        lo = std::max(lo, src) + cmin;
        hi += cmax;
    }
}

// FIMO's p-value table of one matrix, from `start` up: pv[S - start] = P(score >= S) for
// S in [start, best], and the threshold min{S : pv[S] < pvalue}. `start` is lowered until
// pv[start] >= pvalue (or start = 0), so the threshold is inside the exact tail. With
// pvalue >= 1 the whole table (start = 0) is returned.
struct Tail {
    long start = 0;
    std::vector<double> pv;
    std::int32_t threshold = 0;
};

Tail pvalue_tail(const std::int16_t* cells, int w, const double* bg, double pvalue, std::vector<double>& a,
                 std::vector<double>& b) {
    long best = 0;
    for (int i = 0; i < w; ++i) best += *std::max_element(cells + 4 * i, cells + 4 * i + 4);
    const std::size_t size = static_cast<std::size_t>(best) + 1001;  // room for the last column's offsets
    a.resize(size);
    b.resize(size);
    Tail t;
    long gap = 2048;
    for (;;) {
        const long start = (pvalue < 1.0 && best > gap) ? best - gap : 0;
        pdf_tail(cells, w, bg, start, a.data(), b.data(), size);
        // pv[i] = min(1, pdf[i] + pv[i+1]) from the top (MEME's get_pv_lookup)
        t.pv.assign(static_cast<std::size_t>(best - start + 1), 0.0);
        double above = 0.0;
        for (long s = best; s >= start; --s) {
            const double p = a[s] + above;
            above = p < 1.0 ? p : 1.0;
            t.pv[s - start] = above;
        }
        if (start == 0 || t.pv[0] >= pvalue) {
            t.start = start;
            break;
        }
        gap *= 2;
    }
    t.threshold = static_cast<std::int32_t>(best + 1);
    for (long s = t.start; s <= best; ++s) {
        if (t.pv[s - t.start] < pvalue) {
            t.threshold = static_cast<std::int32_t>(s);
            break;
        }
    }
    return t;
}

void check_matrices(const std::int16_t* cells, std::size_t n_columns, const std::int64_t* off, std::size_t n_entries) {
    if (off[0] != 0) throw std::invalid_argument("col_offsets must start at 0");
    for (std::size_t e = 0; e < n_entries; ++e) {
        const std::int64_t w = off[e + 1] - off[e];
        if (w < 1 || w > kMaxWidth || off[e + 1] > static_cast<std::int64_t>(n_columns))
            throw std::invalid_argument("bad column offsets (widths must be 1..33)");
    }
    for (std::size_t i = 0; i < n_columns * 4; ++i) {
        if (cells[i] < 0 || cells[i] > 1000) throw std::invalid_argument("cells must lie in 0..1000");
    }
}

}  // namespace scan_detail

namespace {

using namespace scan_detail;

void check_matrices(const py::array_t<std::int16_t, py::array::c_style | py::array::forcecast>& cells,
                    const py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>& col_offsets) {
    if (cells.ndim() != 2 || cells.shape(1) != 4) throw std::invalid_argument("cells must have shape (n_columns, 4)");
    if (col_offsets.ndim() != 1 || col_offsets.size() < 1) throw std::invalid_argument("col_offsets must be 1-D, non-empty");
    scan_detail::check_matrices(cells.data(), static_cast<std::size_t>(cells.shape(0)), col_offsets.data(),
                                static_cast<std::size_t>(col_offsets.size()) - 1);
}

py::tuple pvalue_tables(py::array_t<std::int16_t, py::array::c_style | py::array::forcecast> cells,
                        py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> col_offsets,
                        py::array_t<double, py::array::c_style | py::array::forcecast> bg, double pvalue, int threads,
                        bool from_threshold) {
    check_matrices(cells, col_offsets);
    if (bg.size() != 4) throw std::invalid_argument("bg must have 4 entries");
    if (!(pvalue > 0)) throw std::invalid_argument("pvalue must be > 0");
    const std::size_t n = static_cast<std::size_t>(col_offsets.size()) - 1;
    const std::int64_t* off = col_offsets.data();
    const std::int16_t* cp = cells.data();
    const double* bgp = bg.data();
    std::vector<Tail> tails(n);
    {
        py::gil_scoped_release release;
        const int nt = effective_threads(threads);
        std::vector<std::vector<double>> sa(nt), sb(nt);
        parallel_for(nt, n, [&](int tid, std::size_t e) {
            Tail& t = tails[e];
            t = pvalue_tail(cp + 4 * off[e], static_cast<int>(off[e + 1] - off[e]), bgp, pvalue, sa[tid], sb[tid]);
            if (from_threshold) {  // hits never need scores below the threshold
                const std::size_t cut = std::min(t.pv.size(), static_cast<std::size_t>(t.threshold - t.start));
                t.pv.erase(t.pv.begin(), t.pv.begin() + static_cast<std::ptrdiff_t>(cut));
                t.pv.shrink_to_fit();
                t.start = t.threshold;
            }
        });
    }
    py::list tables;
    py::array_t<std::int64_t> starts(static_cast<py::ssize_t>(n));
    py::array_t<std::int32_t> thresholds(static_cast<py::ssize_t>(n));
    auto ps = starts.mutable_data();
    auto pt = thresholds.mutable_data();
    for (std::size_t e = 0; e < n; ++e) {
        py::array_t<double> a(static_cast<py::ssize_t>(tails[e].pv.size()));
        std::copy(tails[e].pv.begin(), tails[e].pv.end(), a.mutable_data());
        tables.append(a);
        ps[e] = tails[e].start;
        pt[e] = tails[e].threshold;
    }
    return py::make_tuple(tables, starts, thresholds);
}

py::tuple scan_pssms(const std::vector<py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>>& seqs,
                     py::array_t<std::int16_t, py::array::c_style | py::array::forcecast> cells,
                     py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> col_offsets,
                     py::array_t<std::int32_t, py::array::c_style | py::array::forcecast> thresholds, int threads,
                     long long fault_unit) {
    check_matrices(cells, col_offsets);
    const std::size_t n_entries = static_cast<std::size_t>(thresholds.size());
    if (static_cast<std::size_t>(col_offsets.size()) != n_entries + 1)
        throw std::invalid_argument("col_offsets must have one more entry than thresholds");
    std::vector<const std::uint8_t*> ptrs;
    std::vector<std::size_t> lens;
    for (const auto& s : seqs) {
        if (s.ndim() != 1) throw std::invalid_argument("sequences must be 1-D uint8 arrays");
        ptrs.push_back(s.data());
        lens.push_back(static_cast<std::size_t>(s.shape(0)));
    }
    std::vector<Hit> all;
    {
        py::gil_scoped_release release;
        all = scan_all(ptrs, lens, cells.data(), col_offsets.data(), thresholds.data(), n_entries, threads, fault_unit);
    }
    const py::ssize_t n = static_cast<py::ssize_t>(all.size());
    py::array_t<std::int32_t> entry(n), seq(n), score(n);
    py::array_t<std::int64_t> pos(n);
    auto pe = entry.mutable_data();
    auto ps = seq.mutable_data();
    auto pp = pos.mutable_data();
    auto pc = score.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) {
        pe[i] = all[i].entry;
        ps[i] = all[i].seq;
        pp[i] = all[i].pos;
        pc[i] = all[i].score;
    }
    return py::make_tuple(entry, seq, pos, score);
}

}  // namespace

void bind_scan(py::module_& m) {
    m.def("pvalue_tables", &pvalue_tables, py::arg("cells"), py::arg("col_offsets"), py::arg("bg"),
          py::arg("pvalue"), py::arg("threads") = 1, py::arg("from_threshold") = false,
          "FIMO's exact p-value tables (MEME's DP, same arithmetic) of integer matrices, from a start up.\n\n"
          "Returns (tables, starts, thresholds): tables[e][S - starts[e]] = P(score >= S) under the "
          "0-order background bg (A C G T) for S from starts[e] to the best score of entry e; "
          "thresholds[e] = min{S : P(score >= S) < pvalue} (best + 1 when none). starts[e] is low "
          "enough that the threshold lies in the table; pvalue >= 1 gives whole tables (start 0). "
          "from_threshold=True starts each table at its threshold (all a scan needs).");
    m.def("scan_pssms", &scan_pssms, py::arg("seqs"), py::arg("cells"), py::arg("col_offsets"),
          py::arg("thresholds"), py::arg("threads") = 1, py::arg("_fault_unit") = -1,
          "Exact integer PWM scan.\n\n"
          "seqs: list of uint8 code arrays (A=0 C=1 G=2 T=3, other 4); cells: int16 [n_columns, 4] "
          "in 0..1000, entry e owning rows col_offsets[e]:col_offsets[e+1] (width 1..33); "
          "thresholds: int32 [n_entries]. Returns (entry int32, seq int32, start int64, score int32) "
          "for every window of only A/C/G/T whose integer score is >= its entry's threshold "
          "(unordered). The GIL is released; `threads` worker threads (capped at the cores). "
          "_fault_unit >= 0 (tests only) makes the worker of that work unit throw std::bad_alloc.");
    m.def("scan_simd_paths", &available_simd,
          "Kernels this build and CPU can run: 'baseline' and, on x86-64 with AVX2, 'avx2'.");
    m.def("scan_simd_active", []() { return active_simd() == Simd::kAvx2 ? "avx2" : "baseline"; },
          "The kernel a scan started now would use (GENESAE_SCAN_SIMD=baseline forces 'baseline').");
    bind_scan_stream(m);
}

}  // namespace genesae
