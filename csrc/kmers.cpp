// k-mer counting over base-code arrays (A=0, C=1, G=2, T=3, other=4), k in 1..31.
//
// k-mers are packed 2 bits a base, first base in the high bits, so numeric order of the
// packed codes is lexicographic order of the strings. A k-mer that would span a code-4
// base is skipped; records are counted independently, so none spans a record boundary.
// Canonical counting keys each k-mer by min(packed, packed reverse complement).
//
// Two counters:
//  * partition (the default, any k): a first pass histograms the k-mers' top 8 bits, a
//    second scatters the packed k-mers into those 256 buckets (few enough write streams
//    for the cache). A bucket whose k-mers differ only in <= 18 low bits (k <= 13) is
//    tallied in a dense table of at most 1 MiB; a larger one is
//    sorted with an LSD radix sort and run-length counted. Every memory access pattern is
//    sequential or confined to cache, which is what makes it fast: a plain 4^k table
//    misses cache on almost every increment once k >= 11.
//  * dense (k <= 13, kept as an independent reference): one 4^k table of uint32, with
//    private tables per thread when they fit a budget, else relaxed atomic increments.
// Work is split into segments of roughly equal length (long records are cut with a k-1
// overlap so that every start position is owned by exactly one segment).
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

#include "native.hpp"

namespace py = pybind11;

