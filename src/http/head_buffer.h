// HeadBuffer: the bytes of an HTTP/1.1 stream's heads, gathered read by read
// until one is complete, for a server's requests (next) or a client's response
// (bytes). Pure: no sockets, no allocation beyond its one vector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "http/request_parser.h"

namespace derpd::http {

class HeadBuffer {
 public:
  // Appends one read's bytes.
  void append(const uint8_t* data, size_t n);
  // The next request head. The parser reads a head from its start, so parsing
  // on every read would let a client that sends its head a few bytes at a time
  // cost O(n^2): this parses only once the blank line that ends a head has
  // arrived, the buffer is over kMaxRequestHead, or the first line is complete
  // (to refuse garbage early), and answers kNeedMore otherwise.
  ParseResult next();
  // Drops the first `head` bytes (the request just answered): what follows is
  // the next, pipelined request.
  void consume(size_t head);
  // Of the bytes the last append() added, how many lie in the first `head`
  // bytes: the rest followed the head in the same read (DERP bytes pipelined
  // behind an upgrade).
  size_t fromLastAppend(size_t head) const;
  // Frees the buffer (the HTTP phase is over).
  void release();

  std::span<const uint8_t> bytes() const { return buf_; }
  size_t size() const { return buf_.size(); }
  bool empty() const { return buf_.empty(); }
  // The memory it holds, for a pre-authentication budget.
  size_t capacity() const { return buf_.capacity(); }

 private:
  bool mayBeComplete();

  std::vector<uint8_t> buf_;
  size_t lastAppendAt_ = 0;  // where the last append's bytes start
  size_t scanFrom_ = 0;      // bytes already scanned for a blank line
  bool firstLineChecked_ = false;
};

}  // namespace derpd::http
