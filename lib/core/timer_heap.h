// TimerHeap: asyncio's _scheduled heap of TimerHandles, ordered by (deadline, scheduling
// order). Cancellation is lazy, as in asyncio: a cancelled handle stays in the heap until
// it reaches the top or until more than half of a heap of over 100 is cancelled, when the
// heap is rebuilt without them (_MIN_SCHEDULED_TIMER_HANDLES,
// _MIN_CANCELLED_TIMER_HANDLES_FRACTION).
#pragma once

#include <algorithm>
#include <vector>

#include "handle.h"

namespace aiol {

class TimerHeap {
public:
    static bool later(const Handle *a, const Handle *b) {
        return a->when != b->when ? a->when > b->when : a->seq > b->seq;
    }
    bool empty() const { return heap_.empty(); }
    size_t size() const { return heap_.size(); }
    size_t cancelled() const { return cancelled_; }
    // Room for one more push, so push() cannot throw. Grows geometrically: reserving
    // exactly size() + 1 would reallocate on every call_at (quadratic scheduling).
    void reserve_one() {
        if (heap_.size() == heap_.capacity()) heap_.reserve(heap_.empty() ? 64 : heap_.size() * 2);
    }
    void push(Handle *h) {
        heap_.push_back(h);
        std::push_heap(heap_.begin(), heap_.end(), later);
    }
    Handle *top() const { return heap_.front(); }
    Handle *pop() {
        std::pop_heap(heap_.begin(), heap_.end(), later);
        Handle *h = heap_.back();
        heap_.pop_back();
        if (h->state == Handle::kCancelled) cancelled_--;
        return h;
    }
    void note_cancelled() { cancelled_++; }
    bool should_purge() const { return heap_.size() > 100 && cancelled_ * 2 > heap_.size(); }
    // Removes every cancelled handle, passing each to drop (which releases the heap's ref).
    template <class F> void purge(F drop) {
        auto keep = std::partition(heap_.begin(), heap_.end(),
                                   [](Handle *h) { return h->state != Handle::kCancelled; });
        for (auto it = keep; it != heap_.end(); ++it) drop(*it);
        heap_.erase(keep, heap_.end());
        std::make_heap(heap_.begin(), heap_.end(), later);
        cancelled_ = 0;
    }
    template <class F> void clear(F drop) {
        for (Handle *h : heap_) drop(h);
        heap_.clear();
        cancelled_ = 0;
    }

private:
    std::vector<Handle *> heap_;
    size_t cancelled_ = 0;
};

}  // namespace aiol
