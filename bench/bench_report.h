// What derp-bench prints: one JSON line per measured row (stdout, as soon as
// the row is measured) and, at the end, the same rows as a readable table
// (stderr) and optionally as markdown (a file). Also the progress line on
// stderr. Used from the harness's main thread only.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace derpd::bench {

inline std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline std::string format(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

// "12.3k", "1.20M": packet and handshake rates in table cells.
inline std::string compact(double v) {
  if (v >= 1e6) return format("%.2fM", v / 1e6);
  if (v >= 1e4) return format("%.1fk", v / 1e3);
  return format("%.0f", v);
}

// One flat JSON object, keys in insertion order.
class JsonLine {
 public:
  JsonLine& add(std::string_view key, double v, int precision = 2) {
    return raw(key, format("%.*f", precision, v));
  }
  JsonLine& add(std::string_view key, int64_t v) { return raw(key, std::to_string(v)); }
  JsonLine& add(std::string_view key, uint64_t v) { return raw(key, std::to_string(v)); }
  JsonLine& add(std::string_view key, int v) { return raw(key, std::to_string(v)); }
  JsonLine& add(std::string_view key, bool v) { return raw(key, v ? "true" : "false"); }
  JsonLine& add(std::string_view key, std::string_view v) { return raw(key, quote(v)); }
  JsonLine& add(std::string_view key, const char* v) { return add(key, std::string_view(v)); }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  JsonLine& raw(std::string_view key, const std::string& value) {
    if (!body_.empty()) body_ += ",";
    body_ += quote(key) + ":" + value;
    return *this;
  }
  static std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      if (static_cast<unsigned char>(c) < 0x20) {
        out += format("\\u%04x", c);
        continue;
      }
      out += c;
    }
    return out + "\"";
  }
  std::string body_;
};

// One row of the readable table.
struct TableRow {
  std::string scenario;
  std::string what;        // parameters: mode, size, pairs, offered rate, ...
  std::string result;      // the headline figures
  std::string latency;     // p50/p99/p999 in us, or empty
  std::string serverCpu;   // "%" of one core, or empty
  std::string genCpu;      // "%" of one core, or empty
  std::string ratio;       // efficiency and the other ratios
  std::string note;        // GENERATOR SATURATED, skipped because ..., errors
};

class Report {
 public:
  // Prints the JSON line now and keeps the row for the table.
  void add(const JsonLine& json, TableRow row) {
    std::printf("%s\n", json.str().c_str());
    std::fflush(stdout);
    rows_.push_back(std::move(row));
  }
  void fail() { failed_ = true; }
  bool failed() const { return failed_; }

  void printTable(FILE* out) const {
    const std::vector<std::vector<std::string>> cells = table();
    std::vector<size_t> width(kColumns, 0);
    for (auto& r : cells) {
      for (size_t i = 0; i < kColumns; i++) width[i] = std::max(width[i], r[i].size());
    }
    for (size_t n = 0; n < cells.size(); n++) {
      std::string line;
      for (size_t i = 0; i < kColumns; i++) {
        line += cells[n][i] + std::string(width[i] - cells[n][i].size() + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      std::fprintf(out, "%s\n", line.c_str());
      if (n == 0) {
        std::string rule;
        for (size_t i = 0; i < kColumns; i++) {
          if (i > 0) rule += "  ";
          rule.append(width[i], '-');
        }
        std::fprintf(out, "%s\n", rule.c_str());
      }
    }
  }
  void printMarkdown(FILE* out) const {
    const std::vector<std::vector<std::string>> cells = table();
    for (size_t n = 0; n < cells.size(); n++) {
      std::string line = "|";
      for (auto& c : cells[n]) line += " " + c + " |";
      std::fprintf(out, "%s\n", line.c_str());
      if (n == 0) {
        std::fprintf(out, "|");
        for (size_t i = 0; i < kColumns; i++) std::fprintf(out, "---|");
        std::fprintf(out, "\n");
      }
    }
  }

 private:
  static constexpr size_t kColumns = 8;
  std::vector<std::vector<std::string>> table() const {
    std::vector<std::vector<std::string>> out;
    out.push_back({"scenario", "case", "result", "latency p50/p99/p999 us", "server CPU",
                   "gen CPU", "ratios", "note"});
    for (auto& r : rows_) {
      out.push_back({r.scenario, r.what, r.result, r.latency, r.serverCpu, r.genCpu, r.ratio,
                     r.note});
    }
    return out;
  }
  std::vector<TableRow> rows_;
  bool failed_ = false;
};

// The progress line on stderr: rewritten in place on a terminal, one line per
// step otherwise (meson's test log).
class Progress {
 public:
  Progress() : start_(std::chrono::steady_clock::now()), tty_(isatty(STDERR_FILENO) == 1) {}
  void show(const std::string& what) {
    const double t =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (tty_) std::fprintf(stderr, "\r\033[K[%6.1fs] %s", t, what.c_str());
    else std::fprintf(stderr, "[%6.1fs] %s\n", t, what.c_str());
    std::fflush(stderr);
  }
  // Ends the in-place line before other output.
  void clear() {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
  bool tty_;
};

}  // namespace derpd::bench