namespace genesae {
namespace {

struct Sequence {
    const std::uint8_t* codes;
    std::size_t length;
};

struct Segment {
    const std::uint8_t* codes;  // start of the record
    std::size_t length;         // length of the record
    std::size_t begin, end;     // k-mer start positions owned by this segment
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
    const std::uint64_t mask = (k == 32) ? ~0ULL : ((1ULL << (2 * k)) - 1);
    const int rc_shift = 2 * (k - 1);
    std::uint64_t fwd = 0, rev = 0;
    int run = 0;
    const std::size_t stop = seg.end + k - 1;  // one past the last base read
    for (std::size_t p = seg.begin; p < stop; ++p) {
        const std::uint64_t c = seg.codes[p];
        if (c > 3) {
            run = 0;
            continue;
        }
        fwd = ((fwd << 2) | c) & mask;
        if (Canonical) rev = (rev >> 2) | ((3 - c) << rc_shift);
        if (++run >= k) {
            if (Canonical) {
                emit(fwd < rev ? fwd : rev);
            } else {
                emit(fwd);
            }
        }
    }
}

// Increments table[x] for a stream of keys, prefetching each slot a batch ahead. Counting
// is bound by cache misses on the 4^k table (16 MiB at k = 11); issuing the loads of a
// whole batch before touching them lets the memory system overlap the misses.
template <typename T>
class PrefetchingCounter {
  public:
    explicit PrefetchingCounter(T* table) : table_(table) {}
    inline void add(std::uint64_t x) {
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
    std::uint64_t pending_[kBatch];
    int n_ = 0;
};

template <typename Fn>
void run_parallel(int threads, std::size_t n_items, Fn&& fn) {
    std::atomic<std::size_t> next{0};
    auto worker = [&](int tid) {
        for (std::size_t i = next++; i < n_items; i = next++) fn(tid, i);
    };
    if (threads <= 1) {
        worker(0);
        return;
    }
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
    for (auto& th : pool) th.join();
}

struct Counts {
    std::vector<std::uint64_t> kmers;
    std::vector<std::uint64_t> counts;
};

template <bool Canonical>
Counts count_dense(const std::vector<Segment>& segs, int k, int threads, std::uint64_t min_count) {
    const std::size_t size = std::size_t(1) << (2 * k);
    const std::size_t private_budget = std::size_t(256) << 20;  // bytes for all private tables
    Counts out;
    std::vector<std::uint32_t> table(size, 0);
    if (threads <= 1) {
        PrefetchingCounter<std::uint32_t> counter(table.data());
        for (const auto& s : segs) for_each_kmer<Canonical>(s, k, [&](std::uint64_t x) { counter.add(x); });
        counter.flush();
    } else if (size * sizeof(std::uint32_t) * threads <= private_budget) {
        std::vector<std::vector<std::uint32_t>> priv(threads);
        run_parallel(threads, segs.size(), [&](int tid, std::size_t i) {
            auto& t = priv[tid];
            if (t.empty()) t.assign(size, 0);
            PrefetchingCounter<std::uint32_t> counter(t.data());
            for_each_kmer<Canonical>(segs[i], k, [&](std::uint64_t x) { counter.add(x); });
            counter.flush();
        });
        // Sum the private tables in parallel stripes.
        run_parallel(threads, static_cast<std::size_t>(threads), [&](int, std::size_t stripe) {
            std::size_t lo = size * stripe / threads, hi = size * (stripe + 1) / threads;
            for (const auto& t : priv) {
                if (t.empty()) continue;
                for (std::size_t j = lo; j < hi; ++j) table[j] += t[j];
            }
        });
    } else {
        std::uint32_t* data = table.data();
        run_parallel(threads, segs.size(), [&](int, std::size_t i) {
            for_each_kmer<Canonical>(segs[i], k, [&](std::uint64_t x) {
                __atomic_fetch_add(data + x, 1u, __ATOMIC_RELAXED);
            });
        });
    }
    for (std::size_t j = 0; j < size; ++j) {
        if (table[j] >= min_count && table[j] > 0) {
            out.kmers.push_back(j);
            out.counts.push_back(table[j]);
        }
    }
    return out;
}

// LSD radix sort of v on bits [0, bits), 8 bits a pass; tmp is scratch of the same size.
void radix_sort_low_bits(std::uint64_t* v, std::uint64_t* tmp, std::size_t n, int bits) {
    std::uint64_t* src = v;
    std::uint64_t* dst = tmp;
    for (int shift = 0; shift < bits; shift += 8) {
        std::size_t hist[257] = {0};
        for (std::size_t i = 0; i < n; ++i) ++hist[((src[i] >> shift) & 0xff) + 1];
        for (int b = 0; b < 256; ++b) hist[b + 1] += hist[b];
        for (std::size_t i = 0; i < n; ++i) dst[hist[(src[i] >> shift) & 0xff]++] = src[i];
        std::swap(src, dst);
    }
    if (src != v) std::memcpy(v, src, n * sizeof(std::uint64_t));
}

// Buckets whose k-mers differ in at most this many low bits are tallied in a table
// (2^18 uint32 = 1 MiB, about one core's L2) instead of sorted.
constexpr int kTallyBits = 18;

template <bool Canonical>
Counts count_sorted(const std::vector<Segment>& segs, int k, int threads, std::uint64_t min_count) {
    const int total_bits = 2 * k;
    const int bucket_bits = std::min(8, total_bits);
    const int shift = total_bits - bucket_bits;
    const std::size_t n_buckets = std::size_t(1) << bucket_bits;
    const int n_threads = std::max(1, threads);

    // 1. Histogram of the top bits of each segment's k-mers (per segment, so that the
    //    scatter below is deterministic whichever thread takes which segment).
    const std::size_t n_segs = segs.size();
    std::vector<std::size_t> hist(n_segs * n_buckets, 0);
    run_parallel(n_threads, n_segs, [&](int, std::size_t s) {
        std::size_t* h = hist.data() + s * n_buckets;
        for_each_kmer<Canonical>(segs[s], k, [&](std::uint64_t x) { ++h[x >> shift]; });
    });
    // 2. Offsets, then a second rolling pass scatters every k-mer straight into its
    //    bucket. Rolling again costs less than writing and re-reading a copy of all k-mers.
    std::vector<std::size_t> bucket_start(n_buckets + 1, 0);
    std::size_t pos = 0;
    for (std::size_t b = 0; b < n_buckets; ++b) {
        bucket_start[b] = pos;
        for (std::size_t s = 0; s < n_segs; ++s) {
            std::size_t count = hist[s * n_buckets + b];
            hist[s * n_buckets + b] = pos;  // becomes the write offset
            pos += count;
        }
    }
    bucket_start[n_buckets] = pos;
    std::vector<std::uint64_t> all(pos);
    run_parallel(n_threads, n_segs, [&](int, std::size_t s) {
        std::size_t* off = hist.data() + s * n_buckets;
        std::uint64_t* dst = all.data();
        for_each_kmer<Canonical>(segs[s], k, [&](std::uint64_t x) { dst[off[x >> shift]++] = x; });
    });
    // 3. Tally or sort each bucket. Results go to the bucket's own range of the output
    //    arrays (a bucket has at most as many distinct k-mers as entries), then the
    //    ranges are compacted in bucket order, which is sorted order.
    Counts out;
    out.kmers.resize(pos);
    out.counts.resize(pos);
    std::vector<std::size_t> n_out(n_buckets, 0);
    std::vector<std::vector<std::uint32_t>> tallies(n_threads);
    run_parallel(n_threads, n_buckets, [&](int tid, std::size_t b) {
        const std::size_t lo = bucket_start[b], hi = bucket_start[b + 1];
        if (hi == lo) return;
        std::uint64_t* ok = out.kmers.data() + lo;
        std::uint64_t* oc = out.counts.data() + lo;
        std::size_t m = 0;
        const std::uint64_t prefix = static_cast<std::uint64_t>(b) << shift;
        if (shift <= kTallyBits) {
            // Few enough low bits for a tally table that stays in cache: count, then
            // emit the non-zero slots in order (they come out sorted for free).
            std::vector<std::uint32_t>& tally = tallies[tid];
            tally.assign(std::size_t(1) << shift, 0);
            const std::uint64_t low_mask = (std::uint64_t(1) << shift) - 1;
            for (std::size_t i = lo; i < hi; ++i) ++tally[all[i] & low_mask];
            for (std::size_t j = 0; j < tally.size(); ++j) {
                if (tally[j] != 0 && tally[j] >= min_count) {
                    ok[m] = prefix | j;
                    oc[m] = tally[j];
                    ++m;
                }
            }
        } else {
            std::vector<std::uint64_t> tmp(hi - lo);
            radix_sort_low_bits(all.data() + lo, tmp.data(), hi - lo, shift);
            std::size_t i = lo;
            while (i < hi) {
                std::size_t j = i + 1;
                while (j < hi && all[j] == all[i]) ++j;
                if (j - i >= min_count) {
                    ok[m] = all[i];
                    oc[m] = j - i;
                    ++m;
                }
                i = j;
            }
        }
        n_out[b] = m;
    });
    std::size_t total = 0;
    for (std::size_t b = 0; b < n_buckets; ++b) {
        const std::size_t lo = bucket_start[b];
        if (n_out[b] && total != lo) {
            std::memmove(out.kmers.data() + total, out.kmers.data() + lo, n_out[b] * sizeof(std::uint64_t));
            std::memmove(out.counts.data() + total, out.counts.data() + lo, n_out[b] * sizeof(std::uint64_t));
        }
        total += n_out[b];
    }
    out.kmers.resize(total);
    out.counts.resize(total);
    return out;
}

template <typename T>
py::array_t<T> vector_to_numpy(std::vector<T>&& v) {
    auto* holder = new std::vector<T>(std::move(v));
    py::capsule owner(holder, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>({holder->size()}, {sizeof(T)}, holder->data(), owner);
}

py::tuple count_kmers_py(const std::vector<py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>>& arrays,
                         int k, bool canonical, std::uint64_t min_count, int threads, const std::string& method) {
    if (k < 1 || k > 31) throw py::value_error("k must be between 1 and 31, got " + std::to_string(k));
    if (threads < 1) throw py::value_error("threads must be >= 1");
    std::vector<Sequence> seqs;
    std::size_t total = 0;
    for (const auto& a : arrays) {
        if (a.ndim() != 1) throw py::value_error("each code array must be one-dimensional");
        seqs.push_back({a.data(), static_cast<std::size_t>(a.shape(0))});
        total += static_cast<std::size_t>(a.shape(0));
    }
    bool dense;
    if (method == "auto" || method == "partition") {
        dense = false;
    } else if (method == "dense") {
        if (k > 13) throw py::value_error("the dense counter supports k <= 13");
        // uint32 cells: refuse inputs where a count could overflow.
        if (total >= 0xffffffffULL) throw py::value_error("the dense counter supports < 2^32 bases");
        dense = true;
    } else {
        throw py::value_error("method must be 'auto', 'partition' or 'dense'");
    }
    Counts result;
    {
        py::gil_scoped_release release;
        auto segs = make_segments(seqs, k, static_cast<std::size_t>(threads) * 8);
        if (dense) {
            result = canonical ? count_dense<true>(segs, k, threads, min_count)
                               : count_dense<false>(segs, k, threads, min_count);
        } else {
            result = canonical ? count_sorted<true>(segs, k, threads, min_count)
                               : count_sorted<false>(segs, k, threads, min_count);
        }
    }
    return py::make_tuple(vector_to_numpy(std::move(result.kmers)), vector_to_numpy(std::move(result.counts)));
}

py::bytes format_kmer_tsv_py(py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast> kmers,
                             py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast> counts, int k) {
    if (kmers.ndim() != 1 || counts.ndim() != 1 || kmers.shape(0) != counts.shape(0)) {
        throw py::value_error("kmers and counts must be 1-D arrays of the same length");
    }
    if (k < 1 || k > 31) throw py::value_error("k must be between 1 and 31");
    std::string out;
    const std::size_t n = static_cast<std::size_t>(kmers.shape(0));
    const std::uint64_t* km = kmers.data();
    const std::uint64_t* ct = counts.data();
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
    m.def("format_kmer_tsv", &format_kmer_tsv_py, py::arg("kmers"), py::arg("counts"), py::arg("k"),
          "Format packed k-mers and counts as 'KMER\\tCOUNT\\n' lines (no header).");
}

}  // namespace genesae
