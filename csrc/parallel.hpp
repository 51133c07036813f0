// One thread pool primitive for every native module (kmers.cpp, scan.cpp, ...).
//
// Why a shared header: a worker thread that throws (std::bad_alloc, an invariant check)
// would otherwise call std::terminate and kill the Python process. parallel_for catches
// the first exception of any worker, lets the others stop taking work, joins every thread,
// and rethrows it on the calling thread, where pybind11 turns it into a Python exception.
// Thread counts are capped at the machine's cores (asking for 100000 threads must not
// abort the process on thread creation).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace genesae {

// The number of threads actually used for `requested` (<= 0 means all cores):
// at least 1, at most the machine's hardware threads.
inline int effective_threads(int requested) {
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    if (cores <= 0) cores = 1;
    if (requested <= 0) return cores;
    return std::min(requested, cores);
}

// Calls fn(thread_id, item) for every item in [0, n_items), items handed out dynamically
// to min(effective_threads(threads), n_items) threads. thread_id is in [0, threads) so
// callers can keep per-thread scratch. The first exception thrown by any call is rethrown
// here after all threads have joined; remaining items are skipped once one has failed.
template <class Fn>
void parallel_for(int threads, std::size_t n_items, Fn&& fn) {
    int n_threads = effective_threads(threads);
    if (static_cast<std::size_t>(n_threads) > n_items) n_threads = static_cast<int>(std::max<std::size_t>(n_items, 1));
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&](int tid) {
        try {
            for (std::size_t i = next++; i < n_items && !failed.load(std::memory_order_relaxed); i = next++) fn(tid, i);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
            failed.store(true);
        }
    };
    if (n_threads <= 1) {
        worker(0);
    } else {
        std::vector<std::thread> pool;
        pool.reserve(n_threads);
        try {
            for (int t = 0; t < n_threads; ++t) pool.emplace_back(worker, t);
        } catch (const std::system_error&) {
            // thread creation failed (resource limits): finish with the threads we have
        }
        if (pool.empty()) worker(0);
        for (auto& th : pool) th.join();
    }
    if (error) std::rethrow_exception(error);
}

}  // namespace genesae
