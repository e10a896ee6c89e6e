// Ring: a growable FIFO in one power-of-two array (asyncio's _ready deque). Steady-state
// pushes and pops never allocate.
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>

namespace aiol {

template <class T> class Ring {
    static_assert(std::is_trivially_copyable<T>::value, "items are moved with memcpy");

public:
    Ring() = default;
    Ring(const Ring &) = delete;
    Ring &operator=(const Ring &) = delete;
    ~Ring() { ::operator delete(buf_); }

    size_t size() const { return tail_ - head_; }
    bool empty() const { return head_ == tail_; }

    // Room for one more item; false if memory ran out. Call before changing any state, so
    // that push_slot() itself cannot fail. The growth path is out of line: the check is
    // all that call_soon pays.
    bool try_reserve_one() noexcept { return size() < cap_ || grow(); }
    void reserve_one() {
        if (!try_reserve_one()) throw std::bad_alloc();
    }
    void push(const T &v) {
        reserve_one();
        push_slot() = v;
    }
    // The next slot, filled in place by the caller (after reserve_one()).
    T &push_slot() { return buf_[tail_++ & (cap_ - 1)]; }
    T pop() { return buf_[head_++ & (cap_ - 1)]; }

private:
    __attribute__((noinline, cold)) bool grow() noexcept {
        size_t cap = cap_ ? cap_ * 2 : 64, n = size();
        T *items = static_cast<T *>(::operator new(cap * sizeof(T), std::nothrow));
        if (!items) return false;
        // The live items as at most two runs: [head, end of array) and [0, tail).
        size_t h = cap_ ? head_ & (cap_ - 1) : 0, first = n < cap_ - h ? n : cap_ - h;
        if (n) {
            std::memcpy(items, buf_ + h, first * sizeof(T));
            std::memcpy(items + first, buf_, (n - first) * sizeof(T));
        }
        ::operator delete(buf_);
        buf_ = items;
        cap_ = cap;
        head_ = 0;
        tail_ = n;
        return true;
    }

    T *buf_ = nullptr;
    size_t cap_ = 0, head_ = 0, tail_ = 0;
};

}  // namespace aiol
