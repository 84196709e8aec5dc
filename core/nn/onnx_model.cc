// load_onnx_model: file -> checked graph -> OnnxModel. The graph-level work lives here (opset,
// the one input and its layout, initializers as named parameters, value ids, a dry run); what
// each operator does is in onnx_ops.cc.
#include "core/nn/onnx_model.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/base/error.h"
#include "core/nn/onnx_ops.h"
#include "onnx/onnx.pb.h"

namespace tandem {

using onnx_internal::Kind;
using onnx_internal::Step;

namespace {

// Opsets whose operator definitions onnx_ops.cc follows (Unsqueeze/Squeeze axes as inputs from
// 13, ReduceMean axes as an attribute up to 17).
constexpr int64_t kMinOpset = 13, kMaxOpset = 17;

// A parameter-less module that only holds parameters and buffers at one level of a dotted name.
class OnnxScope : public Module {
 public:
  Tensor forward(const Tensor&) override {
    throw Unimplemented(where() + ": holds ONNX initializers; it has no forward of its own");
  }
  std::string describe() const override { return "OnnxScope"; }
};

std::vector<std::string> split_dots(const std::string& name) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : name) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

bool has_entry(const NamedTensors& list, const std::string& n) {
  for (const auto& e : list)
    if (e.first == n) return true;
  return false;
}

}  // namespace

OnnxModel::~OnnxModel() = default;

int64_t OnnxModel::num_nodes() const {
  return static_cast<int64_t>(steps_.size());
}

std::string OnnxModel::describe() const {
  return str("OnnxModel(", file_, ": ", steps_.size(), " nodes, input '", input_name_, "' ",
             layout_ == Layout::kNHWC   ? "NHWC"
             : layout_ == Layout::kFlat ? "flat"
                                        : "NCHW",
             ")");
}

std::vector<std::pair<std::string, std::string>> onnx_operator_table() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [op, info] : onnx_internal::supported_ops()) {
    std::string a;
    for (const auto& x : info.attributes) a += (a.empty() ? "" : ", ") + x;
    out.emplace_back(op, a);
  }
  return out;
}

namespace {

// Registers `value` under its dotted `name` in a tree of OnnxScope modules below `root`. Names
// that cannot form such a tree (an empty part, a part already taken by a tensor) are registered
// flat at the root with '.' turned into '_'. Returns the name it got.
std::string register_dotted(Module& root, const std::string& name, const Tensor& value,
                            bool parameter) {
  std::vector<std::string> parts = split_dots(name);
  bool ok = true;
  for (const auto& p : parts) ok = ok && !p.empty();
  Module* m = &root;
  for (size_t i = 0; ok && i + 1 < parts.size(); ++i) {
    Module* next = nullptr;
    for (const auto& [n, child] : m->named_children())
      if (n == parts[i]) next = child.get();
    if (!next) {
      // A child may not share its name with a tensor of the same module.
      if (has_entry(m->named_parameters(), parts[i]) || has_entry(m->named_buffers(), parts[i])) {
        ok = false;
        break;
      }
      next = m->register_module(parts[i], std::make_shared<OnnxScope>()).get();
    }
    m = next;
  }
  std::string leaf = parts.back();
  if (ok) {
    for (const auto& [n, child] : m->named_children()) ok = ok && n != leaf;
    ok = ok && !has_entry(m->named_parameters(), leaf) && !has_entry(m->named_buffers(), leaf);
  }
  if (!ok) {
    m = &root;
    leaf = name;
    for (char& c : leaf)
      if (c == '.') c = '_';
    while (has_entry(root.named_parameters(), leaf) || has_entry(root.named_buffers(), leaf))
      leaf += "_";
  }
  if (parameter)
    m->register_parameter(leaf, value);
  else
    m->register_buffer(leaf, value);
  return ok ? name : leaf;
}

// The graph input's dims: a value, or -1 for a symbolic / unknown one.
std::vector<int64_t> input_dims(const onnx::ValueInfoProto& in) {
  std::vector<int64_t> dims;
  if (!in.type().has_tensor_type() || !in.type().tensor_type().has_shape()) return dims;
  for (const auto& d : in.type().tensor_type().shape().dim())
    dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
  return dims;
}

[[noreturn]] void rethrow_with(const std::exception& e, const std::string& prefix) {
  const std::string msg = prefix + e.what();
  if (dynamic_cast<const ConfigError*>(&e)) throw ConfigError(msg);
  if (dynamic_cast<const ShapeError*>(&e)) throw ShapeError(msg);
  if (dynamic_cast<const TypeError*>(&e)) throw TypeError(msg);
  if (dynamic_cast<const Unimplemented*>(&e)) throw Unimplemented(msg);
  if (dynamic_cast<const IoError*>(&e)) throw IoError(msg);
  throw ValueError(msg);
}

}  // namespace

