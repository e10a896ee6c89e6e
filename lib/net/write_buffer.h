// WriteBuffer: the transport's queue of bytes the socket would not take yet (asyncio's
// bytearray _buffer). One contiguous block with a consumed prefix, so a queue is sent with
// one send(); it keeps its capacity, so a connection that queues now and then stops
// allocating after the first time.
#pragma once

#include <cstdlib>
#include <cstring>
#include <new>

#include "../sys/sys.h"

namespace aiol {

class WriteBuffer {
public:
    WriteBuffer() = default;
    WriteBuffer(const WriteBuffer &) = delete;
    WriteBuffer &operator=(const WriteBuffer &) = delete;
    ~WriteBuffer() { std::free(data_); }

    size_t size() const { return tail_ - head_; }
    bool empty() const { return head_ == tail_; }
    const unsigned char *data() const { return data_ + head_; }

    // Makes room for n more bytes; throws std::bad_alloc (nothing changed) on failure.
    void reserve(size_t n) {
        if (cap_ - tail_ >= n) return;
        size_t used = size();
        if (head_ > 0 && cap_ - used >= n && used <= cap_ / 2) {  // slide down, no malloc
            std::memmove(data_, data_ + head_, used);
        } else {
            size_t cap = cap_ ? cap_ : 4096;
            while (cap - used < n) {
                if (cap > SIZE_MAX / 2) throw std::bad_alloc();
                cap *= 2;
            }
            auto *p = static_cast<unsigned char *>(sys::malloc(cap));
            if (!p) throw std::bad_alloc();
            if (used) std::memcpy(p, data_ + head_, used);
            std::free(data_);
            data_ = p;
            cap_ = cap;
        }
        head_ = 0;
        tail_ = used;
    }
    void append(const void *p, size_t n) {
        reserve(n);
        std::memcpy(data_ + tail_, p, n);
        tail_ += n;
    }
    void consume(size_t n) {
        head_ += n;
        if (head_ == tail_) clear();
    }
    void clear() {
        head_ = tail_ = 0;
        if (cap_ > kKeep) {  // a burst's big block goes back to the allocator
            std::free(data_);
            data_ = nullptr;
            cap_ = 0;
        }
    }

private:
    static constexpr size_t kKeep = 256 * 1024;
    unsigned char *data_ = nullptr;
    size_t cap_ = 0, head_ = 0, tail_ = 0;
};

}  // namespace aiol
