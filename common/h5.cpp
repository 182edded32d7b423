#include "common/h5.h"

#include <cstdio>
#include <sstream>

#include "common/error.h"

namespace cst::h5 {
namespace {

// Turns off HDF5's automatic error printing; errors reach the user through our exceptions.
// Idempotent; called before every fallible call sequence.
void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

herr_t walk_cb(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err->desc) *out = err->desc;  // innermost = most specific
  return 0;
}

std::vector<hsize_t> to_h(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

int64_t product(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

}  // namespace

std::string last_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = H5I_INVALID_HID;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt16: return "int16";
    case DType::kUInt16: return "uint16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
  }
  return "?";
}

hid_t native_type(DType t) {
  switch (t) {
    case DType::kInt8: return H5T_NATIVE_INT8;
    case DType::kUInt8: return H5T_NATIVE_UINT8;
    case DType::kInt16: return H5T_NATIVE_INT16;
    case DType::kUInt16: return H5T_NATIVE_UINT16;
    case DType::kInt32: return H5T_NATIVE_INT32;
    case DType::kInt64: return H5T_NATIVE_INT64;
    case DType::kFloat32: return H5T_NATIVE_FLOAT;
    case DType::kFloat64: return H5T_NATIVE_DOUBLE;
  }
  return H5I_INVALID_HID;
}

std::string shape_str(const std::vector<int64_t>& dims) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < dims.size(); ++i) os << (i ? ", " : "") << dims[i];
  os << "]";
  return os.str();
}

// ---------------------------------------------------------------------------------------------
Dataset::Dataset(Handle h, std::string file, std::string name)
    : h_(std::move(h)), file_(std::move(file)), name_(std::move(name)) {
  Handle space(H5Dget_space(h_.id()), H5Sclose);
  CST_INPUT_CHECK(space.valid(),
                  "HDF5 file '" << file_ << "' dataset '" << name_ << "': cannot read dataspace: " << last_error());
  int rank = H5Sget_simple_extent_ndims(space.id());
  CST_INPUT_CHECK(rank >= 0, "HDF5 file '" << file_ << "' dataset '" << name_ << "': bad dataspace: " << last_error());
  CST_INPUT_CHECK(rank <= H5S_MAX_RANK, "HDF5 file '" << file_ << "' dataset '" << name_ << "': rank " << rank);
  std::vector<hsize_t> d(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.id(), d.data(), nullptr);
  // Every size computed from a shape stays far inside int64: numel < 2^62.
  constexpr hsize_t kMax = hsize_t{1} << 62;
  hsize_t n = 1;
  for (hsize_t x : d) {
    CST_INPUT_CHECK(x < kMax && (x == 0 || n <= kMax / x), "HDF5 file '" << file_ << "' dataset '" << name_
                                                                         << "': shape with a dimension " << x
                                                                         << " holds 2^62 or more elements");
    n *= x;
  }
  shape_.assign(d.begin(), d.end());
}

void Dataset::check_stored() const {
  quiet();
  Handle t(H5Dget_type(h_.id()), H5Tclose);
  Handle dcpl(H5Dget_create_plist(h_.id()), H5Pclose);
  const size_t elem = H5Tget_size(t.id());
  const int filters = dcpl.valid() ? H5Pget_nfilters(dcpl.id()) : 0;
  CST_INPUT_CHECK(elem > 0 && elem <= 64 && filters >= 0, "HDF5 file '"
                                                              << file_ << "' dataset '" << name_
                                                              << "': bad element type or filters: " << last_error());
  const long double declared = static_cast<long double>(numel()) * static_cast<long double>(elem);
  const long double stored = static_cast<long double>(H5Dget_storage_size(h_.id()));
  const long double need = filters > 0 ? declared / kMaxCompression : declared;
  CST_INPUT_CHECK(stored >= need, "HDF5 file '" << file_ << "' dataset '" << name_ << "': shape " << shape_str(shape_)
                                                << " declares " << static_cast<double>(declared)
                                                << " bytes but the file stores " << static_cast<double>(stored)
                                                << (filters > 0 ? " (compressed)" : "") << ": truncated or damaged");
}

int64_t Dataset::numel() const { return product(shape_); }

DType Dataset::dtype() const {
  Handle t(H5Dget_type(h_.id()), H5Tclose);
  H5T_class_t cls = H5Tget_class(t.id());
  size_t size = H5Tget_size(t.id());
  if (cls == H5T_FLOAT) {
    if (size == 4) return DType::kFloat32;
    if (size == 8) return DType::kFloat64;
  } else if (cls == H5T_INTEGER) {
    bool is_signed = H5Tget_sign(t.id()) == H5T_SGN_2;
    switch (size) {
      case 1: return is_signed ? DType::kInt8 : DType::kUInt8;
      case 2: return is_signed ? DType::kInt16 : DType::kUInt16;
      case 4:
        if (is_signed) return DType::kInt32;
        break;
      case 8:
        if (is_signed) return DType::kInt64;
        break;
      default: break;
    }
  }
  CST_THROW_INPUT("HDF5 file '" << file_ << "' dataset '" << name_ << "': unsupported element type (class "
                                << static_cast<int>(cls) << ", " << size << " bytes)");
}

