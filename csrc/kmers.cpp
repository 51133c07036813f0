// k-mer counting over base-code arrays (A=0, C=1, G=2, T=3, other=4), k in 1..31.
//
// k-mers are packed 2 bits a base, first base in the high bits, so numeric order of the
// packed codes is lexicographic order of the strings. A k-mer that would span a code-4
// base is skipped; records are counted independently, so none spans a record boundary.
// Canonical counting keys each k-mer by min(packed, packed reverse complement).
//
// Two counters, both handing their results to a sink in ascending k-mer order, in pieces
// of at most kSinkChunk rows, so the caller can write them out as they come:
//  * partition (any k; the KMC design): a first pass histograms the k-mers' top 8 bits
//    (256 buckets). When every k-mer fits the memory budget, a second pass scatters them
//    into their buckets in memory; otherwise it appends them to one spill file per bucket.
//    Buckets are then counted in batches that fit the budget (in parallel), each by a
//    cache-sized tally table or an LSD radix sort. A bucket too large for the budget on
//    its own is split again by its next bits, one file pass per piece, so the budget
//    holds whatever the input (a piece of one repeated k-mer is counted without loading).
//  * dense (k <= 13): one 4^k table (uint32 cells while fewer than 2^32 k-mers exist,
//    else uint64: no count can wrap), private per thread when they fit the budget, else
//    relaxed atomic increments on one table.
// Work is split into segments of roughly equal length (long records are cut with a k-1
// overlap so that every start position is owned by exactly one segment). Threads come from
// parallel.hpp: capped at the cores, a worker's exception is rethrown on the caller.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "native.hpp"
#include "parallel.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace py = pybind11;

