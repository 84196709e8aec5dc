// The key table (defaults come from config.h's member initialisers; ranges and allowed values
// live here) and the small text helpers the parser and renderer share.
#include "configs/schema/schema.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>

namespace tandem::config_internal {

// Long: the table of every experiment key, one line (and its checks) per key.
Schema::Schema(ExperimentConfig& c) {
  add("seed", &c.seed).ge(0);

  add("model.name", enum_target(&c.model.name));
  add("model.onnx", &c.model.onnx).can_be_null();
  add("model.init_from", &c.model.init_from).can_be_null();
  add("model.hidden", &c.model.hidden).ge(1);
  add("model.num_classes", &c.model.num_classes).ge(2);

  add("data.name", enum_target(&c.data.name));
  add("data.path", &c.data.path).can_be_null();
  add("data.batch_size", &c.data.batch_size).ge(1);
  add("data.workers", &c.data.workers).ge(0);
  add("data.augment", &c.data.augment);
  add("data.normalize", &c.data.normalize);
  add("data.synthetic_shape", &c.data.synthetic_shape).ge(1).size(3, "[C, H, W]");
  add("data.synthetic_samples", &c.data.synthetic_samples).ge(1);
  add("data.image_size", &c.data.image_size).ge(8);
  add("data.validation_fraction", &c.data.validation_fraction).ge(0).lt(1);

  add("optimizer.name", enum_target(&c.optimizer.name));
  add("optimizer.lr", &c.optimizer.lr).gt(0);
  add("optimizer.weight_decay", &c.optimizer.weight_decay).ge(0);
  add("optimizer.momentum", &c.optimizer.momentum).ge(0).lt(1);
  add("optimizer.nesterov", &c.optimizer.nesterov);
  add("optimizer.betas", &c.optimizer.betas).ge(0).lt(1).size(2, "[beta1, beta2]");
  add("optimizer.eps", &c.optimizer.eps).gt(0);

  add("schedule.name", enum_target(&c.schedule.name));
  add("schedule.warmup_steps", &c.schedule.warmup_steps).ge(0);
  add("schedule.step_size", &c.schedule.step_size).ge(1);
  add("schedule.gamma", &c.schedule.gamma).gt(0);
  add("schedule.min_lr", &c.schedule.min_lr).ge(0);

  add("training.epochs", &c.training.epochs).ge(1);
  add("training.max_steps", &c.training.max_steps).ge(0);
  add("training.threads", &c.training.threads).ge(0);
  add("training.precision", enum_target(&c.training.precision));
  add("training.grad_clip", &c.training.grad_clip).ge(0);
  add("training.accumulate_steps", &c.training.accumulate_steps).ge(1);
  add("training.device", &c.training.device).check(check_device);
  add("training.max_nonfinite_steps", &c.training.max_nonfinite_steps).ge(1);
  add("training.eval_every_epoch", &c.training.eval_every_epoch);
  add("training.log_memory", &c.training.log_memory);
  add("training.early_stopping.metric", enum_target(&c.training.early_stopping.metric));
  add("training.early_stopping.patience", &c.training.early_stopping.patience).ge(0);
  add("training.early_stopping.min_delta", &c.training.early_stopping.min_delta).ge(0);

  add("strategy.name", enum_target(&c.strategy.name));
  add("strategy.replicas", &c.strategy.replicas).ge(1);
  add("strategy.backend", enum_target(&c.strategy.backend));
  // 64 GiB: a bucket past the whole model is one bucket; bytes = MiB x 2^20 stays far from 2^63.
  add("strategy.bucket_mb", &c.strategy.bucket_mb).gt(0).le(65536);
  add("strategy.first_bucket_mb", &c.strategy.first_bucket_mb).gt(0).le(65536);
  add("strategy.compression", enum_target(&c.strategy.compression));
  add("strategy.shard_optimizer", enum_target(&c.strategy.shard_optimizer));
  // 1 ms (the unit deadlines are kept in) to a week: seconds x 1000 is cast to int64 and added to
  // the clock.
  add("strategy.timeout_s", &c.strategy.timeout_s).ge(0.001).le(604800);
  add("strategy.debug_collectives", &c.strategy.debug_collectives);
  add("strategy.mode", enum_target(&c.strategy.mode));
  add("strategy.max_staleness", &c.strategy.max_staleness).ge(0);
  add("strategy.num_ps", &c.strategy.num_ps).ge(1);
  add("strategy.max_message_mb", &c.strategy.max_message_mb).gt(0).le(2047);

  add("checkpoint.dir", &c.checkpoint.dir).can_be_null();
  add("checkpoint.every_steps", &c.checkpoint.every_steps).ge(0);
  add("checkpoint.keep", &c.checkpoint.keep).ge(1);
  add("checkpoint.resume", resume_target(&c.checkpoint.resume)).check(check_not_empty);
  add("checkpoint.allow_config_change", &c.checkpoint.allow_config_change);
  add("checkpoint.keep_best", enum_target(&c.checkpoint.keep_best));

  add("logging.dir", &c.logging.dir).can_be_null();
  add("logging.every_steps", &c.logging.every_steps).ge(1);
  add("logging.tensorboard", &c.logging.tensorboard);
  add("logging.progress", enum_target(&c.logging.progress));
  add("logging.trace", &c.logging.trace);
  add("logging.trace_steps", &c.logging.trace_steps).ge(0).size(2, "[first, end]");

  add("cluster.slurm.partition", &c.cluster.slurm.partition).can_be_null();
  add("cluster.slurm.time", &c.cluster.slurm.time).check(check_slurm_time);
  add("cluster.slurm.account", &c.cluster.slurm.account).can_be_null();
  add("cluster.slurm.nodes", &c.cluster.slurm.nodes).ge(1);
  add("cluster.slurm.ntasks_per_node", &c.cluster.slurm.ntasks_per_node).ge(1);
  add("cluster.slurm.gpus_per_node", &c.cluster.slurm.gpus_per_node).ge(0);
  add("cluster.slurm.cpus_per_task", &c.cluster.slurm.cpus_per_task).ge(0);
  add("cluster.slurm.launcher", enum_target(&c.cluster.slurm.launcher));
  add("cluster.slurm.port", &c.cluster.slurm.port).ge(1).le(65535);

  add("cluster.kubernetes.image", &c.cluster.kubernetes.image).check(check_not_empty);
  add("cluster.kubernetes.namespace", &c.cluster.kubernetes.namespace_name).check(check_dns_label);
  add("cluster.kubernetes.nodes", &c.cluster.kubernetes.nodes).ge(1);
  add("cluster.kubernetes.gpus_per_node", &c.cluster.kubernetes.gpus_per_node).ge(0);
  add("cluster.kubernetes.nproc_per_node", &c.cluster.kubernetes.nproc_per_node).ge(0);
  add("cluster.kubernetes.backoff_limit", &c.cluster.kubernetes.backoff_limit).ge(0);
  add("cluster.kubernetes.port", &c.cluster.kubernetes.port).ge(1).le(65535);
  add("cluster.kubernetes.flavor", enum_target(&c.cluster.kubernetes.flavor));
  index();
}

EnumTarget resume_target(ResumeFrom* member) {
  EnumTarget t;
  t.get = [member] {
    return member->mode == ResumeMode::kPath ? member->path : std::string(to_string(member->mode));
  };
  t.set = [member](const std::string& text) {
    std::optional<ResumeMode> mode = enum_from_name<ResumeMode>(text);
    member->mode = mode.value_or(ResumeMode::kPath);
    member->path = mode ? "" : text;
    return true;
  };
  t.names = enum_names<ResumeMode>();
  return t;
}

Field& Schema::add(const std::string& path, Target target) {
  Field& f = fields_.emplace_back();
  f.path = path;
  f.target = target;
  return f;
}

// Derives the sections and each section's children, in table order.
void Schema::index() {
  sections_.insert("");
  for (size_t i = 0; i < fields_.size(); ++i) {
    const std::string& path = fields_[i].path;
    by_path_[path] = i;
    std::string parent;
    size_t start = 0;
    while (true) {
      size_t dot = path.find('.', start);
      std::string child = path.substr(0, dot);
      std::vector<std::string>& kids = children_[parent];
      std::string leaf = child.substr(parent.empty() ? 0 : parent.size() + 1);
      if (std::find(kids.begin(), kids.end(), leaf) == kids.end()) kids.push_back(leaf);
      if (dot == std::string::npos) break;
      sections_.insert(child);
      parent = child;
      start = dot + 1;
    }
  }
}

const Field* Schema::field(const std::string& path) const {
  auto it = by_path_.find(path);
  return it == by_path_.end() ? nullptr : &fields_[it->second];
}

const std::vector<std::string>& Schema::children(const std::string& section) const {
  static const std::vector<std::string> kNone;
  auto it = children_.find(section);
  return it == children_.end() ? kNone : it->second;
}

namespace {

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

std::string quoted_list(const std::vector<std::string>& items, const char* last_sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? last_sep : ", ";
    out += "'" + items[i] + "'";
  }
  return out;
}

}  // namespace

