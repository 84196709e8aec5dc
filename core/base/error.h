// Errors: typed exceptions for anything a user or a peer can cause (TANDEM_CHECK), aborts for our
// own bugs (TANDEM_ASSERT). Only launcher/main.cc turns an Error into an exit code.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tandem {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// One class per cause a caller might want to tell apart.
class ConfigError : public Error {
  using Error::Error;
};
class IoError : public Error {
  using Error::Error;
};
class ShapeError : public Error {
  using Error::Error;
};
class TypeError : public Error {
  using Error::Error;
};
class ValueError : public Error {
  using Error::Error;
};
class AutogradError : public Error {
  using Error::Error;
};
class CommError : public Error {
  using Error::Error;
};
class TimeoutError : public Error {
  using Error::Error;
};
class Unimplemented : public Error {
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
[[noreturn]] void assert_fail(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace detail

// Joins its arguments with operator<< into one string.
template <typename... Args>
std::string str(Args&&... args) {
  return detail::str_cat(std::forward<Args>(args)...);
}

}  // namespace tandem

// Throws ErrorType(message) when cond is false. Message parts are streamed together.
#define TANDEM_CHECK_T(ErrorType, cond, ...)                  \
  do {                                                        \
    if (!(cond)) throw ErrorType(::tandem::str(__VA_ARGS__)); \
  } while (0)
#define TANDEM_CHECK(cond, ...) TANDEM_CHECK_T(::tandem::ValueError, cond, __VA_ARGS__)
#define TANDEM_CHECK_SHAPE(cond, ...) TANDEM_CHECK_T(::tandem::ShapeError, cond, __VA_ARGS__)

// Aborts with file:line: a broken invariant of tandem itself, never bad input.
#define TANDEM_ASSERT(cond, ...)                                                            \
  do {                                                                                      \
    if (!(cond))                                                                            \
      ::tandem::detail::assert_fail(__FILE__, __LINE__, #cond, ::tandem::str(__VA_ARGS__)); \
  } while (0)