namespace genesae {
namespace {

using u64 = std::uint64_t;

// Test-only fault injection: the histogram worker that takes this segment throws
// std::bad_alloc (set through _native._set_kmer_fault; -1 = off).
std::atomic<long long> g_fault_segment{-1};

// Inputs with at least this many bases are tallied in uint64 dense cells (a uint32 cell
// could wrap). Lowered only by tests (_native._set_dense_wide_from) to reach that path.
std::atomic<unsigned long long> g_dense_wide_from{0xffffffffULL};

struct Sequence {
    const std::uint8_t* codes;
    std::size_t length;
};

struct Segment {
    const std::uint8_t* codes;  // start of the record
    std::size_t length;         // length of the record
    std::size_t begin, end;     // k-mer start positions owned by this segment
};

// Receives rows (packed k-mer, count) in ascending k-mer order, a piece at a time.
using Sink = std::function<void(const u64* kmers, const u64* counts, std::size_t n)>;
constexpr std::size_t kSinkChunk = std::size_t(1) << 16;

struct Collected;  // rows gathered in memory (count_kmers), see below

py::array_t<std::uint64_t> borrowed(const std::uint64_t* p, std::size_t n);  // see the bindings

struct Options {
    Collected* collect = nullptr;  // gather rows here instead of calling the sink
    int k = 1;
    int threads = 1;
    u64 min_count = 1;
    u64 budget = std::numeric_limits<u64>::max();  // bytes of working memory
    std::string spill_dir;                          // where spill files go ("" = never spill)
};

std::vector<Segment> make_segments(const std::vector<Sequence>& seqs, int k, std::size_t pieces) {
    std::size_t total = 0;
    for (const auto& s : seqs) total += s.length;
    std::size_t target = std::max<std::size_t>(1 << 16, total / std::max<std::size_t>(1, pieces) + 1);
    std::vector<Segment> out;
    for (const auto& s : seqs) {
        if (s.length < static_cast<std::size_t>(k)) continue;
        std::size_t starts = s.length - k + 1;
        for (std::size_t b = 0; b < starts; b += target) {
            out.push_back({s.codes, s.length, b, std::min(starts, b + target)});
        }
    }
    return out;
}

// Calls emit(packed) for every valid k-mer starting in [seg.begin, seg.end).
template <bool Canonical, typename Emit>
inline void for_each_kmer(const Segment& seg, int k, Emit&& emit) {
    const u64 mask = (k == 32) ? ~0ULL : ((1ULL << (2 * k)) - 1);
    const int rc_shift = 2 * (k - 1);
    u64 fwd = 0, rev = 0;
    int run = 0;
    const std::uint8_t* codes = seg.codes;
    const std::size_t stop = seg.end + k - 1;  // one past the last base read
    for (std::size_t p = seg.begin; p < stop; ++p) {
        const u64 c = codes[p];
        if (__builtin_expect(c > 3, 0)) {
            run = 0;
            continue;
        }
        fwd = ((fwd << 2) | c) & mask;
        if (Canonical) rev = (rev >> 2) | ((3 - c) << rc_shift);
        if (__builtin_expect(++run >= k, 1)) {
            if (Canonical) {
                emit(fwd < rev ? fwd : rev);
            } else {
                emit(fwd);
            }
        }
    }
}

// An uninitialised array of n words for large scratch. Fresh pages cost a fault and a
// clear each; on Linux large arrays ask for transparent huge pages (512x fewer faults),
// and nothing is zero-filled, since every word is written before it is read.
class BigArray {
  public:
    BigArray() = default;
    explicit BigArray(std::size_t n) : n_(n) {
        if (n == 0) return;
        constexpr std::size_t kHuge = std::size_t(2) << 20;
        const std::size_t bytes = n * sizeof(u64);
        if (bytes >= 2 * kHuge) {
            const std::size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
            p_ = static_cast<u64*>(std::aligned_alloc(kHuge, rounded));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
            if (p_) madvise(p_, rounded, MADV_HUGEPAGE);
#endif
        } else {
            p_ = static_cast<u64*>(std::malloc(bytes));
        }
        if (!p_) throw std::bad_alloc();
    }
    BigArray(BigArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
    BigArray& operator=(BigArray&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    BigArray(const BigArray&) = delete;
    BigArray& operator=(const BigArray&) = delete;
    ~BigArray() { std::free(p_); }
    u64* data() const { return p_; }
    std::size_t size() const { return n_; }
    u64& operator[](std::size_t i) const { return p_[i]; }

  private:
    u64* p_ = nullptr;
    std::size_t n_ = 0;
};

// Every row of a count, for callers that want arrays rather than a stream.
struct Collected {
    BigArray kmers, counts;
    std::size_t rows = 0;
};

// Hands rows to the sink in pieces of at most kSinkChunk.
void sink_in_chunks(const Sink& sink, const u64* kmers, const u64* counts, std::size_t n) {
    for (std::size_t i = 0; i < n; i += kSinkChunk) sink(kmers + i, counts + i, std::min(kSinkChunk, n - i));
}

// ---------------------------------------------------------------------------------------
// Dense counter (k <= 13).

// Increments table[x] for a stream of keys, prefetching each slot a batch ahead. Counting
// is bound by cache misses on the 4^k table (16 MiB at k = 11); issuing the loads of a
// whole batch before touching them lets the memory system overlap the misses.
template <typename T>
class PrefetchingCounter {
  public:
    explicit PrefetchingCounter(T* table) : table_(table) {}
    inline void add(u64 x) {
        __builtin_prefetch(table_ + x, 1, 0);
        pending_[n_++] = x;
        if (n_ == kBatch) flush();
    }
    inline void flush() {
        for (int i = 0; i < n_; ++i) ++table_[pending_[i]];
        n_ = 0;
    }

  private:
    static constexpr int kBatch = 32;
    T* table_;
    u64 pending_[kBatch];
    int n_ = 0;
};

template <bool Canonical, typename T>
void tally_dense(const std::vector<Segment>& segs, const Options& o, std::vector<T>& table) {
    const std::size_t size = table.size();
    const int threads = std::min<int>(effective_threads(o.threads), static_cast<int>(std::max<std::size_t>(1, segs.size())));
    if (threads <= 1) {
        PrefetchingCounter<T> counter(table.data());
        for (const auto& s : segs) for_each_kmer<Canonical>(s, o.k, [&](u64 x) { counter.add(x); });
        counter.flush();
    } else if (size * sizeof(T) * (threads + 1) <= o.budget) {
        std::vector<std::vector<T>> priv(threads);
        parallel_for(threads, segs.size(), [&](int tid, std::size_t i) {
            auto& t = priv[tid];
            if (t.empty()) t.assign(size, 0);
            PrefetchingCounter<T> counter(t.data());
            for_each_kmer<Canonical>(segs[i], o.k, [&](u64 x) { counter.add(x); });
            counter.flush();
        });
        // Sum the private tables in parallel stripes.
        parallel_for(threads, static_cast<std::size_t>(threads), [&](int, std::size_t stripe) {
            std::size_t lo = size * stripe / threads, hi = size * (stripe + 1) / threads;
            for (const auto& t : priv) {
                if (t.empty()) continue;
                for (std::size_t j = lo; j < hi; ++j) table[j] += t[j];
            }
        });
    } else {
        T* data = table.data();
        parallel_for(threads, segs.size(), [&](int, std::size_t i) {
            for_each_kmer<Canonical>(segs[i], o.k, [&](u64 x) { __atomic_fetch_add(data + x, T(1), __ATOMIC_RELAXED); });
        });
    }
}

template <bool Canonical, typename T>
void count_dense(const std::vector<Segment>& segs, const Options& o, const Sink& sink) {
    std::vector<T> table(std::size_t(1) << (2 * o.k), 0);
    tally_dense<Canonical, T>(segs, o, table);
    std::vector<u64> kmers, counts;
    kmers.reserve(kSinkChunk);
    counts.reserve(kSinkChunk);
    const u64 floor = std::max<u64>(1, o.min_count);
    for (std::size_t j = 0; j < table.size(); ++j) {
        if (table[j] >= floor) {
            kmers.push_back(j);
            counts.push_back(table[j]);
            if (kmers.size() == kSinkChunk) {
                sink(kmers.data(), counts.data(), kmers.size());
                kmers.clear();
                counts.clear();
            }
        }
    }
    if (!kmers.empty()) sink(kmers.data(), counts.data(), kmers.size());
}

// ---------------------------------------------------------------------------------------
// Counting one block of k-mers that share all but their low `low_bits` bits.

// LSD radix sort of v on bits [0, bits); tmp is scratch of the same size. Digits are up to
// 11 bits wide (a 16 KiB histogram stays in L1), so 18 bits take 2 passes and 34 take 3;
// the histograms of every pass are taken in one read of the data.
template <typename Count>  // uint32_t while n < 2^32 (half the cache for the histograms)
void radix_sort_low_bits(u64* v, u64* tmp, std::size_t n, int bits) {
    if (bits <= 0) return;
    const int passes = (bits + 10) / 11;
    const int width = (bits + passes - 1) / passes;
    const std::size_t radix = std::size_t(1) << width;
    const u64 mask = radix - 1;
    std::vector<Count> hist(static_cast<std::size_t>(passes) * radix, 0);
    for (std::size_t i = 0; i < n; ++i) {
        const u64 x = v[i];
        for (int p = 0; p < passes; ++p) ++hist[p * radix + ((x >> (width * p)) & mask)];
    }
    u64* src = v;
    u64* dst = tmp;
    for (int p = 0; p < passes; ++p) {
        Count* h = hist.data() + p * radix;
        Count sum = 0;
        for (std::size_t b = 0; b < radix; ++b) {
            const Count c = h[b];
            h[b] = sum;
            sum += c;
        }
        const int shift = width * p;
        for (std::size_t i = 0; i < n; ++i) dst[h[(src[i] >> shift) & mask]++] = src[i];
        std::swap(src, dst);
    }
    if (src != v) std::memcpy(v, src, n * sizeof(u64));
}

// Sorts the low `bits` (<= 32) bits of the n k-mers of v as uint32 keys: half the memory
// traffic of sorting the k-mers themselves. a and b are scratch of n keys each; the sorted
// keys end in b. Digits as in radix_sort_low_bits.
// The pass count is a template argument so that the histogram loop is unrolled.
template <int passes>
void radix_sort_low_keys(const u64* v, std::uint32_t* a, std::uint32_t* b, std::size_t n, int bits) {
    const int width = (bits + passes - 1) / passes;
    const std::size_t radix = std::size_t(1) << width;
    const std::uint32_t mask = static_cast<std::uint32_t>(radix - 1);
    std::vector<std::uint32_t> hist(static_cast<std::size_t>(passes) * radix, 0);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t x = static_cast<std::uint32_t>(v[i]);
        for (int p = 0; p < passes; ++p) ++hist[p * radix + ((x >> (width * p)) & mask)];
    }
    for (int p = 0; p < passes; ++p) {
        std::uint32_t* h = hist.data() + p * radix;
        std::uint32_t sum = 0;
        for (std::size_t d = 0; d < radix; ++d) {
            const std::uint32_t c = h[d];
            h[d] = sum;
            sum += c;
        }
    }
    // destinations alternate so that the last pass writes b
    std::uint32_t* dst = passes % 2 ? b : a;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t x = static_cast<std::uint32_t>(v[i]);
        dst[hist[x & mask]++] = x;
    }
    for (int p = 1; p < passes; ++p) {
        std::uint32_t* src = dst;
        dst = src == a ? b : a;
        std::uint32_t* h = hist.data() + p * radix;
        const int shift = width * p;
        for (std::size_t i = 0; i < n; ++i) dst[h[(src[i] >> shift) & mask]++] = src[i];
    }
}

// count_block for blocks whose k-mers differ in at most 32 low bits: sorts uint32 keys (in
// tmp, which has room for 2n of them), then counts runs into v (k-mers) and tmp (counts).
// Writing count m (bytes 8m..8m+8 of tmp) never reaches a key not yet read: key i sits at
// bytes 4n + 4i and m <= i.
std::size_t count_block_low_keys(u64* v, u64* tmp, std::size_t n, int low_bits, u64 floor) {
    const u64 prefix = v[0] & ~((u64(1) << low_bits) - 1);
    auto* a = reinterpret_cast<std::uint32_t*>(tmp);
    std::uint32_t* b = a + n;
    switch (std::max(1, (low_bits + 10) / 11)) {  // digits of up to 11 bits
        case 1: radix_sort_low_keys<1>(v, a, b, n, low_bits); break;
        case 2: radix_sort_low_keys<2>(v, a, b, n, low_bits); break;
        default: radix_sort_low_keys<3>(v, a, b, n, low_bits); break;
    }
    std::uint32_t prev = b[0];
    u64 run = 1;
    std::size_t m = 0;
    for (std::size_t i = 1; i < n; ++i) {
        const std::uint32_t x = b[i];
        const u64 step = x != prev;
        v[m] = prefix | prev;
        tmp[m] = run;
        m += step;
        run = step ? 1 : run + 1;
        prev = x;
    }
    v[m] = prefix | prev;
    tmp[m++] = run;
    if (floor <= 1) return m;
    std::size_t kept = 0;
    for (std::size_t r = 0; r < m; ++r) {
        if (tmp[r] >= floor) {
            v[kept] = v[r];
            tmp[kept] = tmp[r];
            ++kept;
        }
    }
    return kept;
}

// Blocks whose k-mers differ in at most this many low bits may be tallied in a table
// (2^18 uint32 = 1 MiB, about one core's L2) instead of sorted.
constexpr int kTallyBits = 18;

// Counts the n k-mers of v (all equal above bit low_bits). Writes the distinct k-mers
// with count >= min_count, ascending, over v[0, m) and their counts to tmp[0, m); returns m.
// tmp has room for n; tally is per-thread scratch.
std::size_t count_block(u64* v, u64* tmp, std::size_t n, int low_bits, u64 min_count, std::vector<std::uint32_t>& tally) {
    if (n == 0) return 0;
    const u64 floor = std::max<u64>(1, min_count);
    std::size_t m = 0;
    // A tally table costs a clear and a scan of 2^low_bits slots: it beats sorting only
    // for blocks at least a quarter as large (measured at k = 11 and 13).
    if (low_bits <= kTallyBits && (n << 2) >= (std::size_t(1) << low_bits) && n < 0xffffffffULL) {
        const u64 low_mask = (u64(1) << low_bits) - 1;
        const u64 prefix = v[0] & ~low_mask;
        tally.assign(std::size_t(1) << low_bits, 0);
        for (std::size_t i = 0; i < n; ++i) ++tally[v[i] & low_mask];
        // Without a branch on the slot (about half the slots are empty, at random): every
        // slot is written at row m, which moves on only for a kept one. m < n until the
        // last distinct k-mer is kept, and then every slot left is empty.
        const std::size_t slots = tally.size();
        for (std::size_t j = 0; j < slots && m < n; ++j) {
            const u64 t = tally[j];
            v[m] = prefix | j;
            tmp[m] = t;
            m += t >= floor;
        }
        return m;
    }
    if (low_bits <= 32 && n < 0xffffffffULL) return count_block_low_keys(v, tmp, n, low_bits, floor);
    if (n < 0xffffffffULL) {
        radix_sort_low_bits<std::uint32_t>(v, tmp, n, low_bits);
    } else {
        radix_sort_low_bits<u64>(v, tmp, n, low_bits);
    }
    // Run-length count without branches (most k-mers occur once, so a branch on "same as
    // the last one" mispredicts constantly): row m is rewritten until the k-mer changes.
    u64 prev = v[0], run = 1;
    for (std::size_t i = 1; i < n; ++i) {
        const u64 x = v[i];
        const u64 step = x != prev;
        tmp[m] = run;
        m += step;
        run = step ? 1 : run + 1;
        v[m] = x;
        prev = x;
    }
    tmp[m++] = run;
    if (floor <= 1) return m;
    std::size_t kept = 0;
    for (std::size_t r = 0; r < m; ++r) {
        if (tmp[r] >= floor) {
            v[kept] = v[r];
            tmp[kept] = tmp[r];
            ++kept;
        }
    }
    return kept;
}

// ---------------------------------------------------------------------------------------
// Spill files: one per bucket, appended through per-thread buffers.

struct FileCloser {
    void operator()(std::FILE* f) const {
        if (f) std::fclose(f);
    }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

[[noreturn]] void spill_error(const std::string& what, const std::string& path) {
    throw std::runtime_error("cannot " + what + " spill file " + path + ": " + std::strerror(errno));
}

class SpillFiles {
  public:
    // All buffers are one allocation, so that it goes back to the system when freed
    // (thousands of small per-thread buffers would stay resident in malloc's arenas).
    SpillFiles(const std::string& dir, std::size_t n_buckets, int threads, std::size_t buffer_items)
        : files_(n_buckets), locks_(n_buckets), n_buckets_(n_buckets), cap_(buffer_items),
          fill_(n_buckets * threads, 0), buffers_(n_buckets * threads * buffer_items) {
        for (std::size_t b = 0; b < n_buckets; ++b) {
            paths_.push_back(dir + "/bucket" + std::to_string(b) + ".bin");
            files_[b].reset(std::fopen(paths_[b].c_str(), "wb"));
            if (!files_[b]) spill_error("create", paths_[b]);
        }
    }
    // Appends x to bucket b through thread tid's buffer.
    inline void add(int tid, std::size_t b, u64 x) {
        const std::size_t slot = static_cast<std::size_t>(tid) * n_buckets_ + b;
        u64* buf = buffers_.data() + slot * cap_;
        buf[fill_[slot]++] = x;
        if (fill_[slot] == cap_) flush(slot);
    }
    // Writes every buffer out, frees them and closes the files.
    void finish() {
        for (std::size_t slot = 0; slot < fill_.size(); ++slot) flush(slot);
        std::vector<u64>().swap(buffers_);
        for (std::size_t b = 0; b < files_.size(); ++b) {
            if (std::fclose(files_[b].release()) != 0) spill_error("write", paths_[b]);
        }
    }
    const std::string& path(std::size_t b) const { return paths_[b]; }