// Builds an OnnxModel from one file, a stage per method, in the order load_onnx_model calls them.
// Every refusal is a ConfigError naming the config key and the file.
class onnx_internal::Loader {
 public:
  Loader(const std::string& path, const OnnxModelOptions& o)
      : o_(o), where_(o.key + ": " + path), m_(new OnnxModel()) {
    m_->file_ = std::filesystem::path(path).filename().string();
  }

  [[noreturn]] void fail(const std::string& msg) const { throw ConfigError(where_ + ": " + msg); }

  // The file, parsed, in an opset onnx_ops.cc follows.
  onnx::ModelProto read(const std::string& path) const {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw IoError(str(where_, ": cannot open the file"));
    std::ostringstream buf;
    buf << f.rdbuf();
    onnx::ModelProto model;
    if (!model.ParseFromString(buf.str()))
      fail("not an ONNX model (the file does not parse as onnx.ModelProto)");
    int64_t opset = -1;
    for (const auto& imp : model.opset_import())
      if (imp.domain().empty() || imp.domain() == "ai.onnx") opset = imp.version();
    if (opset < kMinOpset || opset > kMaxOpset)
      fail(str("opset ", opset, " is not supported (", kMinOpset, " to ", kMaxOpset,
               "); export again with opset_version=", kMaxOpset));
    return model;
  }

  // Initializers: parameters, buffers (batch-norm statistics) and constants.
  void add_initializers(const onnx::GraphProto& g) {
    std::set<std::string> bn_stats;
    for (const auto& n : g.node())
      if (n.op_type() == "BatchNormalization" && n.input_size() >= 5) {
        bn_stats.insert(n.input(3));
        bn_stats.insert(n.input(4));
      }
    std::set<std::string> init_names_;
    for (const auto& t : g.initializer()) {
      if (!init_names_.insert(t.name()).second)
        fail("initializer '" + t.name() + "' appears twice");
      Tensor value = onnx_internal::tensor_from_proto(t, "initializer '" + t.name() + "'");
      const int id = new_id(t.name());
      if (value.dtype() == DType::kF32) {
        register_dotted(*m_, t.name(), value, /*parameter=*/bn_stats.count(t.name()) == 0);
      }
      m_->initial_[static_cast<size_t>(id)] = value;
    }
  }

