#include "integration/metrics_text.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "integration/test_net.h"

namespace derpd::testing {
namespace {

constexpr Nanos kScrapeInterval = 20 * kMillisecond;

absl::Status badLine(std::string_view line, std::string_view why) {
  return absl::DataLossError(
      absl::StrCat("bad metrics line (", std::string(why), "): ", std::string(line)));
}

bool isNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == ':';
}

absl::StatusOr<MetricSample> parseLine(std::string_view line) {
  MetricSample s;
  size_t i = 0;
  while (i < line.size() && isNameChar(line[i])) ++i;
  if (i == 0) return badLine(line, "no name");
  s.name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    for (;;) {
      while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      size_t start = i;
      while (i < line.size() && isNameChar(line[i])) ++i;
      std::string key(line.substr(start, i - start));
      if (key.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
        return badLine(line, "label");
      }
      i += 2;
      std::string value;
      while (i < line.size() && line[i] != '"') {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          value.push_back(line[i] == 'n' ? '\n' : line[i]);
        } else {
          value.push_back(line[i]);
        }
        ++i;
      }
      if (i >= line.size()) return badLine(line, "unterminated label value");
      ++i;
      s.labels.emplace_back(std::move(key), std::move(value));
    }
  }
  while (i < line.size() && line[i] == ' ') ++i;
  size_t end = line.find(' ', i);  // an optional timestamp follows the value
  std::string valueText(line.substr(i, end == std::string_view::npos ? end : end - i));
  if (valueText.empty()) return badLine(line, "no value");
  char* stop = nullptr;
  s.value = std::strtod(valueText.c_str(), &stop);
  if (stop == nullptr || *stop != '\0') return badLine(line, "value");
  return s;
}

}  // namespace

absl::StatusOr<std::vector<MetricSample>> parsePrometheusText(std::string_view text) {
  std::vector<MetricSample> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    absl::StatusOr<MetricSample> s = parseLine(line);
    if (!s.ok()) return s.status();
    out.push_back(*std::move(s));
  }
  return out;
}

double sumMetric(const std::vector<MetricSample>& samples, std::string_view name,
                 const Labels& filter) {
  double sum = 0;
  for (const MetricSample& s : samples) {
    if (s.name != name) continue;
    bool match = std::all_of(filter.begin(), filter.end(), [&](const auto& want) {
      return std::find(s.labels.begin(), s.labels.end(), want) != s.labels.end();
    });
    if (match) sum += s.value;
  }
  return sum;
}

bool hasMetric(const std::vector<MetricSample>& samples, std::string_view name) {
  return std::any_of(samples.begin(), samples.end(),
                     [&](const MetricSample& s) { return s.name == name; });
}

absl::StatusOr<std::vector<MetricSample>> scrapeMetrics(uint16_t port) {
  absl::StatusOr<HttpResponse> r = httpGet(port, "/metrics");
  if (!r.ok())
    return absl::Status(r.status().code(), absl::StrCat("GET /metrics: ", r.status().message()));
  if (r->status != 200) {
    return absl::FailedPreconditionError(absl::StrCat("GET /metrics: ", r->statusLine));
  }
  return parsePrometheusText(r->body);
}

absl::StatusOr<double> scrapeMetric(uint16_t port, std::string_view name, const Labels& filter) {
  absl::StatusOr<std::vector<MetricSample>> samples = scrapeMetrics(port);
  if (!samples.ok()) return samples.status();
  return sumMetric(*samples, name, filter);
}

absl::StatusOr<double> waitForMetric(uint16_t port, std::string_view name, const Labels& filter,
                                     double atLeast, Nanos timeout) {
  RealClock clock;
  Nanos deadline = clock.now() + timeout;
  for (;;) {
    absl::StatusOr<double> v = scrapeMetric(port, name, filter);
    if (!v.ok() || *v >= atLeast || clock.now() >= deadline) return v;
    ::usleep(kScrapeInterval / kMicrosecond);
  }
}

}  // namespace derpd::testing