  private:
    void flush(std::size_t slot) {
        const std::size_t b = slot % n_buckets_;
        const std::size_t n = fill_[slot];
        if (n == 0) return;
        std::lock_guard<std::mutex> lock(locks_[b]);
        if (std::fwrite(buffers_.data() + slot * cap_, sizeof(u64), n, files_[b].get()) != n) spill_error("write", paths_[b]);
        fill_[slot] = 0;
    }
    std::vector<File> files_;
    std::vector<std::mutex> locks_;
    std::vector<std::string> paths_;
    std::size_t n_buckets_, cap_;
    std::vector<std::size_t> fill_;
    std::vector<u64> buffers_;
};

// Streams a spill file in chunks, calling fn(chunk, n) for each.
template <typename Fn>
void read_spill(const std::string& path, Fn&& fn) {
    File f(std::fopen(path.c_str(), "rb"));
    if (!f) spill_error("open", path);
    std::vector<u64> chunk(std::size_t(1) << 16);
    std::size_t got;
    while ((got = std::fread(chunk.data(), sizeof(u64), chunk.size(), f.get())) > 0) fn(chunk.data(), got);
    if (std::ferror(f.get())) spill_error("read", path);
}

// ---------------------------------------------------------------------------------------
// Partition counter.

// Per-item working memory of a counted block: the k-mers and one scratch word.
constexpr u64 kBytesPerItem = 16;

struct Buckets {
    int bits;                        // top bits that pick a bucket
    int shift;                       // 2k - bits: the bits below the bucket index
    std::vector<std::size_t> sizes;  // k-mers per bucket
    std::vector<std::size_t> offsets;  // per segment x bucket: write offsets (in-memory scatter)
    std::size_t total = 0;
};

template <bool Canonical>
Buckets histogram(const std::vector<Segment>& segs, const Options& o) {
    Buckets bk;
    bk.bits = std::min(8, 2 * o.k);
    bk.shift = 2 * o.k - bk.bits;
    const std::size_t nb = std::size_t(1) << bk.bits;
    // Per segment, so that the in-memory scatter is deterministic whichever thread
    // takes which segment.
    bk.offsets.assign(segs.size() * nb, 0);
    const int shift = bk.shift;
    parallel_for(o.threads, segs.size(), [&](int, std::size_t s) {
        if (static_cast<long long>(s) == g_fault_segment.load()) throw std::bad_alloc();
        std::size_t* h = bk.offsets.data() + s * nb;
        for_each_kmer<Canonical>(segs[s], o.k, [&](u64 x) { ++h[x >> shift]; });
    });
    bk.sizes.assign(nb, 0);
    for (std::size_t s = 0; s < segs.size(); ++s)
        for (std::size_t b = 0; b < nb; ++b) bk.sizes[b] += bk.offsets[s * nb + b];
    for (std::size_t b = 0; b < nb; ++b) bk.total += bk.sizes[b];
    return bk;
}

// Counts buckets [first, last) held consecutively in v (with scratch tmp), in parallel,
// then hands each bucket's rows to the sink in order.
void count_batch(u64* v, u64* tmp, const std::vector<std::size_t>& sizes, std::size_t first, std::size_t last,
                 int shift, const Options& o, const Sink& sink) {
    std::vector<std::size_t> start(last - first + 1, 0), found(last - first, 0);
    for (std::size_t b = first; b < last; ++b) start[b - first + 1] = start[b - first] + sizes[b];
    std::vector<std::vector<std::uint32_t>> tallies(effective_threads(o.threads));
    parallel_for(o.threads, last - first, [&](int tid, std::size_t i) {
        found[i] = count_block(v + start[i], tmp + start[i], start[i + 1] - start[i], shift, o.min_count, tallies[tid]);
    });
    for (std::size_t i = 0; i < last - first; ++i) sink_in_chunks(sink, v + start[i], tmp + start[i], found[i]);
}

// The end of the batch of buckets starting at `first` whose items fit `items` (at least one).
std::size_t batch_end(const std::vector<std::size_t>& sizes, std::size_t first, u64 items) {
    std::size_t last = first, sum = 0;
    while (last < sizes.size() && (last == first || sum + sizes[last] <= items)) sum += sizes[last++];
    return last;
}

template <bool Canonical>
void count_in_memory(const std::vector<Segment>& segs, const Options& o, Buckets& bk, const Sink& sink) {
    const std::size_t nb = bk.sizes.size();
    std::size_t pos = 0;
    for (std::size_t b = 0; b < nb; ++b) {
        for (std::size_t s = 0; s < segs.size(); ++s) {
            std::size_t count = bk.offsets[s * nb + b];
            bk.offsets[s * nb + b] = pos;  // becomes the write offset
            pos += count;
        }
    }
    // A second rolling pass scatters every k-mer straight into its bucket: rolling again
    // costs less than writing and re-reading a copy of all k-mers.
    BigArray all(bk.total);
    const int shift = bk.shift;
    parallel_for(o.threads, segs.size(), [&](int, std::size_t s) {
        std::size_t* off = bk.offsets.data() + s * nb;
        u64* dst = all.data();
        for_each_kmer<Canonical>(segs[s], o.k, [&](u64 x) { dst[off[x >> shift]++] = x; });
    });
    std::vector<std::size_t>().swap(bk.offsets);
    // Scratch for the largest batch that fits what is left of the budget; all of it when
    // collecting, since the rows are then compacted in place into `all` and `tmp` and
    // returned without a copy (fresh pages cost as much as counting).
    const u64 left = o.budget > bk.total * 8 ? (o.budget - bk.total * 8) / 8 : 0;
    const u64 batch_items = o.collect ? bk.total : std::max<u64>(left, *std::max_element(bk.sizes.begin(), bk.sizes.end()));
    BigArray tmp(std::min<u64>(batch_items, bk.total));
    std::size_t rows = 0;
    const Sink compact = [&](const u64* km, const u64* ct, std::size_t n) {
        std::memmove(all.data() + rows, km, n * sizeof(u64));  // rows <= source offset: moves down
        std::memmove(tmp.data() + rows, ct, n * sizeof(u64));
        rows += n;
    };
    std::size_t begin = 0;
    for (std::size_t first = 0; first < nb;) {
        const std::size_t last = batch_end(bk.sizes, first, tmp.size());
        count_batch(all.data() + begin, tmp.data(), bk.sizes, first, last, shift, o, o.collect ? compact : sink);
        for (std::size_t b = first; b < last; ++b) begin += bk.sizes[b];
        first = last;
    }
    if (o.collect) {
        o.collect->kmers = std::move(all);
        o.collect->counts = std::move(tmp);
        o.collect->rows = rows;
    }
}

// Loads the k-mers of a spill file whose bits from `shift` up lie in [lo, hi), counts them
// (they share every bit above `low`) and hands the rows to the sink.
void count_spilled_keys(const std::string& path, int shift, u64 lo, u64 hi, std::size_t n, int low, const Options& o,
                        const Sink& sink) {
    std::vector<u64> v, tmp(n);
    v.reserve(n);
    read_spill(path, [&](const u64* c, std::size_t got) {
        for (std::size_t i = 0; i < got; ++i) {
            const u64 key = c[i] >> shift;
            if (key >= lo && key < hi) v.push_back(c[i]);
        }
    });
    std::vector<std::uint32_t> tally;
    const std::size_t m = count_block(v.data(), tmp.data(), v.size(), low, o.min_count, tally);
    sink_in_chunks(sink, v.data(), tmp.data(), m);
}

// Counts the n k-mers of a spill file whose top `prefix_bits` bits equal `prefix`, when
// they do not fit the budget: histograms their next bits, then counts runs of sub-ranges
// that fit, one file pass each, and splits a sub-range too large on its own again.
void count_spilled_range(const std::string& path, u64 prefix, int prefix_bits, std::size_t n, const Options& o,
                         const Sink& sink) {
    const int low = 2 * o.k - prefix_bits;
    if (n == 0) return;
    if (low == 0) {  // one k-mer repeated n times: nothing to load
        const u64 count = n;
        if (count >= std::max<u64>(1, o.min_count)) sink(&prefix, &count, 1);
        return;
    }
    const int sub_bits = std::min(8, low);
    const int sub_shift = low - sub_bits;
    const u64 first_key = prefix << sub_bits;
    std::vector<std::size_t> sub(std::size_t(1) << sub_bits, 0);
    read_spill(path, [&](const u64* c, std::size_t got) {
        for (std::size_t i = 0; i < got; ++i)
            if ((c[i] >> low) == prefix) ++sub[(c[i] >> sub_shift) - first_key];
    });
    const u64 items = std::max<u64>(1, o.budget / kBytesPerItem);
    for (std::size_t j = 0; j < sub.size();) {
        if (sub[j] > items) {
            count_spilled_range(path, first_key + j, prefix_bits + sub_bits, sub[j], o, sink);
            ++j;
            continue;
        }
        std::size_t end = j, sum = 0;
        while (end < sub.size() && sub[end] <= items && sum + sub[end] <= items) sum += sub[end++];
        if (sum) count_spilled_keys(path, sub_shift, first_key + j, first_key + end, sum, low, o, sink);
        j = end;
    }
}

// Loads buckets [first, last) from their spill files into v (consecutively).
void load_buckets(const SpillFiles& files, const std::vector<std::size_t>& sizes, std::size_t first, std::size_t last,
                  u64* v, const Options& o) {
    std::vector<std::size_t> start(last - first + 1, 0);
    for (std::size_t b = first; b < last; ++b) start[b - first + 1] = start[b - first] + sizes[b];
    parallel_for(o.threads, last - first, [&](int, std::size_t i) {
        u64* dst = v + start[i];
        read_spill(files.path(first + i), [&](const u64* c, std::size_t got) {
            std::memcpy(dst, c, got * sizeof(u64));
            dst += got;
        });
        if (dst != v + start[i + 1]) throw std::runtime_error("spill file " + files.path(first + i) + " changed size");
    });
}

// Counts the buckets held in (finished) spill files, in order: batches of buckets that fit the
// budget are loaded and counted in parallel; a bucket over the budget on its own is split by
// its next bits. Each file is removed once counted.
void count_spill_files(const SpillFiles& files, const std::vector<std::size_t>& sizes, int bits, int shift,
                       const Options& o, const Sink& sink) {
    const std::size_t nb = sizes.size();
    const u64 batch_items = std::max<u64>(1, o.budget / kBytesPerItem);
    for (std::size_t first = 0; first < nb;) {
        if (sizes[first] > batch_items) {  // alone over the budget: split it by its next bits
            count_spilled_range(files.path(first), first, bits, sizes[first], o, sink);
            std::remove(files.path(first).c_str());
            ++first;
            continue;
        }
        std::size_t last = first;
        std::size_t sum = 0;
        while (last < nb && sizes[last] <= batch_items && sum + sizes[last] <= batch_items) sum += sizes[last++];
        BigArray v(sum), tmp(sum);
        load_buckets(files, sizes, first, last, v.data(), o);
        for (std::size_t b = first; b < last; ++b) std::remove(files.path(b).c_str());
        count_batch(v.data(), tmp.data(), sizes, first, last, shift, o, sink);
        first = last;
    }
}

// Per-thread spill buffers: at most an eighth of the budget, 4 KiB to 64 KiB each.
u64 spill_buffer_items(const Options& o, std::size_t n_buckets) {
    return std::clamp<u64>(o.budget / (8 * 8 * n_buckets * effective_threads(o.threads)), 512, 8192);
}

template <bool Canonical>
void count_spilled(const std::vector<Segment>& segs, const Options& o, Buckets& bk, const Sink& sink) {
    const std::size_t nb = bk.sizes.size();
    SpillFiles files(o.spill_dir, nb, effective_threads(o.threads), spill_buffer_items(o, nb));
    const int shift = bk.shift;
    parallel_for(o.threads, segs.size(), [&](int tid, std::size_t s) {
        for_each_kmer<Canonical>(segs[s], o.k, [&](u64 x) { files.add(tid, x >> shift, x); });
    });
    files.finish();
    count_spill_files(files, bk.sizes, bk.bits, shift, o, sink);
}

// k-mers of a genome handed over a stretch at a time (the caller reads the FASTA in pieces),
// appended to one spill file per bucket as they come, then counted bucket by bucket: the
// genome never has to be in memory (KMC's design). No k-mer spans two stretches: the caller
// repeats the last k - 1 bases of a record at the start of its next stretch.
class KmerSpiller {
  public:
    KmerSpiller(int k, bool canonical, int threads, u64 budget, const std::string& spill_dir) : canonical_(canonical) {
        if (k < 1 || k > 31) throw py::value_error("k must be between 1 and 31, got " + std::to_string(k));
        if (threads < 1) throw py::value_error("threads must be >= 1");
        o_.k = k;
        o_.threads = effective_threads(threads);
        o_.budget = budget == 0 ? std::numeric_limits<u64>::max() : budget;
        o_.spill_dir = spill_dir;
        bits_ = std::min(8, 2 * k);
        shift_ = 2 * k - bits_;
        const std::size_t nb = std::size_t(1) << bits_;
        sizes_.assign(nb, 0);
        files_ = std::make_unique<SpillFiles>(spill_dir, nb, o_.threads, spill_buffer_items(o_, nb));
    }

