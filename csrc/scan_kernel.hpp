// The exact integer PWM scan kernel (defined in scan.cpp), shared by the in-memory scan
// (scan.cpp) and the streaming scanner (scan_stream.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

namespace genesae {
namespace scan_detail {

constexpr std::size_t kTile = 4096;  // window starts per work unit
constexpr int kBlock = 64;           // entries per block (64 int16 lanes)
constexpr int kBias = 32768;         // sums live in [-32768, 232]
constexpr int kMaxWidth = 33;        // widest matrix: 17 column pairs, sums <= 33000

struct Block {
    int width = 0;                           // widest entry of the block
    int pairs = 0;                           // column pairs, (width + 1) / 2
    std::vector<std::int16_t> rows;          // [pairs][5 * 5][kBlock]
    std::int16_t thr[kBlock];                // biased thresholds
    std::int32_t entry[kBlock];              // entry index, -1 for padding
    std::int32_t widths[kBlock];             // true widths
    const std::int16_t* cells[kBlock];       // the lane's matrix [width][4], for the exact recount
};

struct Hit {
    std::int32_t entry;
    std::int32_t seq;
    std::int64_t pos;
    std::int32_t score;
};

struct Unit {
    std::int32_t seq;
    std::size_t begin, end;  // window starts [begin, end) on record `seq`
};

// Which compiled kernel runs: the portable one, or the AVX2 one (x86-64 with GCC only).
enum class Simd { kBaseline, kAvx2 };

// The kernel a scan starting now uses: AVX2 when the CPU has it, unless the environment
// variable GENESAE_SCAN_SIMD is "baseline" (read at every call, so tests can switch).
Simd active_simd();
// Names of the kernels this build and CPU can run ("baseline", and "avx2" where possible).
std::vector<std::string> available_simd();

struct Scratch {
    std::vector<std::uint16_t> boff;
    std::vector<std::uint32_t> cand_pos;
    std::vector<std::uint64_t> cand_mask;
};

// Blocks of kBlock entries, entries sorted by width (so a block's widths are close).
std::vector<Block> make_blocks(const std::int16_t* cells, const std::int64_t* off, const std::int32_t* thr,
                               std::size_t n_entries);

// Widest entry (at least 1).
int max_width_of(const std::int64_t* off, std::size_t n_entries);

// Appends to `out` every hit of `blocks` whose start lies in [u.begin, u.end) on `codes`
// (length `length`): windows wholly inside the codes, of A/C/G/T only, with score >= the
// entry's threshold. Per entry, hits come in increasing position.
void scan_unit(const Unit& u, const std::uint8_t* codes, std::size_t length, const std::vector<Block>& blocks,
               int max_width, Simd simd, Scratch& sc, std::vector<Hit>& out);

// Throws std::bad_alloc when `unit` equals `fault_unit`: the test hook that proves a worker's
// exception reaches Python instead of killing the process.
void maybe_fault(std::size_t unit, long long fault_unit);

// Checks an entry matrix set: cells [n_columns, 4] in 0..1000, widths 1..kMaxWidth.
void check_matrices(const std::int16_t* cells, std::size_t n_columns, const std::int64_t* off, std::size_t n_entries);

}  // namespace scan_detail

void bind_scan_stream(pybind11::module_& m);

}  // namespace genesae