std::string Schema::unknown_key_message(const std::string& section, const std::string& name) const {
  const std::vector<std::string>& kids = children(section);
  const std::string key = lower(name);
  int best = INT_MAX;
  std::string best_key;
  for (const std::string& kid : kids) {
    int d = edit_distance(key, kid);
    if (d < best) best = d, best_key = kid;
  }
  // One edit per three characters, at least one and at most three: "lrr" -> "lr",
  // "optimiser" -> "optimizer", but "x" is not a typo of "lr".
  int limit = std::max(1, std::min(3, static_cast<int>(key.size()) / 3));
  if (best <= limit) return "unknown key; did you mean '" + best_key + "'?";

  // The right key in the wrong section: `lr` under training, `batch_size` at the top level;
  // exact matches first, else the closest within the same limit.
  std::vector<std::string> elsewhere;
  int closest = limit + 1;
  auto consider = [&](const std::string& path) {
    size_t dot = path.rfind('.');
    std::string parent = dot == std::string::npos ? "" : path.substr(0, dot);
    std::string leaf = dot == std::string::npos ? path : path.substr(dot + 1);
    if (path.empty() || parent == section) return;
    int d = edit_distance(key, leaf);
    if (d > limit) return;
    if (d < closest) closest = d, elsewhere.clear();
    if (d == closest) elsewhere.push_back(path);
  };
  for (const std::string& s : sections_) consider(s);
  for (const Field& f : fields_) consider(f.path);
  if (!elsewhere.empty())
    return "unknown key; did you mean " + quoted_list(elsewhere, " or ") + "?";

  std::string valid;
  for (const std::string& kid : kids) valid += (valid.empty() ? "" : ", ") + kid;
  return "unknown key; valid keys here: " + valid;
}