bool Dataset::is_integer() const {
  Handle t(H5Dget_type(h_.id()), H5Tclose);
  return H5Tget_class(t.id()) == H5T_INTEGER;
}

void Dataset::read_raw(DType as, void* out) const {
  quiet();
  if (numel() == 0) return;
  herr_t st = H5Dread(h_.id(), native_type(as), H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  CST_INPUT_CHECK(st >= 0, "HDF5 file '" << file_ << "' dataset '" << name_ << "': read of " << shape_str(shape_)
                                         << " as " << dtype_name(as) << " failed: " << last_error());
}

void Dataset::read_slab_raw(DType as, const std::vector<int64_t>& start, const std::vector<int64_t>& count,
                            void* out) const {
  quiet();
  CST_CHECK(start.size() == shape_.size() && count.size() == shape_.size(),
            "dataset '" << name_ << "': slab rank " << start.size() << " != dataset rank " << shape_.size());
  for (size_t i = 0; i < shape_.size(); ++i) {
    CST_INPUT_CHECK(start[i] >= 0 && count[i] >= 0 && start[i] + count[i] <= shape_[i],
                    "HDF5 file '" << file_ << "' dataset '" << name_ << "': slab start " << shape_str(start)
                                  << " count " << shape_str(count) << " outside shape " << shape_str(shape_));
  }
  if (product(count) == 0) return;
  Handle fspace(H5Dget_space(h_.id()), H5Sclose);
  auto hs = to_h(start), hc = to_h(count);
  H5Sselect_hyperslab(fspace.id(), H5S_SELECT_SET, hs.data(), nullptr, hc.data(), nullptr);
  Handle mspace(H5Screate_simple(static_cast<int>(hc.size()), hc.data(), nullptr), H5Sclose);
  herr_t st = H5Dread(h_.id(), native_type(as), mspace.id(), fspace.id(), H5P_DEFAULT, out);
  CST_INPUT_CHECK(st >= 0, "HDF5 file '" << file_ << "' dataset '" << name_ << "': read of slab at " << shape_str(start)
                                         << " count " << shape_str(count) << " failed: " << last_error());
}

// ---------------------------------------------------------------------------------------------
File::File(const std::string& path, Mode mode) : path_(path) {
  quiet();
  hid_t id = H5I_INVALID_HID;
  switch (mode) {
    case Mode::kRead: id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT); break;
    case Mode::kReadWrite: id = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT); break;
    case Mode::kCreate: id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT); break;
  }
  if (id < 0) {
    std::string why = last_error();
    if (mode != Mode::kCreate) {
      FILE* f = std::fopen(path.c_str(), "rb");
      if (!f)
        why = "no such file or not readable";
      else
        std::fclose(f);
    }
    CST_THROW_INPUT("cannot " << (mode == Mode::kCreate ? "create" : "open") << " HDF5 file '" << path << "': " << why);
  }
  h_ = Handle(id, H5Fclose);
}

