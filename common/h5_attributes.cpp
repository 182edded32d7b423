// The attribute half of the HDF5 RAII layer (common/h5.h): scalar int64, double and string
// attributes, written and read with one value each (an attribute holding an array is refused).
#include <algorithm>
#include <sstream>

#include "common/error.h"
#include "common/h5.h"

namespace cst::h5 {

namespace {
void write_attr(hid_t obj, const std::string& file, const std::string& key, hid_t type, const void* value) {
  if (H5Aexists(obj, key.c_str()) > 0) H5Adelete(obj, key.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle a(H5Acreate2(obj, key.c_str(), type, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  CST_INPUT_CHECK(a.valid() && H5Awrite(a.id(), type, value) >= 0,
                  "HDF5 file '" << file << "': cannot write attribute '" << key << "': " << last_error());
}
}  // namespace

void File::set_attr(const std::string& key, const std::string& value, const std::string& obj) {
  Handle o = open_obj(obj);
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.id(), std::max<size_t>(1, value.size()));
  H5Tset_strpad(t.id(), H5T_STR_NULLPAD);
  H5Tset_cset(t.id(), H5T_CSET_UTF8);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  write_attr(o.id(), path_, key, t.id(), padded.data());
}

void File::set_attr(const std::string& key, int64_t value, const std::string& obj) {
  Handle o = open_obj(obj);
  write_attr(o.id(), path_, key, H5T_NATIVE_INT64, &value);
}

void File::set_attr(const std::string& key, double value, const std::string& obj) {
  Handle o = open_obj(obj);
  write_attr(o.id(), path_, key, H5T_NATIVE_DOUBLE, &value);
}

bool File::has_attr(const std::string& key, const std::string& obj) const {
  Handle o = open_obj(obj);
  return H5Aexists(o.id(), key.c_str()) > 0;
}

std::vector<std::string> File::attr_names(const std::string& obj) const {
  Handle o = open_obj(obj);
#if H5_VERSION_GE(1, 12, 0)
  H5O_info2_t info;
  H5Oget_info3(o.id(), &info, H5O_INFO_NUM_ATTRS);
#else  // Debian 12 ships HDF5 1.10
  H5O_info_t info;
  H5Oget_info2(o.id(), &info, H5O_INFO_NUM_ATTRS);
#endif
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    ssize_t n = H5Aget_name_by_idx(o.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    CST_INPUT_CHECK(
        n >= 0, "HDF5 file '" << path_ << "': cannot read attribute " << i << " of '" << obj << "': " << last_error());
    std::string s(static_cast<size_t>(n), '\0');
    H5Aget_name_by_idx(o.id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, s.data(), s.size() + 1, H5P_DEFAULT);
    out.push_back(s);
  }
  return out;
}

namespace {
struct OpenAttr {
  Handle attr, type;
  H5T_class_t cls;
};

OpenAttr open_attr(hid_t obj, const std::string& file, const std::string& where, const std::string& key) {
  CST_INPUT_CHECK(H5Aexists(obj, key.c_str()) > 0,
                  "HDF5 file '" << file << "': missing attribute '" << key << "' on '" << where << "'");
  Handle a(H5Aopen(obj, key.c_str(), H5P_DEFAULT), H5Aclose);
  CST_INPUT_CHECK(a.valid(), "HDF5 file '" << file << "': cannot open attribute '" << key << "': " << last_error());
  Handle t(H5Aget_type(a.id()), H5Tclose);
  H5T_class_t cls = H5Tget_class(t.id());
  // One value: the reads below fill one element (an array attribute would overrun them).
  Handle space(H5Aget_space(a.id()), H5Sclose);
  const hssize_t points = space.valid() ? H5Sget_simple_extent_npoints(space.id()) : -1;
  CST_INPUT_CHECK(t.valid() && points == 1, "HDF5 file '" << file << "': attribute '" << key << "' on '" << where
                                                          << "' holds " << points << " values, expected one");
  return {std::move(a), std::move(t), cls};
}
}  // namespace

std::string File::attr_string(const std::string& key, const std::string& obj) const {
  Handle o = open_obj(obj);
  OpenAttr a = open_attr(o.id(), path_, obj, key);
  CST_INPUT_CHECK(a.cls == H5T_STRING, "HDF5 file '" << path_ << "': attribute '" << key << "' is not a string");
  if (H5Tis_variable_str(a.type.id()) > 0) {
    char* s = nullptr;
    Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.id(), H5T_VARIABLE);
    H5Tset_cset(mt.id(), H5Tget_cset(a.type.id()));
    CST_INPUT_CHECK(H5Aread(a.attr.id(), mt.id(), &s) >= 0,
                    "HDF5 file '" << path_ << "': cannot read attribute '" << key << "'");
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  size_t n = H5Tget_size(a.type.id());
  CST_INPUT_CHECK(n > 0 && n <= (size_t{1} << 20),
                  "HDF5 file '" << path_ << "': attribute '" << key << "' is a string of " << n << " bytes");
  std::string s(n, '\0');
  CST_INPUT_CHECK(H5Aread(a.attr.id(), a.type.id(), s.data()) >= 0,
                  "HDF5 file '" << path_ << "': cannot read attribute '" << key << "'");
  s.resize(s.find('\0') == std::string::npos ? n : s.find('\0'));
  return s;
}

int64_t File::attr_int(const std::string& key, const std::string& obj) const {
  Handle o = open_obj(obj);
  OpenAttr a = open_attr(o.id(), path_, obj, key);
  CST_INPUT_CHECK(a.cls == H5T_INTEGER, "HDF5 file '" << path_ << "': attribute '" << key << "' is not an integer");
  int64_t v = 0;
  CST_INPUT_CHECK(H5Aread(a.attr.id(), H5T_NATIVE_INT64, &v) >= 0,
                  "HDF5 file '" << path_ << "': attribute '" << key << "' is not an int64 value: " << last_error());
  return v;
}

double File::attr_double(const std::string& key, const std::string& obj) const {
  Handle o = open_obj(obj);
  OpenAttr a = open_attr(o.id(), path_, obj, key);
  CST_INPUT_CHECK(a.cls == H5T_FLOAT || a.cls == H5T_INTEGER,
                  "HDF5 file '" << path_ << "': attribute '" << key << "' is not a number");
  double v = 0;
  CST_INPUT_CHECK(H5Aread(a.attr.id(), H5T_NATIVE_DOUBLE, &v) >= 0,
                  "HDF5 file '" << path_ << "': cannot read attribute '" << key << "' as a number: " << last_error());
  return v;
}

std::string File::attr_as_text(const std::string& key, const std::string& obj) const {
  Handle o = open_obj(obj);
  H5T_class_t cls = open_attr(o.id(), path_, obj, key).cls;
  if (cls == H5T_INTEGER) return std::to_string(attr_int(key, obj));
  if (cls == H5T_FLOAT) {
    std::ostringstream os;
    os.precision(17);
    os << attr_double(key, obj);
    return os.str();
  }
  return attr_string(key, obj);
}

}  // namespace cst::h5