    void add(const std::vector<py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>>& arrays) {
        if (done_) throw std::logic_error("add() after count()");
        std::vector<Sequence> seqs;
        for (const auto& a : arrays) {
            if (a.ndim() != 1) throw py::value_error("each code array must be one-dimensional");
            seqs.push_back({a.data(), static_cast<std::size_t>(a.shape(0))});
        }
        py::gil_scoped_release release;
        const auto segs = make_segments(seqs, o_.k, static_cast<std::size_t>(o_.threads) * 8);
        std::vector<std::vector<std::size_t>> local(o_.threads, std::vector<std::size_t>(sizes_.size(), 0));
        const int shift = shift_;
        parallel_for(o_.threads, segs.size(), [&](int tid, std::size_t s) {
            std::size_t* n = local[tid].data();
            auto put = [&](u64 x) {
                files_->add(tid, x >> shift, x);
                ++n[x >> shift];
            };
            canonical_ ? for_each_kmer<true>(segs[s], o_.k, put) : for_each_kmer<false>(segs[s], o_.k, put);
        });
        for (const auto& l : local)
            for (std::size_t b = 0; b < sizes_.size(); ++b) sizes_[b] += l[b];
    }

    std::size_t count(u64 min_count, const py::function& sink) {
        if (done_) throw std::logic_error("count() called twice");
        done_ = true;
        o_.min_count = min_count;
        std::size_t rows = 0;
        Sink to_python = [&](const u64* km, const u64* ct, std::size_t n) {
            py::gil_scoped_acquire gil;
            rows += n;
            sink(borrowed(km, n), borrowed(ct, n));
        };
        py::gil_scoped_release release;
        files_->finish();
        count_spill_files(*files_, sizes_, bits_, shift_, o_, to_python);
        return rows;
    }

