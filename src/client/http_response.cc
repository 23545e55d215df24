#include "client/http_response.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace derpd::client {
namespace {

constexpr size_t kMaxHead = 64 * 1024;
constexpr size_t kMaxChunkLine = 1024;

absl::Status malformed(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("malformed HTTP response: ", what));
}

bool parsePort(absl::string_view text, uint16_t* port) {
  uint32_t v = 0;
  if (text.empty() || text.size() > 5 || !absl::SimpleAtoi(text, &v) || v == 0 || v > 65535) {
    return false;
  }
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  *port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

std::string HttpUrl::hostHeader() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string out = ipv6 ? absl::StrCat("[", host, "]") : host;
  if (port != (tls ? 443 : 80)) absl::StrAppend(&out, ":", port);
  return out;
}

absl::StatusOr<HttpUrl> parseHttpUrl(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("URL \"", url, "\": ", why));
  };
  HttpUrl out;
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "https://")) {
    out.tls = true;
  } else if (!absl::ConsumePrefix(&rest, "http://")) {
    return bad("not http:// or https://");
  }
  if (rest.find('#') != absl::string_view::npos) return bad("has a fragment");
  size_t slash = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, slash);
  const absl::string_view target = slash == absl::string_view::npos ? "/" : rest.substr(slash);
  out.target = target[0] == '?' ? absl::StrCat("/", target) : std::string(target);
  for (char c : out.target) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return bad("has a space or control");
  }
  if (authority.find('@') != absl::string_view::npos) return bad("has user info");
  absl::string_view portText;
  if (absl::ConsumePrefix(&authority, "[")) {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("unclosed [");
    out.host = std::string(authority.substr(0, close));
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":")) return bad("junk after ]");
    portText = after;
    if (out.host.find(':') == std::string::npos) return bad("[...] is not an IPv6 address");
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) portText = authority.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return bad("IPv6 address without [ ]");
  }
  if (out.host.empty()) return bad("no host");
  for (char c : out.host) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (!absl::ascii_isalnum(u) && c != '.' && c != '-' && c != ':' && c != '_' && c != '%') {
      return bad("host has a character a host name cannot");
    }
  }
  out.port = out.tls ? 443 : 80;
  if (!portText.empty() && !parsePort(portText, &out.port)) return bad("bad port");
  return out;
}

const std::string* HttpResponse::header(absl::string_view lowerName) const {
  for (const auto& [name, value] : headers) {
    if (name == lowerName) return &value;
  }
  return nullptr;
}

std::vector<std::string> HttpResponse::headerValues(absl::string_view lowerName) const {
  std::vector<std::string> out;
  for (const auto& [name, value] : headers) {
    if (name == lowerName) out.push_back(value);
  }
  return out;
}

absl::Status HttpResponseParser::parseHead(absl::string_view head) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  absl::string_view status = lines[0];
  if (!absl::ConsumePrefix(&status, "HTTP/1.1 ") && !absl::ConsumePrefix(&status, "HTTP/1.0 ")) {
    return malformed("no HTTP/1.x status line");
  }
  int code = 0;
  if (status.size() < 3 || (status.size() > 3 && status[3] != ' ') ||
      !absl::SimpleAtoi(status.substr(0, 3), &code) || code < 100) {
    return malformed("bad status code");
  }
  HttpResponse r;
  r.status = code;
  bool chunked = false;
  bool haveLength = false;
  uint64_t length = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line.empty()) continue;
    if (line[0] == ' ' || line[0] == '\t') return malformed("folded header line");
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos || colon == 0) return malformed("header without a name");
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    for (char c : name) {
      if (static_cast<unsigned char>(c) <= ' ') return malformed("space in a header name");
    }
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    if (name == "transfer-encoding") {
      // Only chunked is spoken; it must be the last coding.
      if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(value), "chunked")) {
        return malformed(absl::StrCat("unsupported Transfer-Encoding \"", value, "\""));
      }
      chunked = true;
    } else if (name == "content-length") {
      uint64_t v = 0;
      bool digits = !value.empty() && value.size() <= 19;
      for (char c : value) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
      if (!digits || !absl::SimpleAtoi(value, &v) || (haveLength && v != length)) {
        return malformed("bad Content-Length");
      }
      haveLength = true;
      length = v;
    }
    r.headers.emplace_back(std::move(name), std::move(value));
  }
  if (code < 200) {
    // An interim response (100 Continue, 103 Early Hints): the real one follows.
    return absl::OkStatus();
  }
  response_ = std::move(r);
  if (headRequest_ || code == 204 || code == 304) {
    state_ = State::kDone;
  } else if (chunked) {
    state_ = State::kChunkSize;
  } else if (haveLength) {
    if (length > maxBody_ && !truncate_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("HTTP response body of ", length, " bytes is over the limit of ", maxBody_));
    }
    remaining_ = length;
    state_ = length == 0 ? State::kDone : State::kLength;
  } else {
    state_ = State::kToClose;
  }
  return absl::OkStatus();
}

