// ONNX operators at build time: the supported table, attribute parsing (compile_step) and
// initializer conversion (tensor_from_proto). Execution is onnx_run.cc.
// Semantics follow the ONNX operator documents for opsets 13-17; where ONNX and PyTorch differ
// in a default, the ONNX default is used (AveragePool's count_include_pad = 0) -- torch.onnx
// writes the attribute whenever it differs.
#include "core/nn/onnx_ops.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <set>

#include "core/base/error.h"
#include "core/tensor/dtype.h"
#include "onnx/onnx.pb.h"

namespace tandem::onnx_internal {

const std::map<std::string, OpInfo>& supported_ops() {
  static const std::map<std::string, OpInfo> ops = {
      {"Add", {Kind::kAdd, {}}},
      {"AveragePool",
       {Kind::kAveragePool,
        {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad"}}},
      {"BatchNormalization", {Kind::kBatchNorm, {"epsilon", "momentum", "training_mode"}}},
      {"Concat", {Kind::kConcat, {"axis"}}},
      {"Constant",
       {Kind::kConstant, {"value", "value_float", "value_floats", "value_int", "value_ints"}}},
      {"Conv",
       {Kind::kConv, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"}}},
      {"Div", {Kind::kDiv, {}}},
      {"Dropout", {Kind::kDropout, {"seed"}}},
      {"Flatten", {Kind::kFlatten, {"axis"}}},
      {"Gather", {Kind::kGather, {"axis"}}},
      {"Gemm", {Kind::kGemm, {"alpha", "beta", "transA", "transB"}}},
      {"GlobalAveragePool", {Kind::kGlobalAveragePool, {}}},
      {"Identity", {Kind::kIdentity, {}}},
      {"LeakyRelu", {Kind::kLeakyRelu, {"alpha"}}},
      {"LogSoftmax", {Kind::kLogSoftmax, {"axis"}}},
      {"MatMul", {Kind::kMatMul, {}}},
      {"MaxPool",
       {Kind::kMaxPool,
        {"kernel_shape", "strides", "pads", "dilations", "auto_pad", "ceil_mode",
         "storage_order"}}},
      {"Mul", {Kind::kMul, {}}},
      {"Pad", {Kind::kPad, {"mode"}}},
      {"ReduceMean", {Kind::kReduceMean, {"axes", "keepdims"}}},
      {"Relu", {Kind::kRelu, {}}},
      {"Reshape", {Kind::kReshape, {"allowzero"}}},
      {"Shape", {Kind::kShape, {"start", "end"}}},
      {"Sigmoid", {Kind::kSigmoid, {}}},
      {"Softmax", {Kind::kSoftmax, {"axis"}}},
      {"Squeeze", {Kind::kSqueeze, {}}},
      {"Sub", {Kind::kSub, {}}},
      {"Tanh", {Kind::kTanh, {}}},
      {"Transpose", {Kind::kTranspose, {"perm"}}},
      {"Unsqueeze", {Kind::kUnsqueeze, {}}},
  };
  return ops;
}

double float_attr_value(float f) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}

namespace {

// The node's attributes by name, refusing any the operator does not list.
class Attrs {
 public:
  Attrs(const onnx::NodeProto& node, const std::string& where) : where_(where) {
    const auto& allowed = supported_ops().at(node.op_type()).attributes;
    for (const auto& a : node.attribute()) {
      TANDEM_CHECK_T(ConfigError,
                     std::find(allowed.begin(), allowed.end(), a.name()) != allowed.end(), where,
                     ": attribute '", a.name(), "' is not supported (supported for ",
                     node.op_type(), ": ", join(allowed), ")");
      map_[a.name()] = &a;
    }
  }
  bool has(const std::string& n) const { return map_.count(n) > 0; }
  int64_t i(const std::string& n, int64_t dflt) const {
    auto it = map_.find(n);
    return it == map_.end() ? dflt : it->second->i();
  }
  double f(const std::string& n, double dflt) const {
    auto it = map_.find(n);
    return it == map_.end() ? dflt : float_attr_value(it->second->f());
  }
  std::string s(const std::string& n, const std::string& dflt) const {
    auto it = map_.find(n);
    return it == map_.end() ? dflt : it->second->s();
  }
  std::vector<int64_t> ints(const std::string& n) const {
    auto it = map_.find(n);
    if (it == map_.end()) return {};
    return {it->second->ints().begin(), it->second->ints().end()};
  }
  const onnx::AttributeProto* get(const std::string& n) const {
    auto it = map_.find(n);
    return it == map_.end() ? nullptr : it->second;
  }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s.empty() ? "none" : s;
  }
  std::string where_;
  std::map<std::string, const onnx::AttributeProto*> map_;
};

Window parse_window(const Attrs& a, const std::string& where, bool has_dilations) {
  Window w;
  std::vector<int64_t> k = a.ints("kernel_shape");
  if (!k.empty()) {
    TANDEM_CHECK_T(ConfigError, k.size() == 2, where, ": kernel_shape has ", k.size(),
                   " dimensions; only 2-D windows (N, C, H, W inputs) are supported");
    w.kernel_h = k[0];
    w.kernel_w = k[1];
  }
  std::vector<int64_t> s = a.ints("strides");
  if (!s.empty()) {
    TANDEM_CHECK_T(ConfigError, s.size() == 2, where, ": strides must have 2 values");
    w.stride_h = s[0];
    w.stride_w = s[1];
  }
  if (has_dilations) {
    std::vector<int64_t> d = a.ints("dilations");
    if (!d.empty()) {
      TANDEM_CHECK_T(ConfigError, d.size() == 2, where, ": dilations must have 2 values");
      w.dilation_h = d[0];
      w.dilation_w = d[1];
    }
  }
  std::vector<int64_t> p = a.ints("pads");
  if (!p.empty()) {
    TANDEM_CHECK_T(ConfigError, p.size() == 4, where, ": pads must have 4 values");
    w.pad_top = p[0];
    w.pad_left = p[1];
    w.pad_bottom = p[2];
    w.pad_right = p[3];
  }
  w.auto_pad = a.s("auto_pad", "NOTSET");
  TANDEM_CHECK_T(ConfigError,
                 w.auto_pad == "NOTSET" || w.auto_pad == "SAME_UPPER" ||
                     w.auto_pad == "SAME_LOWER" || w.auto_pad == "VALID",
                 where, ": auto_pad '", w.auto_pad, "' is not supported");
  w.ceil_mode = a.i("ceil_mode", 0) != 0;
  return w;
}

std::vector<int64_t> const_ints(const ConstLookup& constants, int id, const std::string& where,
                                const char* what) {
  const Tensor* t = constants(id);
  TANDEM_CHECK_T(ConfigError, t != nullptr, where, ": input '", what,
                 "' must be a constant (an initializer or a Constant node)");
  return t->values<int64_t>();
}

}  // namespace

// Long: one case per supported ONNX operator, reading and checking its attributes.
Step compile_step(const onnx::NodeProto& node, const std::string& name, std::vector<int> in,
                  std::vector<int> out, const ConstLookup& constants) {
  const std::string where = "node '" + name + "' (" + node.op_type() + ")";
  auto k = supported_ops().find(node.op_type());
  if (k == supported_ops().end() || !(node.domain().empty() || node.domain() == "ai.onnx")) {
    std::string list;
    for (const auto& [op, info] : supported_ops()) list += (list.empty() ? "" : ", ") + op;
    throw ConfigError(str(where, ": operator ", node.domain().empty() ? "" : node.domain() + ".",
                          node.op_type(), " is not supported (supported: ", list, ")"));
  }
  Attrs a(node, where);
  Step s;
  s.kind = k->second.kind;
  s.name = name;
  s.op = node.op_type();
  s.in = std::move(in);
  s.out = std::move(out);
  auto need_inputs = [&](size_t lo, size_t hi) {
    TANDEM_CHECK_T(ConfigError, s.in.size() >= lo && s.in.size() <= hi, where, ": expected ", lo,
                   lo == hi ? "" : str(" to ", hi), " inputs, got ", s.in.size());
    for (size_t i = 0; i < lo; ++i)
      TANDEM_CHECK_T(ConfigError, s.in[i] >= 0, where, ": input ", i, " is required");
  };
  switch (s.kind) {
    case Kind::kConv:
      need_inputs(2, 3);
      s.window = parse_window(a, where, true);
      s.group = a.i("group", 1);
      break;
    case Kind::kMaxPool:
      need_inputs(1, 1);
      s.window = parse_window(a, where, true);
      TANDEM_CHECK_T(ConfigError, s.window.dilation_h == 1 && s.window.dilation_w == 1, where,
                     ": dilated max pooling is not supported");
      TANDEM_CHECK_T(ConfigError, a.i("storage_order", 0) == 0, where,
                     ": storage_order 1 is not supported");
      TANDEM_CHECK_T(ConfigError, s.window.kernel_h > 0, where, ": kernel_shape is required");
      break;
    case Kind::kAveragePool:
      need_inputs(1, 1);
      s.window = parse_window(a, where, false);
      s.count_include_pad = a.i("count_include_pad", 0) != 0;
      TANDEM_CHECK_T(ConfigError, s.window.kernel_h > 0, where, ": kernel_shape is required");
      break;
    case Kind::kGemm:
      need_inputs(2, 3);
      s.alpha = a.f("alpha", 1.0);
      s.beta = a.f("beta", 1.0);
      s.trans_a = a.i("transA", 0) != 0;
      s.trans_b = a.i("transB", 0) != 0;
      break;
    case Kind::kLeakyRelu:
      need_inputs(1, 1);
      s.alpha = a.f("alpha", 0.01);
      break;
    case Kind::kSoftmax:
    case Kind::kLogSoftmax:
      need_inputs(1, 1);
      s.axis = a.i("axis", -1);
      break;
    case Kind::kFlatten:
      need_inputs(1, 1);
      s.axis = a.i("axis", 1);
      break;
    case Kind::kConcat:
      TANDEM_CHECK_T(ConfigError, !s.in.empty(), where, ": expected at least one input");
      TANDEM_CHECK_T(ConfigError, a.has("axis"), where, ": attribute 'axis' is required");
      s.axis = a.i("axis", 0);
      break;
    case Kind::kGather:
      need_inputs(2, 2);
      s.axis = a.i("axis", 0);
      break;
    case Kind::kBatchNorm:
      need_inputs(5, 5);
      s.eps = a.f("epsilon", 1e-5);
      // ONNX: running = running * momentum + batch * (1 - momentum); torch's momentum is the
      // weight of the batch statistic.
      s.momentum = 1.0 - a.f("momentum", 0.9);
      break;
    case Kind::kDropout: {
      need_inputs(1, 3);
      s.ratio = 0.5;
      if (s.in.size() >= 2 && s.in[1] >= 0) {
        const Tensor* r = constants(s.in[1]);
        TANDEM_CHECK_T(ConfigError, r != nullptr && r->numel() == 1, where,
                       ": input 'ratio' must be a constant scalar");
        s.ratio = float_attr_value(static_cast<float>(r->item()));
      }
      TANDEM_CHECK_T(ConfigError, s.ratio >= 0 && s.ratio < 1, where, ": ratio must be in [0, 1)");
      break;
    }
    case Kind::kReshape:
      need_inputs(2, 2);
      s.allowzero = a.i("allowzero", 0) != 0;
      break;
    case Kind::kShape:
      need_inputs(1, 1);
      s.shape_start = a.i("start", 0);
      s.shape_end = a.i("end", INT64_MAX);
      break;
    case Kind::kUnsqueeze:
      need_inputs(2, 2);
      s.ints = const_ints(constants, s.in[1], where, "axes");
      s.has_ints = true;
      break;
    case Kind::kSqueeze:
      need_inputs(1, 2);
      if (s.in.size() == 2 && s.in[1] >= 0) {
        s.ints = const_ints(constants, s.in[1], where, "axes");
        s.has_ints = true;
      }
      break;
    case Kind::kTranspose:
      need_inputs(1, 1);
      s.has_ints = a.has("perm");
      s.ints = a.ints("perm");
      break;
    case Kind::kPad: {
      need_inputs(2, 3);
      s.mode = a.s("mode", "constant");
      TANDEM_CHECK_T(ConfigError, s.mode == "constant", where, ": mode '", s.mode,
                     "' is not supported (constant is)");
      s.ints = const_ints(constants, s.in[1], where, "pads");
      s.has_ints = true;
      if (s.in.size() == 3 && s.in[2] >= 0) {
        const Tensor* v = constants(s.in[2]);
        TANDEM_CHECK_T(ConfigError, v != nullptr && v->numel() == 1, where,
                       ": input 'constant_value' must be a constant scalar");
        s.alpha = v->item();
      } else {
        s.alpha = 0.0;
      }
      const size_t r = s.ints.size() / 2;
      bool ok = s.ints.size() % 2 == 0 && s.ints.size() >= 4;
      for (size_t i = 0; ok && i < s.ints.size(); ++i)
        ok = s.ints[i] >= 0 && (i % r >= r - 2 || s.ints[i] == 0);
      TANDEM_CHECK_T(ConfigError, ok, where,
                     ": only non-negative padding of the last two "
                     "dimensions of an (N, C, H, W) tensor is supported, got pads ",
                     shape_str(s.ints));
      break;
    }
    case Kind::kReduceMean:
      need_inputs(1, 1);
      s.has_ints = a.has("axes");
      s.ints = a.ints("axes");
      s.keepdims = a.i("keepdims", 1) != 0;
      break;
    case Kind::kConstant: {
      need_inputs(0, 0);
      if (const auto* t = a.get("value")) {
        s.constant = tensor_from_proto(t->t(), where);
      } else if (const auto* f = a.get("value_float")) {
        s.constant = scalar_tensor(float_attr_value(f->f()), DType::kF32);
      } else if (const auto* fs = a.get("value_floats")) {
        std::vector<double> v;
        for (float x : fs->floats()) v.push_back(float_attr_value(x));
        s.constant = from_vector(v, {static_cast<int64_t>(v.size())}, DType::kF32);
      } else if (const auto* i = a.get("value_int")) {
        s.constant = scalar_tensor(static_cast<double>(i->i()), DType::kI64);
      } else if (const auto* is = a.get("value_ints")) {
        std::vector<double> v(is->ints().begin(), is->ints().end());
        s.constant = from_vector(v, {static_cast<int64_t>(v.size())}, DType::kI64);
      } else {
        throw ConfigError(where + ": no value attribute");
      }
      break;
    }
    case Kind::kAdd:
    case Kind::kSub:
    case Kind::kMul:
    case Kind::kDiv:
    case Kind::kMatMul:
      need_inputs(2, 2);
      break;
    default:
      need_inputs(1, 1);
      break;
  }
  const size_t max_out = s.kind == Kind::kBatchNorm ? 5 : s.kind == Kind::kDropout ? 2 : 1;
  TANDEM_CHECK_T(ConfigError, !s.out.empty() && s.out.size() <= max_out, where, ": expected 1",
                 max_out > 1 ? str(" to ", max_out) : "", " outputs, got ", s.out.size());
  return s;
}

// Long: one case per ONNX element type, each reading raw_data or the typed field.
Tensor tensor_from_proto(const onnx::TensorProto& t, const std::string& what) {
  TANDEM_CHECK_T(ConfigError, t.data_location() != onnx::TensorProto::EXTERNAL, what,
                 ": tensor data stored in an external file is not supported (export the model "
                 "as one file)");
  Shape shape(t.dims().begin(), t.dims().end());
  const int64_t n = shape_numel(shape);
  const std::string& raw = t.raw_data();
  const bool has_raw = t.has_raw_data();
  auto check_raw = [&](size_t elem) {
    TANDEM_CHECK_T(ConfigError, raw.size() == static_cast<size_t>(n) * elem, what,
                   ": raw data has ", raw.size(), " bytes, expected ",
                   n * static_cast<int64_t>(elem));
  };
  auto check_count = [&](int64_t count) {
    TANDEM_CHECK_T(ConfigError, count == n, what, ": ", count, " values for shape ",
                   shape_str(shape));
  };
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT: {
      Tensor out = empty(shape, DType::kF32);
      if (has_raw) {
        check_raw(4);
        std::memcpy(out.raw_data(), raw.data(), raw.size());
      } else {
        check_count(t.float_data_size());
        std::copy(t.float_data().begin(), t.float_data().end(), out.data<float>());
      }
      return out;
    }
    case onnx::TensorProto::DOUBLE: {
      Tensor out = empty(shape, DType::kF64);
      if (has_raw) {
        check_raw(8);
        std::memcpy(out.raw_data(), raw.data(), raw.size());
      } else {
        check_count(t.double_data_size());
        std::copy(t.double_data().begin(), t.double_data().end(), out.data<double>());
      }
      return out.to(DType::kF32);
    }
    case onnx::TensorProto::FLOAT16: {
      Tensor out = empty(shape, DType::kF32);
      float* o = out.data<float>();
      for (int64_t i = 0; i < n; ++i) {
        Half h;
        if (has_raw) {
          check_raw(2);
          std::memcpy(&h, raw.data() + 2 * i, 2);
        } else {
          check_count(t.int32_data_size());
          h.bits = static_cast<uint16_t>(t.int32_data(static_cast<int>(i)));
        }
        o[i] = half_to_float(h);
      }
      return out;
    }
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::INT16:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL: {
      Tensor out = empty(shape, DType::kI64);
      int64_t* o = out.data<int64_t>();
      const int type = t.data_type();
      const size_t elem = type == onnx::TensorProto::INT64   ? 8
                          : type == onnx::TensorProto::INT32 ? 4
                          : type == onnx::TensorProto::INT16 ? 2
                                                             : 1;
      if (has_raw) {
        check_raw(elem);
        for (int64_t i = 0; i < n; ++i) {
          const char* p = raw.data() + static_cast<size_t>(i) * elem;
          if (type == onnx::TensorProto::INT64) {
            int64_t v;
            std::memcpy(&v, p, 8);
            o[i] = v;
          } else if (type == onnx::TensorProto::INT32) {
            int32_t v;
            std::memcpy(&v, p, 4);
            o[i] = v;
          } else if (type == onnx::TensorProto::INT16) {
            int16_t v;
            std::memcpy(&v, p, 2);
            o[i] = v;
          } else if (type == onnx::TensorProto::INT8)
            o[i] = static_cast<int8_t>(*p);
          else
            o[i] = static_cast<uint8_t>(*p);
        }
      } else if (type == onnx::TensorProto::INT64) {
        check_count(t.int64_data_size());
        std::copy(t.int64_data().begin(), t.int64_data().end(), o);
      } else {
        check_count(t.int32_data_size());
        std::copy(t.int32_data().begin(), t.int32_data().end(), o);
      }
      return out;
    }
    default:
      throw ConfigError(str(
          what, ": element type ",
          onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(t.data_type())),
          " is not supported (float, double, float16 and integer types are)"));
  }
}

}  // namespace tandem::onnx_internal
