// What the fuzz targets share: a scratch folder for inputs that must be files, the oracle, and
// a writer of HDF5 files whose structure and values are drawn from the fuzz input.
//
// Oracle: bad input must end in cst::InputError (exit 2 in the tools). Any other exception
// escapes the target and libFuzzer reports it as a crash, as it reports sanitizer findings,
// timeouts, and (with -malloc_limit_mb) an allocation sized by the input.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/h5.h"

namespace cst::fuzz {

// <TMPDIR or /dev/shm>/cst-fuzz-<pid>/<name>: one folder per fuzzing process.
inline std::string scratch(const std::string& name) {
  static const std::filesystem::path dir = [] {
    const char* t = std::getenv("TMPDIR");
    std::filesystem::path base = t ? t : (std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
    std::filesystem::path d = base / ("cst-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return (dir / name).string();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(text.data(), static_cast<std::streamsize>(text.size()));
}

// Runs f; InputError is the one expected way for it to fail.
template <class F>
void input_errors_only(F&& f) {
  try {
    f();
  } catch (const InputError&) {
  }
}

// Writes one HDF5 file: each value a caller asks for is written as asked, or (when the input
// says so, about one time in 16) damaged: another value or type, missing, an array instead of
// a scalar, another shape, or a dataset declaring far more elements than it stores.
class H5Gen {
 public:
  H5Gen(FuzzedDataProvider& in, const std::string& path) : in_(in), file_(path, h5::File::Mode::kCreate) {}
  h5::File& file() { return file_; }

  bool damage() { return in_.ConsumeIntegralInRange<int>(0, 15) == 15; }  // never on an exhausted input

  int64_t some_int() {
    static const int64_t kEdges[] = {
        0, -1, 1, 2, 255, 65536, int64_t{1} << 31, int64_t{1} << 40, 1000000000000, INT64_MAX, INT64_MIN};
    return in_.ConsumeBool() ? kEdges[in_.ConsumeIntegralInRange<size_t>(0, std::size(kEdges) - 1)]
                             : in_.ConsumeIntegral<int64_t>();
  }

  void attr_int(const std::string& key, int64_t v) {
    if (!damage()) return file_.set_attr(key, v);
    switch (in_.ConsumeIntegralInRange<int>(0, 4)) {
      case 0: return file_.set_attr(key, some_int());
      case 1: return file_.set_attr(key, in_.ConsumeFloatingPoint<double>());
      case 2: return file_.set_attr(key, in_.ConsumeRandomLengthString(24));
      case 3: return attr_array(key);
      default: return;  // missing
    }
  }

  void attr_string(const std::string& key, const std::string& v) {
    if (!damage()) return file_.set_attr(key, v);
    switch (in_.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: return file_.set_attr(key, in_.ConsumeRandomLengthString(64));
      case 1: return file_.set_attr(key, some_int());
      case 2: return attr_array(key);
      default: return;
    }
  }

  // A dataset of `shape` whose element i is value(i), written as dtype t.
  void dataset(const std::string& name, h5::DType t, std::vector<int64_t> shape,
               const std::function<int64_t(int64_t)>& value) {
    if (damage()) {
      switch (in_.ConsumeIntegralInRange<int>(0, 4)) {
        case 0: return;  // missing
        case 1: t = static_cast<h5::DType>(in_.ConsumeIntegralInRange<int>(0, 7)); break;
        case 2:
          if (!shape.empty())
            shape[in_.ConsumeIntegralInRange<size_t>(0, shape.size() - 1)] = in_.ConsumeIntegralInRange<int64_t>(0, 70);
          break;
        case 3: shape.resize(in_.ConsumeIntegralInRange<size_t>(0, 3), 3); break;
        default: return unwritten(name, t, shape);
      }
    }
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    if (n > (1 << 16)) return unwritten(name, t, shape);
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<double>(value(i));
    if (n > 0 && damage()) v[in_.ConsumeIntegralInRange<size_t>(0, v.size() - 1)] = static_cast<double>(some_int());
    write_converted(name, t, shape, v);
  }

  // Arbitrary extra root attributes and datasets.
  void extras() {
    const int n = damage() ? in_.ConsumeIntegralInRange<int>(1, 3) : 0;
    for (int i = 0; i < n; ++i) {
      const std::string name = in_.ConsumeRandomLengthString(16);
      if (name.empty() || name.find('/') != std::string::npos || name == ".") continue;
      if (in_.ConsumeBool())
        input_errors_only([&] { file_.set_attr(name, some_int()); });
      else
        input_errors_only([&] {
          dataset(name, h5::DType::kInt32, {in_.ConsumeIntegralInRange<int64_t>(0, 8)}, [](int64_t i) { return i; });
        });
    }
  }

 private:
  void attr_array(const std::string& key) {
    hsize_t n = in_.ConsumeIntegralInRange<hsize_t>(0, 4);
    h5::Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    h5::Handle a(H5Acreate2(file_.id(), key.c_str(), H5T_NATIVE_INT64, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    const int64_t vals[4] = {1, 2, 3, 4};
    if (a.valid() && n > 0) H5Awrite(a.id(), H5T_NATIVE_INT64, vals);
  }

  // A chunked dataset declaring `shape` with its first dimension blown up, nothing written.
  void unwritten(const std::string& name, h5::DType t, std::vector<int64_t> shape) {
    if (shape.empty()) shape = {1};
    shape[0] = int64_t{1} << in_.ConsumeIntegralInRange<int>(10, 40);
    std::vector<hsize_t> dims(shape.begin(), shape.end()), chunk(shape.size(), 1);
    chunk[0] = 64;
    h5::Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_chunk(dcpl.id(), static_cast<int>(chunk.size()), chunk.data());
    if (in_.ConsumeBool()) H5Pset_deflate(dcpl.id(), 1);
    h5::Handle ds(
        H5Dcreate2(file_.id(), name.c_str(), h5::native_type(t), space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT),
        H5Dclose);
  }

  void write_converted(const std::string& name, h5::DType t, const std::vector<int64_t>& shape,
                       const std::vector<double>& v) {
    h5::Handle space(H5Screate_simple(static_cast<int>(shape.size()),
                                      std::vector<hsize_t>(shape.begin(), shape.end()).data(), nullptr),
                     H5Sclose);
    h5::Handle ds(
        H5Dcreate2(file_.id(), name.c_str(), h5::native_type(t), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        H5Dclose);
    // HDF5 converts double to the stored type (saturating out-of-range values).
    if (ds.valid() && !v.empty()) H5Dwrite(ds.id(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  }

  FuzzedDataProvider& in_;
  h5::File file_;
};

}  // namespace cst::fuzz