  // The one input, and how samples map onto it.
  void bind_input(const onnx::GraphProto& g) {
    std::vector<const onnx::ValueInfoProto*> inputs;
    for (const auto& in : g.input())
      if (!init_names_.count(in.name())) inputs.push_back(&in);
    if (inputs.size() != 1) {
      std::string names;
      for (const auto* in : inputs) names += (names.empty() ? "'" : ", '") + in->name() + "'";
      fail(str("the graph has ", inputs.size(), " inputs (", names,
               "); tandem feeds one image batch"));
    }
    m_->input_name_ = inputs[0]->name();
    m_->input_id_ = new_id(m_->input_name_);
    m_->channels_ = o_.channels;
    m_->height_ = o_.height;
    m_->width_ = o_.width;
    {
      const std::vector<int64_t> d = input_dims(*inputs[0]);
      auto fits = [](int64_t declared, int64_t actual) {
        return declared < 0 || declared == actual;
      };
      std::string declared = "[";
      for (size_t i = 0; i < d.size(); ++i)
        declared += (i ? ", " : "") + (d[i] < 0 ? std::string("?") : std::to_string(d[i]));
      declared += "]";
      const int64_t c = o_.channels, h = o_.height, w = o_.width;
      if (c <= 0 || d.empty()) {
        m_->layout_ = OnnxModel::Layout::kNCHW;
      } else if (d.size() == 4 && fits(d[1], c) && fits(d[2], h) && fits(d[3], w)) {
        m_->layout_ = OnnxModel::Layout::kNCHW;
      } else if (d.size() == 4 && fits(d[1], h) && fits(d[2], w) && fits(d[3], c)) {
        m_->layout_ = OnnxModel::Layout::kNHWC;
      } else if (d.size() == 2 && fits(d[1], c * h * w)) {
        m_->layout_ = OnnxModel::Layout::kFlat;
      } else {
        fail(str("input '", m_->input_name_, "' has shape ", declared,
                 " but the data set's samples are ", c, "x", h, "x", w, " (expected [N, ", c, ", ",
                 h, ", ", w, "], [N, ", h, ", ", w, ", ", c, "] or [N, ", c * h * w,
                 "]); export the model for the data's image size "
                 "or set data.image_size"));
      }
    }
  }

