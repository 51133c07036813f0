// Streaming motif scan: a genome of any size in bounded memory, hits in FIMO's order.
//
// Pass 1 (StreamScanner::add / finish): sequence pieces arrive in file order and are scanned in
// blocks of about `block_bases` bases on every thread. A record is cut between blocks with an
// overlap of (widest motif - 1) bases: a block scans the window starts whose windows end inside
// it and hands the rest to the next block, so a hit on a block edge is found exactly once.
// Each hit is stored compactly (one word for its genome position and integer score, then its
// matched bases packed 2 bits each) in per-entry lists; past `run_bytes` the lists are written
// to the spill file as one "run" (entry-major) and emptied. Every hit also counts in its
// entry's score histogram, and every window start in its run-length histogram, which is all the
// q-values need (p-values are a function of the integer score).
//
// Pass 2 (format_motifs / sort_run + format_sorted): the caller turns the histograms into p,
// q and score values; hits are read back run by run and written as FIMO's TSV or BED lines:
// motif by motif (records, then start, + before -) or in genome order (for indexed BED).
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "parallel.hpp"
#include "scan_kernel.hpp"

namespace py = pybind11;

namespace genesae {
namespace {

using namespace scan_detail;

constexpr int kScoreBits = 16;  // scores are <= 33000
constexpr std::uint64_t kScoreMask = (1u << kScoreBits) - 1;
constexpr std::size_t kEntriesPerItem = 32;  // entries per work item when hits are filed
const char kLetters[4] = {'A', 'C', 'G', 'T'};
const char kComplement[4] = {'T', 'G', 'C', 'A'};

// Hands memory freed by the worker threads back to the system. Short-lived workers allocate
// in glibc's per-thread arenas, whose free chunks otherwise stay resident: without this the
// peak RSS creeps up with the number of blocks and batches, i.e. with the genome.
void release_free_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

// Words per stored hit of width w: the header, then 2 bits per base.
inline std::size_t stride_of(int width) { return 1 + static_cast<std::size_t>((width + 31) / 32); }

struct Segment {       // pending bases of one record
    std::int32_t record;
    std::int64_t gpos0;  // genome position (all records laid end to end) of the first base
    std::size_t begin;   // offset in the pending buffer
    std::size_t len;
    bool closed;         // the record has ended: all its starts can be scanned
};

struct Run {                                 // hits of a stretch of the genome, entry-major
    bool on_disk = false;
    std::uint64_t file_off = 0;              // bytes
    std::vector<std::uint64_t> entry_off;    // [n_entries + 1], in words from the run's start
};

struct View {  // one entry's hits in one run
    const std::uint64_t* data = nullptr;
    std::size_t n = 0;  // hits (each stride_of(width) words)
};

void write_all(int fd, const void* data, std::size_t bytes, std::uint64_t offset) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
        const ssize_t k = ::pwrite(fd, p, bytes, static_cast<off_t>(offset));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) throw std::runtime_error(std::string("cannot write the scan's spill file: ") + std::strerror(errno));
        p += k;
        bytes -= static_cast<std::size_t>(k);
        offset += static_cast<std::uint64_t>(k);
    }
}

void read_all(int fd, void* data, std::size_t bytes, std::uint64_t offset) {
    char* p = static_cast<char*>(data);
    while (bytes > 0) {
        const ssize_t k = ::pread(fd, p, bytes, static_cast<off_t>(offset));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) throw std::runtime_error(std::string("cannot read the scan's spill file: ") + std::strerror(errno));
        p += k;
        bytes -= static_cast<std::size_t>(k);
        offset += static_cast<std::uint64_t>(k);
    }
}

