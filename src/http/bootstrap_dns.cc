#include "http/bootstrap_dns.h"

#include <algorithm>

namespace derpd::http {
namespace {

// Names come from the command line and addresses from inet_ntop, but a JSON
// string is escaped all the same.
void appendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
      // Go escapes these too (HTML-safe JSON).
      out.append("\\u00").append(1, kHex[c >> 4]).append(1, kHex[c & 15]);
    } else {
      out += ch;
    }
  }
  out += '"';
}

}  // namespace

std::string bootstrapDnsJson(std::vector<DnsAnswer> answers) {
  if (answers.empty()) return "{}";
  std::sort(answers.begin(), answers.end(),
            [](const DnsAnswer& a, const DnsAnswer& b) { return a.first < b.first; });
  std::string out = "{";
  for (size_t i = 0; i < answers.size(); i++) {
    out += i == 0 ? "\n\t" : ",\n\t";
    appendJsonString(out, answers[i].first);
    out += ": ";
    const std::vector<std::string>& ips = answers[i].second;
    if (ips.empty()) {
      out += "[]";
      continue;
    }
    out += "[";
    for (size_t j = 0; j < ips.size(); j++) {
      out += j == 0 ? "\n\t\t" : ",\n\t\t";
      appendJsonString(out, ips[j]);
    }
    out += "\n\t]";
  }
  out += "\n}";
  return out;
}

BootstrapDnsSnapshot BootstrapDnsSnapshot::build(const std::vector<DnsAnswer>& published,
                                                 const std::vector<RolloutAnswer>& unpublished) {
  BootstrapDnsSnapshot s;
  s.publishedJson = bootstrapDnsJson(published);
  for (const DnsAnswer& a : published) s.publishedNames.insert(a.first);
  for (const RolloutAnswer& r : unpublished) {
    if (r.answer.second.empty()) continue;
    s.unpublished[r.answer.first] = Unpublished{bootstrapDnsJson({r.answer}), r.share};
  }
  return s;
}

}  // namespace derpd::http