  // The nodes, in file order, each compiled to a Step.
  void add_nodes(const onnx::GraphProto& g) {
    std::map<std::string, int> bn_counter_of_prefix;
    for (int i = 0; i < g.node_size(); ++i) {
      const onnx::NodeProto& node = g.node(i);
      const std::string name = node.name().empty() ? str("#", i) : node.name();
      std::vector<int> in, out;
      for (const auto& n : node.input()) {
        if (n.empty()) {
          in.push_back(-1);
          continue;
        }
        auto it = ids_.find(n);
        if (it == ids_.end())
          fail(str("node '", name, "' (", node.op_type(), "): input '", n,
                   "' is produced by no earlier node, initializer or graph input"));
        in.push_back(it->second);
      }
      for (const auto& n : node.output()) out.push_back(n.empty() ? -1 : new_id(n));
      Step s;
      try {
        s = onnx_internal::compile_step(node, name, std::move(in), std::move(out),
                                        [this](int id) { return constant(id); });
      } catch (const ConfigError& e) {
        fail(e.what());
      }
      if (s.kind == Kind::kConstant) m_->initial_[static_cast<size_t>(s.out[0])] = s.constant;
      if (s.kind == Kind::kBatchNorm) {
        for (int k : {3, 4})
          if (!constant(s.in[static_cast<size_t>(k)]))
            fail(str("node '", name, "' (BatchNormalization): input ", k,
                     " (running statistics) must be an initializer"));
        // torch's num_batches_tracked, next to running_mean when the names say where.
        const std::string& mean_name = node.input(3);
        const std::string suffix = ".running_mean";
        if (mean_name.size() > suffix.size() &&
            mean_name.compare(mean_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
          const std::string prefix = mean_name.substr(0, mean_name.size() - suffix.size());
          auto it = bn_counter_of_prefix.find(prefix);
          if (it == bn_counter_of_prefix.end()) {
            Tensor counter = zeros({}, DType::kI64);
            if (init_names_.count(prefix + ".num_batches_tracked") == 0) {
              register_dotted(*m_, prefix + ".num_batches_tracked", counter, false);
              it = bn_counter_of_prefix.emplace(prefix, static_cast<int>(m_->bn_counters_.size()))
                       .first;
              m_->bn_counters_.push_back(counter);
            }
          }
          if (it != bn_counter_of_prefix.end()) s.bn_counter = it->second;
        }
      }
      m_->steps_.push_back(std::move(s));
    }
  }

  void bind_output(const onnx::GraphProto& g) {
    if (g.output_size() < 1) fail("the graph has no output");
    {
      auto it = ids_.find(g.output(0).name());
      if (it == ids_.end()) fail("output '" + g.output(0).name() + "' is produced by no node");
      m_->output_id_ = it->second;
    }
  }

  // Lifetimes: drop each intermediate value after the last step that reads it.
  void plan_lifetimes() {
    std::vector<int> last_use(m_->initial_.size(), -1);
    for (size_t i = 0; i < m_->steps_.size(); ++i)
      for (int id : m_->steps_[i].in)
        if (id >= 0) last_use[static_cast<size_t>(id)] = static_cast<int>(i);
    m_->release_after_.assign(m_->steps_.size(), {});
    for (size_t id = 0; id < last_use.size(); ++id)
      if (last_use[id] >= 0 && static_cast<int>(id) != m_->output_id_)
        m_->release_after_[static_cast<size_t>(last_use[id])].push_back(static_cast<int>(id));
  }

  // The dry run: every shape resolved for a batch of 2, before any training.
  void dry_run(const onnx::GraphProto& g) {
    if (o_.channels > 0) {
      Tensor out;
      try {
        NoGradGuard no_grad;
        m_->eval();
        out = m_->forward(zeros({2, o_.channels, o_.height, o_.width}, DType::kF32));
        m_->train();
      } catch (const std::exception& e) {
        fail(str(e.what(), " (found by running the graph on 2 samples of ", o_.channels, "x",
                 o_.height, "x", o_.width, ")"));
      }
      if (out.dim() != 2 || out.size(0) != 2)
        fail(str("output '", g.output(0).name(), "' has shape ", shape_str(out.shape()),
                 " for 2 samples; expected logits [N, classes]"));
      m_->num_outputs_ = out.size(1);
    }
  }

  std::shared_ptr<OnnxModel> finish() {
    m_->train();
    return m_;
  }

 private:
  // A new value id for `name` (a later value of the same name shadows it).
  int new_id(const std::string& name) {
    const int id = static_cast<int>(m_->initial_.size());
    ids_[name] = id;
    m_->initial_.emplace_back();
    return id;
  }

  // The value of `id` when it is known before the graph runs (an initializer or a Constant).
  const Tensor* constant(int id) const {
    if (id < 0 || static_cast<size_t>(id) >= m_->initial_.size()) return nullptr;
    const Tensor& t = m_->initial_[static_cast<size_t>(id)];
    return t.defined() ? &t : nullptr;
  }

  const OnnxModelOptions& o_;
  const std::string where_;
  std::shared_ptr<OnnxModel> m_;
  std::map<std::string, int> ids_;
  std::set<std::string> init_names_;
};

std::shared_ptr<OnnxModel> load_onnx_model(const std::string& path, const OnnxModelOptions& o) {
  onnx_internal::Loader loader(path, o);
  const onnx::ModelProto model = loader.read(path);
  const onnx::GraphProto& g = model.graph();
  loader.add_initializers(g);
  loader.bind_input(g);
  loader.add_nodes(g);
  loader.bind_output(g);
  loader.plan_lifetimes();
  loader.dry_run(g);
  return loader.finish();
}

Tensor OnnxModel::forward(const Tensor& x_in) {
  TANDEM_CHECK_SHAPE(
      x_in.dim() == 4 && (channels_ <= 0 || (x_in.size(1) == channels_ && x_in.size(2) == height_ &&
                                             x_in.size(3) == width_)),
      file_, ": expected input [N, ", channels_, ", ", height_, ", ", width_, "], got ",
      shape_str(x_in.shape()));
  Tensor x = x_in;
  if (layout_ == Layout::kNHWC) x = x.permute({0, 2, 3, 1}).contiguous();
  if (layout_ == Layout::kFlat) x = x.reshape({x.size(0), -1});
  std::vector<Tensor> values = initial_;
  values[static_cast<size_t>(input_id_)] = x;
  onnx_internal::RunState st{values, training_, bn_counters_, unscoped_dropout_calls_};
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Step& s = steps_[i];
    try {
      onnx_internal::run_step(s, st);
    } catch (const std::exception& e) {
      rethrow_with(e, "node '" + s.name + "' (" + s.op + "): ");
    }
    for (int id : release_after_[i]) values[static_cast<size_t>(id)] = Tensor();
  }
  Tensor out = values[static_cast<size_t>(output_id_)];
  TANDEM_CHECK(out.defined(), file_, ": the graph output has no value");
  return out;
}

}  // namespace tandem