void append_int(std::string& out, long long v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// printf's %g family, which is what Python's format(x, "g") / ".3g" produce as well.
std::string format_double(const char* fmt, double v) {
    char buf[64];
    const int k = std::snprintf(buf, sizeof buf, fmt, v);
    return std::string(buf, static_cast<std::size_t>(std::max(0, k)));
}

// Run lengths of A/C/G/T from each start in [begin, end) (capped at max_w) counted in hist:
// hist[r] = starts whose run is r long. A window of width w at s is valid when run(s) >= w.
void count_runs(const std::uint8_t* codes, std::size_t length, std::size_t begin, std::size_t end, int max_w,
                std::int64_t* hist) {
    const std::size_t lim = std::min(length, end + static_cast<std::size_t>(max_w));
    int run = 0;
    for (std::size_t i = lim; i-- > begin;) {
        run = codes[i] < 4 ? std::min(run + 1, max_w) : 0;
        if (i < end) ++hist[run];
    }
}

class StreamScanner {
   public:
    StreamScanner(py::array_t<std::int16_t, py::array::c_style | py::array::forcecast> cells,
                  py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> col_offsets,
                  py::array_t<std::int32_t, py::array::c_style | py::array::forcecast> thresholds, int strands,
                  int threads, int spill_fd, std::size_t block_bases, std::size_t run_bytes, long long fault_unit)
        : cells_(cells), off_(col_offsets), strands_(strands), threads_(effective_threads(threads)),
          spill_fd_(spill_fd), block_bases_(std::max<std::size_t>(block_bases, kTile)),
          run_words_(std::max<std::size_t>(run_bytes / 8, 1)), fault_unit_(fault_unit) {
        if (cells.ndim() != 2 || cells.shape(1) != 4) throw std::invalid_argument("cells must have shape (n_columns, 4)");
        if (col_offsets.ndim() != 1 || col_offsets.size() < 1)
            throw std::invalid_argument("col_offsets must be 1-D, non-empty");
        n_entries_ = static_cast<std::size_t>(col_offsets.size()) - 1;
        if (static_cast<std::size_t>(thresholds.size()) != n_entries_)
            throw std::invalid_argument("col_offsets must have one more entry than thresholds");
        if (strands != 1 && strands != 2) throw std::invalid_argument("strands must be 1 or 2");
        if (n_entries_ % strands != 0) throw std::invalid_argument("entries must be a multiple of strands");
        check_matrices(cells_.data(), static_cast<std::size_t>(cells.shape(0)), off_.data(), n_entries_);
        thr_.assign(thresholds.data(), thresholds.data() + n_entries_);
        max_w_ = max_width_of(off_.data(), n_entries_);
        blocks_ = make_blocks(cells_.data(), off_.data(), thr_.data(), n_entries_);
        hist_off_.assign(n_entries_ + 1, 0);
        best_.resize(n_entries_);
        for (std::size_t e = 0; e < n_entries_; ++e) {
            const std::int16_t* c = cells_.data() + 4 * off_.data()[e];
            std::int32_t best = 0;
            for (int j = 0; j < width(e); ++j) best += *std::max_element(c + 4 * j, c + 4 * j + 4);
            best_[e] = best;
            thr_[e] = std::max<std::int32_t>(thr_[e], 0);
            hist_off_[e + 1] = hist_off_[e] + static_cast<std::size_t>(std::max(0, best - thr_[e] + 1));
        }
        hist_.assign(hist_off_.back(), 0);
        runs_lists_.resize(n_entries_);
        run_hist_.assign(static_cast<std::size_t>(max_w_) + 1, 0);
    }

    int width(std::size_t e) const { return static_cast<int>(off_.data()[e + 1] - off_.data()[e]); }

    // Pass 1: the next bases of the current record, or (first) the start of a new record.
    void add(py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast> codes, bool first,
             const std::string& name) {
        if (finished_) throw std::logic_error("add() after finish()");
        if (codes.ndim() != 1) throw std::invalid_argument("codes must be a 1-D uint8 array");
        if (!first && names_.empty()) throw std::invalid_argument("the first piece must start a record");
        const std::uint8_t* p = codes.data();
        const std::size_t n = static_cast<std::size_t>(codes.shape(0));
        py::gil_scoped_release release;
        if (first) {
            if (!segs_.empty()) segs_.back().closed = true;
            names_.push_back(name);
            record_starts_.push_back(total_);
            segs_.push_back({static_cast<std::int32_t>(names_.size() - 1), total_, pending_.size(), 0, false});
        }
        pending_.insert(pending_.end(), p, p + n);
        segs_.back().len += n;
        total_ += static_cast<std::int64_t>(n);
        if (pending_.size() >= block_bases_) scan_pending();
    }

    // End of pass 1: scans what is pending and writes the last run.
    void finish() {
        if (finished_) return;
        py::gil_scoped_release release;
        if (!segs_.empty()) segs_.back().closed = true;
        scan_pending();
        if (!runs_.empty()) flush_run();  // earlier runs are on disk: so is the last
        finished_ = true;
    }

    // Non-zero histogram bins of the entries of motifs [m0, m1): (offsets [k + 1] from 0, integer
    // scores, counts), k = the number of those entries.
    py::tuple bins(std::size_t m0, std::size_t m1) const {
        check_motif_range(m0, m1);
        const std::size_t e0 = m0 * strands_, e1 = m1 * strands_;
        std::vector<std::int64_t> off(1, 0), count;
        std::vector<std::int32_t> score;
        for (std::size_t e = e0; e < e1; ++e) {
            for (std::size_t k = hist_off_[e]; k < hist_off_[e + 1]; ++k) {
                if (hist_[k] == 0) continue;
                score.push_back(thr_[e] + static_cast<std::int32_t>(k - hist_off_[e]));
                count.push_back(hist_[k]);
            }
            off.push_back(static_cast<std::int64_t>(score.size()));
        }
        return py::make_tuple(py::array_t<std::int64_t>(off.size(), off.data()),
                              py::array_t<std::int32_t>(score.size(), score.data()),
                              py::array_t<std::int64_t>(count.size(), count.data()));
    }

    // Hits of each motif.
    py::array_t<std::int64_t> motif_hits() const {
        py::array_t<std::int64_t> out(static_cast<py::ssize_t>(n_entries_ / strands_));
        auto* o = out.mutable_data();
        for (std::size_t m = 0; m < n_entries_ / strands_; ++m) {
            std::int64_t n = 0;
            for (std::size_t e = m * strands_; e < (m + 1) * strands_; ++e)
                for (std::size_t k = hist_off_[e]; k < hist_off_[e + 1]; ++k) n += hist_[k];
            o[m] = n;
        }
        return out;
    }

    // Hits of motifs [m0, m1) in each run.
    py::array_t<std::int64_t> run_hits(std::size_t m0, std::size_t m1) const {
        check_motif_range(m0, m1);
        const std::size_t nr = n_runs();
        py::array_t<std::int64_t> out(static_cast<py::ssize_t>(nr));
        auto* o = out.mutable_data();
        for (std::size_t r = 0; r < nr; ++r) {
            std::int64_t n = 0;
            for (std::size_t e = m0 * strands_; e < m1 * strands_; ++e) {
                const std::size_t words = runs_.empty() ? runs_lists_[e].size()
                                                        : runs_[r].entry_off[e + 1] - runs_[r].entry_off[e];
                n += static_cast<std::int64_t>(words / stride_of(width(e)));
            }
            o[r] = n;
        }
        return out;
    }

    // valid[w] = windows of width w (1..max width) made only of A, C, G, T.
    py::array_t<std::int64_t> valid_windows() const {
        py::array_t<std::int64_t> out(static_cast<py::ssize_t>(max_w_) + 1);
        auto* o = out.mutable_data();
        std::int64_t above = 0;
        for (int w = max_w_; w >= 0; --w) {
            above += run_hist_[w];
            o[w] = above;
        }
        return out;
    }

    std::size_t n_runs() const { return runs_.size() + (runs_.empty() && finished_ ? 1 : 0); }
    void check_motif_range(std::size_t m0, std::size_t m1) const {
        if (m0 > m1 || m1 > n_entries_ / strands_) throw std::invalid_argument("motif range out of bounds");
    }
    void set_names(const std::vector<std::string>& motif_ids, const std::vector<std::string>& alt_ids) {
        if (motif_ids.size() * strands_ != n_entries_ || alt_ids.size() != motif_ids.size())
            throw std::invalid_argument("one motif id and alt id per motif");
        motif_ids_ = motif_ids;
        alt_ids_ = alt_ids;
    }
    std::int64_t total_bases() const { return total_; }
    std::size_t n_records() const { return names_.size(); }
    std::vector<std::int64_t> record_lengths() const {
        std::vector<std::int64_t> out(names_.size());
        for (std::size_t r = 0; r < names_.size(); ++r)
            out[r] = (r + 1 < names_.size() ? record_starts_[r + 1] : total_) - record_starts_[r];
        return out;
    }

    // Pass 2 setup: the text of each (entry, score) of motifs [m0, m1) that occurs.
    void set_text(std::size_t m0, std::size_t m1,
                  py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> bin_off,
                  py::array_t<std::int32_t, py::array::c_style | py::array::forcecast> bin_score,
                  py::array_t<double, py::array::c_style | py::array::forcecast> score,
                  py::array_t<double, py::array::c_style | py::array::forcecast> pvalue,
                  py::array_t<double, py::array::c_style | py::array::forcecast> qvalue);

    py::bytes format_motifs(std::size_t m0, std::size_t m1, bool bed, std::size_t r0, std::size_t r1);
    std::size_t sort_run(std::size_t r);
    py::bytes format_sorted(std::size_t lo, std::size_t hi);
    py::tuple sorted_coords(std::size_t lo, std::size_t hi) const;
    std::vector<std::string> record_names() const { return names_; }

   private:
    void scan_pending();
    void file_hits(const std::vector<Segment>& segs, std::vector<std::vector<Hit>>& per_unit);
    void flush_run();
    std::vector<View> load_views(std::size_t r, std::size_t e0, std::size_t e1, std::vector<std::uint64_t>& buf) const;
    void format_hit(std::string& out, std::size_t e, const std::uint64_t* h, bool bed) const;
    std::size_t find_bin(std::size_t e, std::int32_t s) const;
    std::size_t motif_text(std::size_t m, const std::vector<std::vector<View>>& views, std::size_t e0, bool bed,
                           std::string& out) const;

    py::array_t<std::int16_t> cells_;
    py::array_t<std::int64_t> off_;
    std::vector<std::int32_t> thr_, best_;
    std::vector<Block> blocks_;
    std::size_t n_entries_ = 0;
    int strands_, threads_, spill_fd_, max_w_ = 1;
    std::size_t block_bases_, run_words_;
    long long fault_unit_;
    std::size_t units_done_ = 0;  // work units scanned so far (numbers the fault hook's units)
    bool finished_ = false;

    // pass 1 state
    std::vector<std::string> names_;
    std::vector<std::int64_t> record_starts_;
    std::int64_t total_ = 0;
    std::vector<std::uint8_t> pending_;
    std::vector<Segment> segs_;
    std::vector<std::vector<std::uint64_t>> runs_lists_;  // the run being filled, per entry
    std::size_t run_fill_ = 0;                            // words in it
    std::vector<Run> runs_;                               // runs on disk
    std::uint64_t spill_end_ = 0;
    std::vector<std::size_t> hist_off_;
    std::vector<std::int64_t> hist_;
    std::vector<std::int64_t> run_hist_;

    // pass 2 state
    std::vector<std::string> motif_ids_, alt_ids_;
    std::size_t text_e0_ = 0, text_e1_ = 0;  // entries set_text covers
    std::vector<std::int64_t> bin_off_;
    std::vector<std::int32_t> bin_score_;
    std::string num_text_;                 // per bin: score, then "p\tq"
    std::vector<std::size_t> num_at_;      // [2 * bins + 1]
    std::vector<std::uint64_t> sort_buf_;  // the run sort_run loaded
    struct Sorted {
        std::uint64_t gpos;
        std::uint32_t entry;
        const std::uint64_t* hit;
    };
    std::vector<Sorted> sorted_;
};

// Scans every complete window start of the pending segments, files the hits, keeps the tail.
void StreamScanner::scan_pending() {
    std::vector<Segment> segs = segs_;
    std::vector<Unit> units;
    std::vector<std::size_t> n_starts(segs.size());
    const std::size_t overlap = static_cast<std::size_t>(max_w_ - 1);
    for (std::size_t s = 0; s < segs.size(); ++s) {
        const Segment& g = segs[s];
        n_starts[s] = g.closed ? g.len : (g.len > overlap ? g.len - overlap : 0);
        for (std::size_t b = 0; b < n_starts[s]; b += kTile)
            units.push_back({static_cast<std::int32_t>(s), b, std::min(n_starts[s], b + kTile)});
    }
    std::vector<std::vector<Hit>> per_unit(units.size());
    std::vector<Scratch> scratch(threads_);
    std::vector<std::vector<std::int64_t>> runs_by_thread(threads_, std::vector<std::int64_t>(max_w_ + 1, 0));
    const Simd simd = active_simd();
    const std::size_t first_unit = units_done_;
    units_done_ += units.size();
    parallel_for(threads_, units.size(), [&](int tid, std::size_t i) {
        maybe_fault(first_unit + i, fault_unit_);
        const Unit& u = units[i];
        const Segment& g = segs[u.seq];
        const std::uint8_t* codes = pending_.data() + g.begin;
        scan_unit(u, codes, g.len, blocks_, max_w_, simd, scratch[tid], per_unit[i]);
        // hits of one entry together, each entry's in increasing position (stable)
        std::stable_sort(per_unit[i].begin(), per_unit[i].end(),
                         [](const Hit& a, const Hit& b) { return a.entry < b.entry; });
        count_runs(codes, g.len, u.begin, u.end, max_w_, runs_by_thread[tid].data());
    });
    for (const auto& h : runs_by_thread)
        for (int w = 0; w <= max_w_; ++w) run_hist_[w] += h[w];
    file_hits(segs, per_unit);
    // keep the open record's unscanned tail
    std::vector<std::uint8_t> rest;
    segs_.clear();
    if (!segs.empty() && !segs.back().closed) {
        const Segment& g = segs.back();
        const std::size_t k = n_starts.back();
        rest.assign(pending_.begin() + g.begin + k, pending_.begin() + g.begin + g.len);
        segs_.push_back({g.record, g.gpos0 + static_cast<std::int64_t>(k), 0, g.len - k, false});
    }
    pending_.swap(rest);
    if (run_fill_ >= run_words_) flush_run();
    per_unit.clear();
    release_free_memory();
}

// Appends the block's hits to the per-entry lists (in genome order) and the histograms.
void StreamScanner::file_hits(const std::vector<Segment>& segs, std::vector<std::vector<Hit>>& per_unit) {
    const std::size_t n_items = (n_entries_ + kEntriesPerItem - 1) / kEntriesPerItem;
    std::vector<std::size_t> added(n_items, 0);
    parallel_for(threads_, n_items, [&](int, std::size_t item) {
        const std::int32_t e0 = static_cast<std::int32_t>(item * kEntriesPerItem);
        const std::int32_t e1 = static_cast<std::int32_t>(std::min(n_entries_, (item + 1) * kEntriesPerItem));
        for (auto& hits : per_unit) {
            auto it = std::lower_bound(hits.begin(), hits.end(), e0,
                                       [](const Hit& h, std::int32_t e) { return h.entry < e; });
            for (; it != hits.end() && it->entry < e1; ++it) {
                const std::size_t e = static_cast<std::size_t>(it->entry);
                const Segment& g = segs[it->seq];
                const std::uint8_t* word = pending_.data() + g.begin + it->pos;
                const int w = width(e);
                std::vector<std::uint64_t>& list = runs_lists_[e];
                const std::uint64_t gpos = static_cast<std::uint64_t>(g.gpos0 + it->pos);
                list.push_back(gpos << kScoreBits | static_cast<std::uint64_t>(it->score));
                for (int j0 = 0; j0 < w; j0 += 32) {
                    std::uint64_t packed = 0;
                    for (int j = j0; j < std::min(w, j0 + 32); ++j)
                        packed |= static_cast<std::uint64_t>(word[j]) << (2 * (j - j0));
                    list.push_back(packed);
                }
                ++hist_[hist_off_[e] + static_cast<std::size_t>(it->score - thr_[e])];
                added[item] += stride_of(w);
            }
        }
    });
    for (std::size_t a : added) run_fill_ += a;
}

// Writes the run being filled to the spill file, entry after entry, and empties it.
void StreamScanner::flush_run() {
    if (spill_fd_ < 0) throw std::runtime_error("the scan needs a spill file (no file descriptor given)");
    Run run;
    run.on_disk = true;
    run.file_off = spill_end_;
    run.entry_off.assign(n_entries_ + 1, 0);
    for (std::size_t e = 0; e < n_entries_; ++e) {
        const auto& list = runs_lists_[e];
        write_all(spill_fd_, list.data(), list.size() * 8, spill_end_ + run.entry_off[e] * 8);
        run.entry_off[e + 1] = run.entry_off[e] + list.size();
    }
    spill_end_ += run.entry_off.back() * 8;
    // free, not just clear: each list's capacity would otherwise stay at its largest run
    for (auto& list : runs_lists_) std::vector<std::uint64_t>().swap(list);
    run_fill_ = 0;
    runs_.push_back(std::move(run));
}

// Views of entries [e0, e1) in run r (loaded into buf when the run is on disk).
std::vector<View> StreamScanner::load_views(std::size_t r, std::size_t e0, std::size_t e1,
                                            std::vector<std::uint64_t>& buf) const {
    std::vector<View> out(e1 - e0);
    if (runs_.empty()) {  // the only run never left memory
        for (std::size_t e = e0; e < e1; ++e)
            out[e - e0] = {runs_lists_[e].data(), runs_lists_[e].size() / stride_of(width(e))};
        return out;
    }
    const Run& run = runs_[r];
    const std::size_t a = run.entry_off[e0], b = run.entry_off[e1];
    buf.resize(b - a);
    if (b > a) read_all(spill_fd_, buf.data(), (b - a) * 8, run.file_off + a * 8);
    for (std::size_t e = e0; e < e1; ++e)
        out[e - e0] = {buf.data() + (run.entry_off[e] - a),
                       (run.entry_off[e + 1] - run.entry_off[e]) / stride_of(width(e))};
    return out;
}

void StreamScanner::set_text(std::size_t m0, std::size_t m1,
                             py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> bin_off,
                             py::array_t<std::int32_t, py::array::c_style | py::array::forcecast> bin_score,
                             py::array_t<double, py::array::c_style | py::array::forcecast> score,
                             py::array_t<double, py::array::c_style | py::array::forcecast> pvalue,
                             py::array_t<double, py::array::c_style | py::array::forcecast> qvalue) {
    check_motif_range(m0, m1);
    if (motif_ids_.empty() && m1 > m0) throw std::logic_error("set_names() first");
    const std::size_t ne = (m1 - m0) * strands_;
    const std::size_t nb = static_cast<std::size_t>(bin_score.size());
    if (static_cast<std::size_t>(bin_off.size()) != ne + 1 || static_cast<std::size_t>(score.size()) != nb ||
        static_cast<std::size_t>(pvalue.size()) != nb || static_cast<std::size_t>(qvalue.size()) != nb ||
        bin_off.data()[ne] != static_cast<std::int64_t>(nb))
        throw std::invalid_argument("bin arrays disagree in size");
    text_e0_ = m0 * strands_;
    text_e1_ = m1 * strands_;
    bin_off_.assign(bin_off.data(), bin_off.data() + ne + 1);
    bin_score_.assign(bin_score.data(), bin_score.data() + nb);
    // format in parallel slices, then lay the slices end to end
    const std::size_t slice = 4096, n_slices = (nb + slice - 1) / slice;
    std::vector<std::string> texts(n_slices);
    std::vector<std::vector<std::size_t>> ats(n_slices);
    const double *sc = score.data(), *pv = pvalue.data(), *qv = qvalue.data();
    {
        py::gil_scoped_release release;
        parallel_for(threads_, n_slices, [&](int, std::size_t k) {
            std::string& t = texts[k];
            for (std::size_t b = k * slice; b < std::min(nb, (k + 1) * slice); ++b) {
                t += format_double("%g", sc[b]);
                ats[k].push_back(t.size());
                t += format_double("%.3g", pv[b]);
                t += '\t';
                t += format_double("%.3g", qv[b]);
                ats[k].push_back(t.size());
            }
        });
    }
    num_text_.clear();
    num_at_.assign(1, 0);
    for (std::size_t k = 0; k < n_slices; ++k) {
        for (std::size_t a : ats[k]) num_at_.push_back(num_text_.size() + a);
        num_text_ += texts[k];
    }
}

std::size_t StreamScanner::find_bin(std::size_t e, std::int32_t s) const {
    if (e < text_e0_ || e >= text_e1_) throw std::logic_error("a hit's motif has no text (set_text range)");
    const auto first = bin_score_.begin() + bin_off_[e - text_e0_], last = bin_score_.begin() + bin_off_[e - text_e0_ + 1];
    const auto it = std::lower_bound(first, last, s);
    if (it == last || *it != s) throw std::logic_error("a hit's score has no text (set_text incomplete)");
    return static_cast<std::size_t>(it - bin_score_.begin());
}

// One line: FIMO's TSV columns, or BED6+3 (chrom start end id score strand p q alt).
void StreamScanner::format_hit(std::string& out, std::size_t e, const std::uint64_t* h, bool bed) const {
    const std::int64_t gpos = static_cast<std::int64_t>(h[0] >> kScoreBits);
    const std::int32_t s = static_cast<std::int32_t>(h[0] & kScoreMask);
    const std::size_t rec =
        static_cast<std::size_t>(std::upper_bound(record_starts_.begin(), record_starts_.end(), gpos) -
                                 record_starts_.begin() - 1);
    const std::int64_t start = gpos - record_starts_[rec];
    const int w = width(e);
    const std::size_t m = e / strands_;
    const bool minus = e % strands_ == 1;
    const std::size_t b = find_bin(e, s);
    const char* num = num_text_.data();
    const char strand = minus ? '-' : '+';
    if (bed) {
        out += names_[rec];
        out += '\t';
        append_int(out, start);
        out += '\t';
        append_int(out, start + w);
        out += '\t';
        out += motif_ids_[m];
        out += '\t';
        out.append(num + num_at_[2 * b], num + num_at_[2 * b + 1]);
        out += '\t';
        out += strand;
        out += '\t';
        out.append(num + num_at_[2 * b + 1], num + num_at_[2 * b + 2]);
        out += '\t';
        out += alt_ids_[m];
        out += '\n';
        return;
    }
    out += motif_ids_[m];
    out += '\t';
    out += alt_ids_[m];
    out += '\t';
    out += names_[rec];
    out += '\t';
    append_int(out, start + 1);
    out += '\t';
    append_int(out, start + w);
    out += '\t';
    out += strand;
    out += '\t';
    out.append(num + num_at_[2 * b], num + num_at_[2 * b + 1]);
    out += '\t';
    out.append(num + num_at_[2 * b + 1], num + num_at_[2 * b + 2]);
    out += '\t';
    const std::size_t at = out.size();
    out.resize(at + static_cast<std::size_t>(w));
    char* word = &out[at];
    for (int j = 0; j < w; ++j) {
        const unsigned base = static_cast<unsigned>(h[1 + j / 32] >> (2 * (j % 32))) & 3u;
        if (minus) word[w - 1 - j] = kComplement[base];
        else word[j] = kLetters[base];
    }
    out += '\n';
}

// Lines of motif m over every run, merged: by genome position, + before - (FIMO's order).
std::size_t StreamScanner::motif_text(std::size_t m, const std::vector<std::vector<View>>& views, std::size_t e0,
                                      bool bed, std::string& out) const {
    std::size_t n = 0;
    const std::size_t ep = m * strands_;
    const std::size_t sp = stride_of(width(ep));
    for (const auto& run : views) {
        const View plus = run[ep - e0];
        const View minus = strands_ == 2 ? run[ep + 1 - e0] : View{};
        std::size_t i = 0, j = 0;
        while (i < plus.n || j < minus.n) {
            const bool take_plus =
                j >= minus.n || (i < plus.n && (plus.data[i * sp] >> kScoreBits) <= (minus.data[j * sp] >> kScoreBits));
            if (take_plus) format_hit(out, ep, plus.data + sp * i++, bed);
            else format_hit(out, ep + 1, minus.data + sp * j++, bed);
            ++n;
        }
    }
    return n;
}

// Lines of motifs [m0, m1) from runs [r0, r1), motif by motif: a motif whose hits span many
// runs can be written in several calls (one per run range) in bounded memory.
py::bytes StreamScanner::format_motifs(std::size_t m0, std::size_t m1, bool bed, std::size_t r0, std::size_t r1) {
    if (!finished_) throw std::logic_error("format_motifs() before finish()");
    check_motif_range(m0, m1);
    r1 = std::min(r1, n_runs());
    if (r0 > r1) throw std::invalid_argument("run range out of bounds");
    std::vector<std::string> parts(m1 - m0);
    {
        py::gil_scoped_release release;
        const std::size_t e0 = m0 * strands_, e1 = m1 * strands_;
        std::vector<std::vector<std::uint64_t>> bufs(r1 - r0);
        std::vector<std::vector<View>> views(r1 - r0);
        for (std::size_t r = r0; r < r1; ++r) views[r - r0] = load_views(r, e0, e1, bufs[r - r0]);
        // Largest motifs first, so that no thread is left formatting one big motif alone at
        // the end of the batch; each motif's text still lands in its own slot, in order.
        std::vector<std::pair<std::size_t, std::size_t>> work(m1 - m0);  // (hits, motif offset)
        for (std::size_t k = 0; k < m1 - m0; ++k) {
            std::size_t n = 0;
            for (const auto& run : views)
                for (std::size_t e = (m0 + k) * strands_; e < (m0 + k + 1) * strands_; ++e) n += run[e - e0].n;
            work[k] = {n, k};
        }
        std::stable_sort(work.begin(), work.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
        parallel_for(threads_, m1 - m0, [&](int, std::size_t i) {
            const std::size_t k = work[i].second;
            motif_text(m0 + k, views, e0, bed, parts[k]);
        });
    }
    std::size_t total = 0;
    for (const auto& p : parts) total += p.size();
    PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total));
    if (out == nullptr) throw py::error_already_set();
    char* dst = PyBytes_AS_STRING(out);
    for (auto& p : parts) {
        std::memcpy(dst, p.data(), p.size());
        dst += p.size();
        std::string().swap(p);
    }
    release_free_memory();
    return py::reinterpret_steal<py::bytes>(out);
}

