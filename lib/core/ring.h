// Ring: a growable FIFO in one power-of-two array (asyncio's _ready deque). Steady-state
// pushes and pops never allocate.
#pragma once

#include <cstddef>
#include <memory>

namespace aiol {

template <class T> class Ring {
public:
    size_t size() const { return tail_ - head_; }
    bool empty() const { return head_ == tail_; }

    // Reserves room for one more item; may throw std::bad_alloc. Call before changing any
    // state, so that push() itself cannot fail.
    void reserve_one() {
        if (size() < cap_) return;
        size_t cap = cap_ ? cap_ * 2 : 64;
        std::unique_ptr<T[]> items(new T[cap]);
        for (size_t i = 0; i < size(); i++) items[i] = buf_[(head_ + i) & (cap_ - 1)];
        tail_ = size();
        head_ = 0;
        buf_ = std::move(items);
        cap_ = cap;
    }
    void push(const T &v) {
        reserve_one();
        buf_[tail_++ & (cap_ - 1)] = v;
    }
    // The next slot, filled in place by the caller (after reserve_one()).
    T &push_slot() { return buf_[tail_++ & (cap_ - 1)]; }
    T &front() { return buf_[head_ & (cap_ - 1)]; }
    T pop() { return buf_[head_++ & (cap_ - 1)]; }
    T &at(size_t i) { return buf_[(head_ + i) & (cap_ - 1)]; }

private:
    std::unique_ptr<T[]> buf_;
    size_t cap_ = 0, head_ = 0, tail_ = 0;
};

}  // namespace aiol
