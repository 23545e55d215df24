// Reading derpd's /metrics (Prometheus text format) in integration tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/clock.h"

namespace derpd::testing {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct MetricSample {
  std::string name;
  Labels labels;
  double value = 0;
};

// Parses the sample lines of a Prometheus text exposition (comments and blank
// lines skipped). Malformed lines are an error naming the line.
absl::StatusOr<std::vector<MetricSample>> parsePrometheusText(std::string_view text);

// Sum of the samples named `name` whose labels include every pair in filter.
double sumMetric(const std::vector<MetricSample>& samples, std::string_view name,
                 const Labels& filter = {});
// Whether any sample is named `name`.
bool hasMetric(const std::vector<MetricSample>& samples, std::string_view name);

// GET /metrics from derpd on 127.0.0.1:port and parse it.
absl::StatusOr<std::vector<MetricSample>> scrapeMetrics(uint16_t port);
absl::StatusOr<double> scrapeMetric(uint16_t port, std::string_view name,
                                    const Labels& filter = {});

// Scrapes until sumMetric(name, filter) >= atLeast or the timeout passes;
// returns the last value seen (the caller checks it).
absl::StatusOr<double> waitForMetric(uint16_t port, std::string_view name, const Labels& filter,
                                     double atLeast, Nanos timeout);

}  // namespace derpd::testing