// Loads run r and orders its hits by genome position, then motif, + before -. Returns the count.
std::size_t StreamScanner::sort_run(std::size_t r) {
    if (!finished_) throw std::logic_error("sort_run() before finish()");
    if (r >= n_runs()) throw std::invalid_argument("run index out of range");
    py::gil_scoped_release release;
    const std::vector<View> views = load_views(r, 0, n_entries_, sort_buf_);
    sorted_.clear();
    for (std::size_t e = 0; e < n_entries_; ++e) {
        const std::size_t st = stride_of(width(e));
        for (std::size_t i = 0; i < views[e].n; ++i) {
            const std::uint64_t* h = views[e].data + st * i;
            sorted_.push_back({h[0] >> kScoreBits, static_cast<std::uint32_t>(e), h});
        }
    }
    std::sort(sorted_.begin(), sorted_.end(), [](const Sorted& a, const Sorted& b) {
        return a.gpos != b.gpos ? a.gpos < b.gpos : a.entry < b.entry;
    });
    return sorted_.size();
}

py::bytes StreamScanner::format_sorted(std::size_t lo, std::size_t hi) {
    if (lo > hi || hi > sorted_.size()) throw std::invalid_argument("range out of bounds");
    std::string text;
    {
        py::gil_scoped_release release;
        for (std::size_t i = lo; i < hi; ++i) format_hit(text, sorted_[i].entry, sorted_[i].hit, true);
    }
    return py::bytes(text);
}