  private:
    Options o_;
    bool canonical_;
    bool done_ = false;
    int bits_ = 0, shift_ = 0;
    std::vector<std::size_t> sizes_;
    std::unique_ptr<SpillFiles> files_;
};

template <bool Canonical>
void count_partitioned(const std::vector<Segment>& segs, const Options& o, const Sink& sink) {
    Buckets bk = histogram<Canonical>(segs, o);
    if (bk.total * kBytesPerItem <= o.budget || o.spill_dir.empty()) {
        count_in_memory<Canonical>(segs, o, bk, sink);
    } else {
        std::vector<std::size_t>().swap(bk.offsets);
        count_spilled<Canonical>(segs, o, bk, sink);
    }
}

// ---------------------------------------------------------------------------------------
// Python bindings.

using CodeArray = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;

std::vector<Sequence> sequences_of(const std::vector<CodeArray>& arrays, std::size_t& total) {
    std::vector<Sequence> seqs;
    total = 0;
    for (const auto& a : arrays) {
        if (a.ndim() != 1) throw py::value_error("each code array must be one-dimensional");
        seqs.push_back({a.data(), static_cast<std::size_t>(a.shape(0))});
        total += static_cast<std::size_t>(a.shape(0));
    }
    return seqs;
}

// Picks the counter: "dense" and "partition" force one; "auto" takes a dense table for
// k <= 13 when the k-mers would not fit the budget in memory but the table does.
bool use_dense(const std::string& method, int k, std::size_t total, u64 budget) {
    if (method == "partition") return false;
    if (method == "dense") {
        if (k > 13) throw py::value_error("the dense counter supports k <= 13");
        return true;
    }
    if (method != "auto") throw py::value_error("method must be 'auto', 'partition' or 'dense'");
    if (k > 13) return false;
    const u64 table_bytes = (u64(1) << (2 * k)) * 4;
    return total * kBytesPerItem > budget && table_bytes <= budget;
}

void count_native(const std::vector<Sequence>& seqs, std::size_t total, const Options& o, bool canonical, bool dense,
                  const Sink& sink) {
    const auto segs = make_segments(seqs, o.k, static_cast<std::size_t>(effective_threads(o.threads)) * 8);
    if (dense) {
        const bool wide = total >= g_dense_wide_from.load();  // a uint32 cell could wrap
        if (canonical) {
            wide ? count_dense<true, u64>(segs, o, sink) : count_dense<true, std::uint32_t>(segs, o, sink);
        } else {
            wide ? count_dense<false, u64>(segs, o, sink) : count_dense<false, std::uint32_t>(segs, o, sink);
        }
    } else {
        canonical ? count_partitioned<true>(segs, o, sink) : count_partitioned<false>(segs, o, sink);
    }
}

// A view of n words that lives only during the sink call (no copy).
py::array_t<u64> borrowed(const u64* p, std::size_t n) {
    static int anchor = 0;
    py::capsule owner(&anchor, [](void*) {});
    py::array_t<u64> view({n}, {sizeof(u64)}, p, owner);
    py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return view;
}

std::size_t count_kmers_stream_py(const std::vector<CodeArray>& arrays, int k, bool canonical, u64 min_count,
                                  int threads, const std::string& method, u64 memory, const std::string& spill_dir,
                                  const py::function& sink) {
    if (k < 1 || k > 31) throw py::value_error("k must be between 1 and 31, got " + std::to_string(k));
    if (threads < 1) throw py::value_error("threads must be >= 1");
    std::size_t total = 0;
    const auto seqs = sequences_of(arrays, total);
    Options o;
    o.k = k;
    o.threads = effective_threads(threads);
    o.min_count = min_count;
    o.budget = memory == 0 ? std::numeric_limits<u64>::max() : memory;
    o.spill_dir = spill_dir;
    const bool dense = use_dense(method, k, total, o.budget);
    std::size_t rows = 0;
    Sink to_python = [&](const u64* km, const u64* ct, std::size_t n) {
        py::gil_scoped_acquire gil;
        rows += n;
        sink(borrowed(km, n), borrowed(ct, n));
    };
    py::gil_scoped_release release;
    count_native(seqs, total, o, canonical, dense, to_python);
    return rows;
}

// The first `rows` words of a BigArray as a numpy array that owns it (no copy).
py::array_t<u64> array_to_numpy(BigArray&& a, std::size_t rows) {
    auto* holder = new BigArray(std::move(a));
    py::capsule owner(holder, [](void* p) { delete static_cast<BigArray*>(p); });
    static u64 empty = 0;
    return py::array_t<u64>({rows}, {sizeof(u64)}, holder->data() ? holder->data() : &empty, owner);
}

py::tuple count_kmers_py(const std::vector<CodeArray>& arrays, int k, bool canonical, u64 min_count, int threads,
                         const std::string& method) {
    if (k < 1 || k > 31) throw py::value_error("k must be between 1 and 31, got " + std::to_string(k));
    if (threads < 1) throw py::value_error("threads must be >= 1");
    std::size_t total = 0;
    const auto seqs = sequences_of(arrays, total);
    Options o;
    o.k = k;
    o.threads = effective_threads(threads);
    o.min_count = min_count;
    const bool dense = use_dense(method, k, total, o.budget);
    // The in-memory partition counter hands its own arrays over; the dense counter streams
    // rows into room for every possible row, reserved but not touched until written.
    const std::size_t bound = std::min<std::size_t>(total, std::size_t(1) << std::min(2 * k, 62));
    Collected c;
    o.collect = &c;
    {
        py::gil_scoped_release release;
        count_native(seqs, total, o, canonical, dense, [&](const u64* km, const u64* ct, std::size_t n) {
            if (c.kmers.size() == 0) c.kmers = BigArray(bound), c.counts = BigArray(bound);
            std::memcpy(c.kmers.data() + c.rows, km, n * sizeof(u64));
            std::memcpy(c.counts.data() + c.rows, ct, n * sizeof(u64));
            c.rows += n;
        });
    }
    const std::size_t rows = c.rows;
    return py::make_tuple(array_to_numpy(std::move(c.kmers), rows), array_to_numpy(std::move(c.counts), rows));
}

py::bytes format_kmer_tsv_py(py::array_t<u64, py::array::c_style | py::array::forcecast> kmers,
                             py::array_t<u64, py::array::c_style | py::array::forcecast> counts, int k) {
    if (kmers.ndim() != 1 || counts.ndim() != 1 || kmers.shape(0) != counts.shape(0)) {
        throw py::value_error("kmers and counts must be 1-D arrays of the same length");
    }
    if (k < 1 || k > 31) throw py::value_error("k must be between 1 and 31");
    std::string out;
    const std::size_t n = static_cast<std::size_t>(kmers.shape(0));
    const u64* km = kmers.data();
    const u64* ct = counts.data();
    {
        py::gil_scoped_release release;
        static const char letters[4] = {'A', 'C', 'G', 'T'};
        out.reserve(n * (k + 10));
        char num[24];
        for (std::size_t i = 0; i < n; ++i) {
            for (int j = k - 1; j >= 0; --j) out.push_back(letters[(km[i] >> (2 * j)) & 3]);
            out.push_back('\t');
            int len = std::snprintf(num, sizeof num, "%llu\n", static_cast<unsigned long long>(ct[i]));
            out.append(num, static_cast<std::size_t>(len));
        }
    }
    return py::bytes(out);
}

}  // namespace

void bind_kmers(py::module_& m) {
    m.def("count_kmers", &count_kmers_py, py::arg("arrays"), py::arg("k"), py::arg("canonical") = false,
          py::arg("min_count") = 1, py::arg("threads") = 1, py::arg("method") = "auto",
          "Count k-mers over a list of uint8 code arrays. Returns (packed kmers uint64, counts uint64),\n"
          "sorted by packed k-mer (= lexicographic order).");
    m.def("count_kmers_stream", &count_kmers_stream_py, py::arg("arrays"), py::arg("k"), py::arg("canonical"),
          py::arg("min_count"), py::arg("threads"), py::arg("method"), py::arg("memory"), py::arg("spill_dir"),
          py::arg("sink"),
          "Count k-mers within `memory` bytes of working memory (0 = no limit), spilling buckets to\n"
          "files in `spill_dir` (\"\" = never) when they do not fit. Calls sink(kmers, counts) with\n"
          "uint64 views, valid only during the call, in ascending k-mer order. Returns the row count.");
    py::class_<KmerSpiller>(m, "KmerSpiller",
                            "k-mers spilled to bucket files a stretch at a time, then counted within a budget.")
        .def(py::init<int, bool, int, u64, const std::string&>(), py::arg("k"), py::arg("canonical"),
             py::arg("threads"), py::arg("memory"), py::arg("spill_dir"),
             "memory: bytes of working memory (0 = no limit); spill_dir: an existing folder for the files.")
        .def("add", &KmerSpiller::add, py::arg("arrays"),
             "Append the k-mers of these uint8 code arrays (none spans two arrays) to the bucket files.")
        .def("count", &KmerSpiller::count, py::arg("min_count"), py::arg("sink"),
             "Count every k-mer added; sink(kmers, counts) gets uint64 views in ascending order. Returns rows.");
    m.def("format_kmer_tsv", &format_kmer_tsv_py, py::arg("kmers"), py::arg("counts"), py::arg("k"),
          "Format packed k-mers and counts as 'KMER\\tCOUNT\\n' lines (no header).");
    m.def("_set_kmer_fault", [](long long segment) { g_fault_segment.store(segment); }, py::arg("segment"),
          "Test hook: the k-mer histogram worker that takes `segment` throws std::bad_alloc (-1 = off).");
    m.def("_set_dense_wide_from", [](unsigned long long bases) { g_dense_wide_from.store(bases); }, py::arg("bases"),
          "Test hook: inputs of at least `bases` bases use uint64 dense cells (default 2^32 - 1).");
}

}  // namespace genesae