absl::Status HttpResponseParser::step(bool* progressed) {
  *progressed = false;
  auto appendBody = [&](absl::string_view bytes) -> absl::Status {
    if (response_.body.size() + bytes.size() > maxBody_ && !truncate_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("HTTP response body over the limit of ", maxBody_, " bytes"));
    }
    response_.body.append(bytes.data(), bytes.size());
    return absl::OkStatus();
  };
  switch (state_) {
    case State::kHead: {
      size_t end = pending_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (pending_.size() > kMaxHead) return malformed("head over 64 KiB");
        return absl::OkStatus();
      }
      if (end > kMaxHead) return malformed("head over 64 KiB");
      std::string head = pending_.substr(0, end);
      pending_.erase(0, end + 4);
      *progressed = true;
      return parseHead(head);
    }
    case State::kLength: {
      size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, pending_.size()));
      if (take == 0) return absl::OkStatus();
      response_.body.append(pending_, 0, take);
      pending_.erase(0, take);
      remaining_ -= take;
      if (remaining_ == 0) state_ = State::kDone;
      *progressed = true;
      return absl::OkStatus();
    }
    case State::kChunkSize:
    case State::kChunkEnd:
    case State::kTrailers: {
      size_t eol = pending_.find("\r\n");
      if (eol == std::string::npos) {
        if (pending_.size() > kMaxChunkLine) return malformed("chunk line over 1 KiB");
        return absl::OkStatus();
      }
      absl::string_view line(pending_.data(), eol);
      *progressed = true;
      if (state_ == State::kChunkEnd) {
        if (!line.empty()) return malformed("chunk data longer than its size");
        state_ = State::kChunkSize;
      } else if (state_ == State::kTrailers) {
        if (line.empty()) state_ = State::kDone;  // trailers are read and dropped
      } else {
        absl::string_view size = line.substr(0, line.find(';'));
        size = absl::StripTrailingAsciiWhitespace(size);
        uint64_t n = 0;
        if (size.empty() || size.size() > 15) return malformed("bad chunk size");
        for (char c : size) {
          if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
            return malformed("bad chunk size");
          }
          n = n * 16 + static_cast<uint64_t>(absl::ascii_isdigit(static_cast<unsigned char>(c))
                                                 ? c - '0'
                                                 : absl::ascii_tolower(c) - 'a' + 10);
        }
        if (response_.body.size() + n > maxBody_ && !truncate_) {
          return absl::ResourceExhaustedError(
              absl::StrCat("HTTP response body over the limit of ", maxBody_, " bytes"));
        }
        remaining_ = n;
        state_ = n == 0 ? State::kTrailers : State::kChunkData;
      }
      pending_.erase(0, eol + 2);
      return absl::OkStatus();
    }
    case State::kChunkData: {
      size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, pending_.size()));
      if (take == 0) return absl::OkStatus();
      if (absl::Status st = appendBody(absl::string_view(pending_.data(), take)); !st.ok()) {
        return st;
      }
      pending_.erase(0, take);
      remaining_ -= take;
      if (remaining_ == 0) state_ = State::kChunkEnd;
      *progressed = true;
      return absl::OkStatus();
    }
    case State::kToClose: {
      if (pending_.empty()) return absl::OkStatus();
      if (absl::Status st = appendBody(pending_); !st.ok()) return st;
      pending_.clear();
      *progressed = true;
      return absl::OkStatus();
    }
    case State::kDone:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status HttpResponseParser::feed(absl::string_view bytes) {
  if (state_ == State::kDone) return absl::OkStatus();  // bytes after the response: ignored
  pending_.append(bytes.data(), bytes.size());
  for (bool progressed = true; progressed && state_ != State::kDone;) {
    if (absl::Status st = step(&progressed); !st.ok()) return st;
    // Truncating: done once the body has its fill (whatever may follow).
    const bool full = response_.body.size() > maxBody_ ||
                      (response_.body.size() == maxBody_ && state_ != State::kDone);
    if (truncate_ && state_ != State::kHead && full) {
      response_.truncated = true;
      response_.body.resize(maxBody_);
      state_ = State::kDone;
    }
  }
  return absl::OkStatus();
}

absl::Status HttpResponseParser::finish() {
  if (state_ == State::kToClose) state_ = State::kDone;
  if (state_ == State::kDone) return absl::OkStatus();
  return malformed(state_ == State::kHead ? "connection closed before the response head ended"
                                          : "connection closed before the body ended");
}

}  // namespace derpd::client