bool File::has(const std::string& name) const {
  quiet();
  // Check each path component so that "a/b" with a missing "a" is false, not an error.
  size_t pos = 0;
  while (true) {
    pos = name.find('/', pos + 1);
    std::string prefix = name.substr(0, pos);
    if (!prefix.empty() && prefix != "/" && H5Lexists(h_.id(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

std::vector<std::string> File::names(const std::string& group) const {
  quiet();
  Handle g(H5Gopen2(h_.id(), group.c_str(), H5P_DEFAULT), H5Gclose);
  CST_INPUT_CHECK(g.valid(), "HDF5 file '" << path_ << "': no group '" << group << "'");
  H5G_info_t info;
  H5Gget_info(g.id(), &info);
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    CST_INPUT_CHECK(n >= 0,
                    "HDF5 file '" << path_ << "': cannot read link " << i << " of '" << group << "': " << last_error());
    std::string s(static_cast<size_t>(n), '\0');
    H5Lget_name_by_idx(g.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, s.data(), s.size() + 1, H5P_DEFAULT);
    out.push_back(s);
  }
  return out;
}

Dataset File::open(const std::string& name) const {
  quiet();
  CST_INPUT_CHECK(has(name), "HDF5 file '" << path_ << "': missing dataset '" << name << "'");
  hid_t id = H5Dopen2(h_.id(), name.c_str(), H5P_DEFAULT);
  CST_INPUT_CHECK(id >= 0, "HDF5 file '" << path_ << "': cannot open dataset '" << name << "': " << last_error());
  return Dataset(Handle(id, H5Dclose), path_, name);
}

void File::create_group(const std::string& name) {
  quiet();
  Handle g(H5Gcreate2(h_.id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  CST_INPUT_CHECK(g.valid(), "HDF5 file '" << path_ << "': cannot create group '" << name << "': " << last_error());
}

void File::write_raw(const std::string& name, DType t, const void* data, const std::vector<int64_t>& dims,
                     const WriteOptions& opt) {
  quiet();
  auto hd = to_h(dims);
  Handle space(H5Screate_simple(static_cast<int>(hd.size()), hd.data(), nullptr), H5Sclose);
  Handle plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (!opt.chunk.empty() && product(dims) > 0) {
    CST_CHECK(opt.chunk.size() == dims.size(), "chunk rank != data rank for '" << name << "'");
    std::vector<hsize_t> ch(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
      ch[i] = static_cast<hsize_t>(std::max<int64_t>(1, std::min(opt.chunk[i], dims[i])));
    H5Pset_chunk(plist.id(), static_cast<int>(ch.size()), ch.data());
    if (opt.deflate > 0) H5Pset_deflate(plist.id(), static_cast<unsigned>(opt.deflate));
  }
  Handle ds(H5Dcreate2(h_.id(), name.c_str(), native_type(t), space.id(), H5P_DEFAULT, plist.id(), H5P_DEFAULT),
            H5Dclose);
  CST_INPUT_CHECK(ds.valid(), "HDF5 file '" << path_ << "': cannot create dataset '" << name << "' " << shape_str(dims)
                                            << ": " << last_error());
  if (product(dims) == 0) return;
  herr_t st = H5Dwrite(ds.id(), native_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  CST_INPUT_CHECK(st >= 0, "HDF5 file '" << path_ << "': write of dataset '" << name << "' failed: " << last_error());
}

void File::create_extendible(const std::string& name, DType t, const std::vector<int64_t>& row_dims,
                             const std::vector<int64_t>& chunk, int deflate) {
  quiet();
  std::vector<hsize_t> dims{0}, maxd{H5S_UNLIMITED};
  for (auto d : row_dims) {
    dims.push_back(static_cast<hsize_t>(d));
    maxd.push_back(static_cast<hsize_t>(d));
  }
  CST_CHECK(chunk.size() == dims.size(), "chunk rank != data rank for '" << name << "'");
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxd.data()), H5Sclose);
  Handle plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  auto ch = to_h(chunk);
  H5Pset_chunk(plist.id(), static_cast<int>(ch.size()), ch.data());
  if (deflate > 0) H5Pset_deflate(plist.id(), static_cast<unsigned>(deflate));
  Handle ds(H5Dcreate2(h_.id(), name.c_str(), native_type(t), space.id(), H5P_DEFAULT, plist.id(), H5P_DEFAULT),
            H5Dclose);
  CST_INPUT_CHECK(ds.valid(), "HDF5 file '" << path_ << "': cannot create dataset '" << name << "': " << last_error());
}

void File::append_raw(const std::string& name, DType t, const void* data, int64_t rows) {
  quiet();
  if (rows == 0) return;
  Handle ds(H5Dopen2(h_.id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  CST_INPUT_CHECK(ds.valid(), "HDF5 file '" << path_ << "': no dataset '" << name << "'");
  Handle fs0(H5Dget_space(ds.id()), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(fs0.id());
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(fs0.id(), dims.data(), nullptr);
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = dims[0];
  count[0] = static_cast<hsize_t>(rows);
  dims[0] += static_cast<hsize_t>(rows);
  CST_INPUT_CHECK(H5Dset_extent(ds.id(), dims.data()) >= 0,
                  "HDF5 file '" << path_ << "': cannot extend '" << name << "': " << last_error());
  Handle fs(H5Dget_space(ds.id()), H5Sclose);
  H5Sselect_hyperslab(fs.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle ms(H5Screate_simple(rank, count.data(), nullptr), H5Sclose);
  CST_INPUT_CHECK(H5Dwrite(ds.id(), native_type(t), ms.id(), fs.id(), H5P_DEFAULT, data) >= 0,
                  "HDF5 file '" << path_ << "': append to '" << name << "' failed: " << last_error());
}

Handle File::open_obj(const std::string& obj) const {
  quiet();
  hid_t id = H5Oopen(h_.id(), obj.c_str(), H5P_DEFAULT);
  CST_INPUT_CHECK(id >= 0, "HDF5 file '" << path_ << "': no object '" << obj << "'");
  return Handle(id, H5Oclose);
}

void File::flush() { H5Fflush(h_.id(), H5F_SCOPE_GLOBAL); }

}  // namespace cst::h5

namespace cst::h5 {
std::unique_lock<std::mutex> lock_library() {
  static std::mutex m;
  return std::unique_lock<std::mutex>(m);
}
}  // namespace cst::h5