std::string join_path(const std::string& section, const std::string& key) {
  return section.empty() ? key : section + "." + key;
}

int edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::string format_number(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string text(buf, res.ptr);
  // YAML 1.1 readers (PyYAML) take "1e-08" for a string; "1.0e-08" is a float to every reader.
  size_t e = text.find('e');
  if (e != std::string::npos && text.find('.') == std::string::npos) text.insert(e, ".0");
  return text;
}

bool parse_int(const std::string& text, int64_t* out) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;
  if (begin == end || !(std::isdigit(static_cast<unsigned char>(*begin)) || *begin == '-'))
    return false;
  auto res = std::from_chars(begin, end, *out);
  return res.ec == std::errc() && res.ptr == end;
}

bool parse_float(const std::string& text, double* out) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;
  if (begin == end) return false;
  char first = begin[0] == '-' && begin + 1 != end ? begin[1] : begin[0];
  // Only decimal spellings: from_chars would also take "inf" and "nan".
  if (!std::isdigit(static_cast<unsigned char>(first)) && first != '.') return false;
  auto res = std::from_chars(begin, end, *out);
  return res.ec == std::errc() && res.ptr == end && std::isfinite(*out);
}

bool parse_bool(const std::string& text, bool* out) {
  // YAML 1.1's spellings, as yaml-cpp reads them: true/false, yes/no, on/off in three cases.
  static const char* kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const char* kFalse[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  for (const char* t : kTrue)
    if (text == t) return *out = true, true;
  for (const char* f : kFalse)
    if (text == f) return *out = false, true;
  return false;
}

std::string check_not_empty(const std::string& value) {
  return value.empty() ? "must not be empty" : "";
}

std::string check_device(const std::string& value) {
  if (value == "cpu" || value == "cuda") return "";
  int64_t index = 0;
  if (value.rfind("cuda:", 0) == 0 && parse_int(value.substr(5), &index) && index >= 0 &&
      value[5] != '+')
    return "";
  return "expected cpu, cuda or cuda:N, got '" + value + "'";
}

std::string check_slurm_time(const std::string& value) {
  const std::string bad = "expected HH:MM:SS or D-HH:MM:SS, got '" + value + "'";
  auto digits = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
      return std::isdigit(static_cast<unsigned char>(ch));
    });
  };
  std::string rest = value;
  int64_t days = 0;
  size_t dash = value.find('-');
  if (dash != std::string::npos) {
    std::string d = value.substr(0, dash);
    if (!digits(d) || d.size() > 4) return bad;
    days = std::stoll(d);
    rest = value.substr(dash + 1);
  }
  // HH:MM:SS: hours of any width without days (Slurm takes 100:00:00), below 24 with days.
  if (rest.size() < 7 || rest[rest.size() - 3] != ':' || rest[rest.size() - 6] != ':') return bad;
  std::string hh = rest.substr(0, rest.size() - 6), mm = rest.substr(rest.size() - 5, 2),
              ss = rest.substr(rest.size() - 2);
  if (!digits(hh) || hh.size() > 5 || !digits(mm) || !digits(ss)) return bad;
  int64_t h = std::stoll(hh), m = std::stoll(mm), s = std::stoll(ss);
  if (m >= 60 || s >= 60 || (dash != std::string::npos && h >= 24)) return bad;
  if (days == 0 && h == 0 && m == 0 && s == 0) return "must be longer than 00:00:00";
  return "";
}

std::string check_dns_label(const std::string& value) {
  bool ok = !value.empty() && value.size() <= 63 && value.front() != '-' && value.back() != '-';
  for (char ch : value)
    ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-');
  if (ok) return "";
  return "expected a DNS label (lowercase letters, digits and '-', at most 63 characters), got '" +
         value + "'";
}

}  // namespace tandem::config_internal
