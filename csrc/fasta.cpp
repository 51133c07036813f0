// FASTA decoding: bytes of a (decompressed) FASTA file -> records of base codes + soft-mask.
//
// One pass over the buffer with a 256-entry class table. Line endings may be LF, CRLF or
// CR alone; a CRLF pair counts as one line so error messages give the line an editor shows.
// The scan runs without the GIL; arrays are handed to numpy without a copy.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "native.hpp"

namespace py = pybind11;

namespace genesae {
namespace {

enum CharClass : unsigned char {
    kInvalid = 0,
    kUpper = 1,  // an IUPAC letter in upper case
    kLower = 2,  // an IUPAC letter in lower case (soft-masked)
    kSkip = 3,   // blanks inside a sequence line
    kGap = 4,    // '-' alignment gap: kept as an unknown base
};

struct Tables {
    unsigned char cls[256];
    unsigned char code[256];
    Tables() {
        for (int i = 0; i < 256; ++i) {
            cls[i] = kInvalid;
            code[i] = kCodeN;
        }
        const char* iupac = "ACGTURYSWKMBDHVN";
        for (const char* p = iupac; *p; ++p) {
            unsigned char up = static_cast<unsigned char>(*p);
            unsigned char lo = static_cast<unsigned char>(*p - 'A' + 'a');
            cls[up] = kUpper;
            cls[lo] = kLower;
        }
        const char* acgt = "ACGT";
        for (int i = 0; i < 4; ++i) {
            code[static_cast<unsigned char>(acgt[i])] = static_cast<unsigned char>(i);
            code[static_cast<unsigned char>(acgt[i] - 'A' + 'a')] = static_cast<unsigned char>(i);
        }
        cls[static_cast<unsigned char>(' ')] = kSkip;
        cls[static_cast<unsigned char>('\t')] = kSkip;
        cls[static_cast<unsigned char>('\v')] = kSkip;
        cls[static_cast<unsigned char>('\f')] = kSkip;
        cls[static_cast<unsigned char>('-')] = kGap;
    }
};

const Tables& tables() {
    static const Tables t;
    return t;
}

struct Record {
    std::string header;
    std::vector<std::uint8_t> codes;
    std::vector<std::uint8_t> mask;
};

struct ParseResult {
    std::vector<Record> records;
    std::size_t error_line = 0;  // 0 when parsing succeeded
    std::string error;
};

std::string describe_char(unsigned char c) {
    if (c >= 33 && c < 127) return std::string("'") + static_cast<char>(c) + "'";
    char buf[16];
    std::snprintf(buf, sizeof buf, "byte 0x%02x", c);
    return buf;
}

// Advances past one line ending at data[i] (LF, CRLF or CR). Returns the next index.
inline std::size_t skip_eol(const unsigned char* data, std::size_t n, std::size_t i) {
    if (data[i] == '\r' && i + 1 < n && data[i + 1] == '\n') return i + 2;
    return i + 1;
}

ParseResult parse(const unsigned char* data, std::size_t n) {
    const Tables& t = tables();
    ParseResult out;
    std::size_t i = 0;
    std::size_t line = 1;
    Record* current = nullptr;
    auto fail = [&](std::size_t at_line, std::string msg) {
        out.error_line = at_line;
        out.error = std::move(msg);
        return out;
    };
    while (i < n) {
        unsigned char c = data[i];
        if (c == '\n' || c == '\r') {  // empty line
            i = skip_eol(data, n, i);
            ++line;
            continue;
        }
        if (c == '>') {
            std::size_t start = i + 1;
            std::size_t j = start;
            while (j < n && data[j] != '\n' && data[j] != '\r') {
                if (data[j] == 0) return fail(line, "not a FASTA file (binary data in a header line)");
                ++j;
            }
            out.records.emplace_back();
            current = &out.records.back();
            current->header.assign(reinterpret_cast<const char*>(data + start), j - start);
            i = (j < n) ? skip_eol(data, n, j) : j;
            ++line;
            continue;
        }
        if (c == ';' ) {  // old-style comment line
            while (i < n && data[i] != '\n' && data[i] != '\r') ++i;
            if (i < n) i = skip_eol(data, n, i);
            ++line;
            continue;
        }
        // A sequence line.
        if (current == nullptr) {
            bool any_header = false;
            for (std::size_t j = i; j < n; ++j) {
                if (data[j] == '>' && (j == 0 || data[j - 1] == '\n' || data[j - 1] == '\r')) {
                    any_header = true;
                    break;
                }
            }
            if (!any_header) return fail(line, "not a FASTA file (no line starts with '>')");
            return fail(line, "sequence data before the first '>' header");
        }
        std::vector<std::uint8_t>& codes = current->codes;
        std::vector<std::uint8_t>& mask = current->mask;
        while (i < n) {
            c = data[i];
            if (c == '\n' || c == '\r') break;
            unsigned char k = t.cls[c];
            if (k == kUpper || k == kLower) {
                codes.push_back(t.code[c]);
                mask.push_back(k == kLower);
            } else if (k == kGap) {
                codes.push_back(kCodeN);
                mask.push_back(0);
            } else if (k != kSkip) {
                if (c == 0) return fail(line, "not a FASTA file (binary data)");
                return fail(line, "invalid character " + describe_char(c) +
                                      " in a sequence line (expected IUPAC nucleotide codes)");
            }
            ++i;
        }
        if (i < n) i = skip_eol(data, n, i);
        ++line;
    }
    if (out.records.empty()) return fail(line, "not a FASTA file (no '>' record found)");
    return out;
}

// Hands a std::vector's storage to numpy without copying.
py::array to_numpy(std::vector<std::uint8_t>&& v, bool as_bool) {
    auto* holder = new std::vector<std::uint8_t>(std::move(v));
    py::capsule owner(holder, [](void* p) { delete static_cast<std::vector<std::uint8_t>*>(p); });
    py::dtype dt = as_bool ? py::dtype("bool") : py::dtype::of<std::uint8_t>();
    return py::array(dt, {holder->size()}, {1}, holder->data(), owner);
}

// The bytes of a buffer that is safe to read as one run of bytes: single-byte items laid
// out C-contiguously. Anything else (a strided or reversed view, int32 or float items) is
// refused rather than read out of bounds or reinterpreted; callers copy such data first.
struct ByteView {
    const unsigned char* data;
    std::size_t size;
};

ByteView contiguous_bytes(const py::buffer_info& info, const char* what) {
    if (info.itemsize != 1) {
        throw py::value_error(std::string(what) + " must be a buffer of single bytes, got items of " +
                              std::to_string(info.itemsize) + " bytes (format '" + info.format + "')");
    }
    py::ssize_t expected = 1;
    for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
        if (info.shape[d] > 1 && info.strides[d] != expected) {
            throw py::value_error(std::string(what) + " must be a C-contiguous byte buffer (copy strided views first)");
        }
        expected *= info.shape[d];
    }
    return {static_cast<const unsigned char*>(info.ptr), static_cast<std::size_t>(info.size)};
}

py::list parse_fasta_py(py::buffer buffer) {
    py::buffer_info info = buffer.request();
    const ByteView bytes = contiguous_bytes(info, "FASTA data");
    const auto* data = bytes.data;
    std::size_t n = bytes.size;
    ParseResult result;
    {
        py::gil_scoped_release release;
        result = parse(data, n);
    }
    if (result.error_line != 0) {
        throw py::value_error("line " + std::to_string(result.error_line) + ": " + result.error);
    }
    py::list out;
    for (Record& r : result.records) {
        py::str header = py::reinterpret_steal<py::str>(
            PyUnicode_DecodeUTF8(r.header.data(), static_cast<Py_ssize_t>(r.header.size()), "replace"));
        out.append(py::make_tuple(header, to_numpy(std::move(r.codes), false), to_numpy(std::move(r.mask), true)));
    }
    return out;
}

py::array encode_bases_py(py::buffer buffer) {
    py::buffer_info info = buffer.request();
    const ByteView bytes = contiguous_bytes(info, "sequence");
    const auto* data = bytes.data;
    const std::size_t n = bytes.size;
    std::vector<std::uint8_t> codes(n);
    {
        py::gil_scoped_release release;
        const Tables& t = tables();
        for (std::size_t i = 0; i < n; ++i) codes[i] = t.code[data[i]];
    }
    return to_numpy(std::move(codes), false);
}

}  // namespace

void bind_fasta(py::module_& m) {
    m.def("parse_fasta", &parse_fasta_py, py::arg("buffer"),
          "Decode a FASTA byte buffer into a list of (header, codes uint8[n], softmask bool[n]).\n"
          "Raises ValueError('line N: problem') on input that is not valid FASTA, and on a buffer\n"
          "that is not C-contiguous single bytes.");
    m.def("encode_bases", &encode_bases_py, py::arg("buffer"),
          "Map ASCII bases to codes (A=0, C=1, G=2, T=3, anything else 4), any case.\n"
          "The buffer must hold single bytes, C-contiguous (else ValueError).");
}

}  // namespace genesae
