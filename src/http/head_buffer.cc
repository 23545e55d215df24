#include "http/head_buffer.h"

#include <vector>

namespace derpd::http {

void HeadBuffer::append(const uint8_t* data, size_t n) {
  lastAppendAt_ = buf_.size();
  buf_.insert(buf_.end(), data, data + n);
}

bool HeadBuffer::mayBeComplete() {
  if (buf_.size() > kMaxRequestHead) return true;
  // Only the new bytes can hold the LF that ends a head or its first line
  // (the check below reads the bytes before an LF by index), so scanning them
  // would do; the three bytes of look-back cost nothing and keep it obvious.
  size_t from = scanFrom_ >= 3 ? scanFrom_ - 3 : 0;
  scanFrom_ = buf_.size();
  bool sawLf = false;
  for (size_t i = from; i < buf_.size(); i++) {
    if (buf_[i] != '\n') continue;
    sawLf = true;
    if ((i >= 1 && buf_[i - 1] == '\n') || (i >= 2 && buf_[i - 1] == '\r' && buf_[i - 2] == '\n')) {
      return true;
    }
  }
  if (!firstLineChecked_ && sawLf) {
    firstLineChecked_ = true;
    return true;
  }
  return false;
}

ParseResult HeadBuffer::next() {
  if (!mayBeComplete()) return ParseResult{ParseStatus::kNeedMore, {}};
  return parseRequest(buf_);
}

void HeadBuffer::consume(size_t head) {
  if (head > buf_.size()) head = buf_.size();
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(head));
  lastAppendAt_ = lastAppendAt_ > head ? lastAppendAt_ - head : 0;
  scanFrom_ = 0;  // what is left is a new head: scan it from its start
  firstLineChecked_ = false;
}

size_t HeadBuffer::fromLastAppend(size_t head) const {
  return head > lastAppendAt_ ? head - lastAppendAt_ : 0;
}

void HeadBuffer::release() {
  std::vector<uint8_t>().swap(buf_);
  lastAppendAt_ = 0;
  scanFrom_ = 0;
  firstLineChecked_ = false;
}

}  // namespace derpd::http