py::tuple StreamScanner::sorted_coords(std::size_t lo, std::size_t hi) const {
    if (lo > hi || hi > sorted_.size()) throw std::invalid_argument("range out of bounds");
    const py::ssize_t n = static_cast<py::ssize_t>(hi - lo);
    py::array_t<std::int32_t> rec(n);
    py::array_t<std::int64_t> start(n), end(n);
    auto* pr = rec.mutable_data();
    auto* ps = start.mutable_data();
    auto* pe = end.mutable_data();
    for (std::size_t i = lo; i < hi; ++i) {
        const std::int64_t gpos = static_cast<std::int64_t>(sorted_[i].gpos);
        const std::size_t r = static_cast<std::size_t>(
            std::upper_bound(record_starts_.begin(), record_starts_.end(), gpos) - record_starts_.begin() - 1);
        pr[i - lo] = static_cast<std::int32_t>(r);
        ps[i - lo] = gpos - record_starts_[r];
        pe[i - lo] = ps[i - lo] + width(sorted_[i].entry);
    }
    return py::make_tuple(rec, start, end);
}

}  // namespace

void bind_scan_stream(py::module_& m) {
    py::class_<StreamScanner>(m, "StreamScanner",
                              "Streaming exact PWM scan (see csrc/scan_stream.cpp): add() sequence pieces, finish(), "
                              "read bins() and valid_windows(), set_names() and set_text(), then format_motifs() or "
                              "sort_run() + format_sorted().")
        .def(py::init<py::array_t<std::int16_t, py::array::c_style | py::array::forcecast>,
                      py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>,
                      py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>, int, int, int,
                      std::size_t, std::size_t, long long>(),
             py::arg("cells"), py::arg("col_offsets"), py::arg("thresholds"), py::arg("strands"), py::arg("threads"),
             py::arg("spill_fd"), py::arg("block_bases") = 1 << 20, py::arg("run_bytes") = 8 << 20,
             py::arg("_fault_unit") = -1,
             "cells/col_offsets/thresholds as for scan_pssms; entry e = strands * motif + strand (0 = +). "
             "spill_fd: a read-write file descriptor for runs past run_bytes (-1: keep all in memory).")
        .def("add", &StreamScanner::add, py::arg("codes"), py::arg("first"), py::arg("name") = std::string(),
             "Feed the next bases of the current record; first=True starts a new record called name.")
        .def("finish", &StreamScanner::finish)
        .def("bins", &StreamScanner::bins, py::arg("first"), py::arg("last"),
             "Score histograms of the entries of motifs [first, last), non-zero bins only: (offsets int64 "
             "[k+1], scores int32, counts int64); entry first*strands + i owns bins offsets[i]:offsets[i+1].")
        .def("motif_hits", &StreamScanner::motif_hits, "int64 [n_motifs]: hits of each motif.")
        .def("run_hits", &StreamScanner::run_hits, py::arg("first"), py::arg("last"),
             "int64 [n_runs]: hits of motifs [first, last) in each run.")
        .def("set_names", &StreamScanner::set_names, py::arg("motif_ids"), py::arg("alt_ids"),
             "Per motif its id and alt id (UTF-8), as written in the output.")
        .def("valid_windows", &StreamScanner::valid_windows,
             "int64 [max_width + 1]: windows of each width made only of A, C, G, T.")
        .def_property_readonly("n_runs", &StreamScanner::n_runs)
        .def_property_readonly("total_bases", &StreamScanner::total_bases)
        .def_property_readonly("n_records", &StreamScanner::n_records)
        .def("record_lengths", &StreamScanner::record_lengths)
        .def("set_text", &StreamScanner::set_text, py::arg("first"), py::arg("last"), py::arg("bin_offsets"),
             py::arg("bin_scores"), py::arg("score"), py::arg("pvalue"), py::arg("qvalue"),
             "For motifs [first, last): per entry i (from first*strands) the sorted integer scores "
             "bin_scores[bin_offsets[i]:bin_offsets[i+1]] that occur, with their reported score, p and q. "
             "Replaces the previous set_text.")
        .def("format_motifs", &StreamScanner::format_motifs, py::arg("first"), py::arg("last"), py::arg("bed") = false,
             py::arg("run_first") = 0, py::arg("run_last") = std::numeric_limits<std::size_t>::max(),
             "Text of the hits of motifs [first, last) in runs [run_first, run_last): FIMO's TSV lines "
             "(or BED), motif by motif.")
        .def("sort_run", &StreamScanner::sort_run, py::arg("run"),
             "Load run r (a stretch of the genome) in genome order for format_sorted; returns its hit count.")
        .def("format_sorted", &StreamScanner::format_sorted, py::arg("lo"), py::arg("hi"),
             "BED lines of hits [lo, hi) of the run sort_run loaded.")
        .def("sorted_coords", &StreamScanner::sorted_coords, py::arg("lo"), py::arg("hi"),
             "(record int32, start int64, end int64) of the lines format_sorted(lo, hi) writes.")
        .def("record_names", &StreamScanner::record_names, "Names of the records read so far, in file order.");
}

}  // namespace genesae
