// Thin RAII layer over the HDF5 C API, shared by model weights, data shards and checkpoints.
//
// Ownership: every class owns exactly one hid_t and closes it in its destructor; objects are
// move-only. A Dataset or Attribute may outlive its File object (HDF5 keeps the file open
// until the last handle is closed).
// Errors: every failing call throws cst::InputError naming the file, the object and the HDF5
// error stack (open/read of user files is user input). Not thread-safe unless libhdf5 is built
// thread-safe (Debian's is not): use one thread per file at a time.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cst::h5 {

// The innermost message of the current HDF5 error stack ("" if none). Clears the stack.
std::string last_error();

// An owned hid_t with its close function. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Element types we store. Each maps to one native HDF5 type.
enum class DType { kInt8, kUInt8, kInt16, kUInt16, kInt32, kInt64, kFloat32, kFloat64 };
const char* dtype_name(DType t);
hid_t native_type(DType t);
template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<int8_t>() {
  return DType::kInt8;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::kUInt8;
}
template <>
constexpr DType dtype_of<int16_t>() {
  return DType::kInt16;
}
template <>
constexpr DType dtype_of<uint16_t>() {
  return DType::kUInt16;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kInt32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kInt64;
}
template <>
constexpr DType dtype_of<float>() {
  return DType::kFloat32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::kFloat64;
}

std::string shape_str(const std::vector<int64_t>& dims);  // "[2, 3]"

// An open dataset. read/read_slab convert from the stored type to the requested one (HDF5
// converts integers and floats; an out-of-range integer conversion is an error).
class Dataset {
 public:
  Dataset(Handle h, std::string file, std::string name);
  const std::string& name() const { return name_; }
  const std::string& file() const { return file_; }
  std::vector<int64_t> shape() const { return shape_; }
  int64_t numel() const;  // < 2^62: larger shapes are refused when the dataset is opened
  DType dtype() const;    // stored type; throws InputError for types we do not store
  bool is_integer() const;
  // Throws InputError unless the file stores the elements the shape declares: an unfiltered
  // dataset must hold numel * element size bytes, a filtered (compressed) one at least
  // 1/kMaxCompression of that. Call it before sizing an allocation or a loop by shape(): HDF5
  // reads never-written chunks as fill values, so a tiny damaged file could otherwise declare
  // terabytes.
  void check_stored() const;
  static constexpr int64_t kMaxCompression = 1100;  // deflate's ratio is at most 1032:1

  // Reads the whole dataset into out (numel() elements).
  template <class T>
  void read(T* out) const {
    read_raw(dtype_of<T>(), out);
  }
  template <class T>
  std::vector<T> read() const {
    std::vector<T> v(static_cast<size_t>(numel()));
    read(v.data());
    return v;
  }
  // Reads the hyperslab [start, start+count) (one entry per dimension) into out.
  template <class T>
  void read_slab(const std::vector<int64_t>& start, const std::vector<int64_t>& count, T* out) const {
    read_slab_raw(dtype_of<T>(), start, count, out);
  }
  void read_raw(DType as, void* out) const;
  void read_slab_raw(DType as, const std::vector<int64_t>& start, const std::vector<int64_t>& count, void* out) const;

 private:
  Handle h_;
  std::string file_, name_;
  std::vector<int64_t> shape_;
};

// Options for a new dataset. chunk empty = contiguous layout.
struct WriteOptions {
  std::vector<int64_t> chunk;  // chunk dims (same rank as the data); empty: contiguous
  int deflate = 0;             // gzip level 0-9; needs chunking
};

class File {
 public:
  enum class Mode { kRead, kReadWrite, kCreate /* truncates */ };
  // Throws InputError "cannot open HDF5 file '<path>': <reason>" when it cannot.
  File(const std::string& path, Mode mode);
  const std::string& path() const { return path_; }
  hid_t id() const { return h_.id(); }

  bool has(const std::string& name) const;                               // a link of that name exists (path allowed)
  std::vector<std::string> names(const std::string& group = "/") const;  // direct children
  Dataset open(const std::string& name) const;                           // throws naming file and dataset
  void create_group(const std::string& name);

  // Writes a new dataset of shape dims from data (numel(dims) elements of type T).
  template <class T>
  void write(const std::string& name, const T* data, const std::vector<int64_t>& dims, const WriteOptions& opt = {}) {
    write_raw(name, dtype_of<T>(), data, dims, opt);
  }
  void write_raw(const std::string& name, DType t, const void* data, const std::vector<int64_t>& dims,
                 const WriteOptions& opt = {});
  // Creates an empty extendible 1-D or N-D dataset (first dim unlimited) for appending.
  void create_extendible(const std::string& name, DType t, const std::vector<int64_t>& row_dims,
                         const std::vector<int64_t>& chunk, int deflate = 0);
  // Appends rows (first dimension) to an extendible dataset.
  void append_raw(const std::string& name, DType t, const void* data, int64_t rows);
  template <class T>
  void append(const std::string& name, const T* data, int64_t rows) {
    append_raw(name, dtype_of<T>(), data, rows);
  }

  // Attributes on the root group (or on an object given by path).
  void set_attr(const std::string& key, const std::string& value, const std::string& obj = "/");
  void set_attr(const std::string& key, int64_t value, const std::string& obj = "/");
  void set_attr(const std::string& key, double value, const std::string& obj = "/");
  bool has_attr(const std::string& key, const std::string& obj = "/") const;
  std::vector<std::string> attr_names(const std::string& obj = "/") const;
  // Typed getters throw InputError naming file, object and key when missing or of another class.
  std::string attr_string(const std::string& key, const std::string& obj = "/") const;
  int64_t attr_int(const std::string& key, const std::string& obj = "/") const;
  double attr_double(const std::string& key, const std::string& obj = "/") const;
  // The attribute's value as text whatever its class (integer, float or string).
  std::string attr_as_text(const std::string& key, const std::string& obj = "/") const;

  void flush();

 private:
  Handle open_obj(const std::string& obj) const;
  std::string path_;
  Handle h_;
};

}  // namespace cst::h5

#include <mutex>
namespace cst::h5 {
// Debian's libhdf5 is not thread-safe: any thread that calls HDF5 while another thread may be
// calling it (e.g. the data loader's prefetch thread next to checkpoint writing) must hold this
// process-wide lock for the duration of its HDF5 calls. The single-threaded tools need not.
std::unique_lock<std::mutex> lock_library();
}  // namespace cst::h5
