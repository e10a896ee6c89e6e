// TimerHeap: asyncio's _scheduled heap of TimerHandles, ordered by (deadline, scheduling
// order). Entries carry their keys, so comparisons never touch the handles; each handle
// knows its slot (heap_index), so cancel removes it at once instead of leaving it for
// asyncio's lazy purge: cancelled timers cost no memory and no work at the top of the
// heap, which is what made schedule+cancel twice as slow as libuv's intrusive heap.
// Which timers run, and in what order, is the same as asyncio's.
#pragma once

#include <cstddef>
#include <vector>

#include "handle.h"

namespace aiol {

class TimerHeap {
public:
    struct Entry {
        uint64_t when, seq;
        Handle *h;
    };
    bool empty() const { return heap_.empty(); }
    size_t size() const { return heap_.size(); }
    // Room for one more, so push cannot fail after state changed; grows geometrically.
    void reserve_one() {
        if (heap_.size() == heap_.capacity()) grow();
    }
    void push(Handle *h) {
        heap_.push_back(Entry{h->when, h->seq, h});
        sift_up(heap_.size() - 1);
    }
    Handle *top() const { return heap_.front().h; }
    uint64_t top_when() const { return heap_.front().when; }
    Handle *pop() {
        Handle *h = heap_.front().h;
        remove_at(0);
        return h;
    }
    // Takes h (which must be in the heap) out; the caller owns the heap's reference.
    void remove(Handle *h) { remove_at(h->heap_index); }
    static bool contains(const Handle *h) { return h->heap_index != Handle::kNotInHeap; }

private:
    static bool earlier(const Entry &a, const Entry &b) {
        return a.when != b.when ? a.when < b.when : a.seq < b.seq;
    }
    void place(size_t i, const Entry &e) {
        heap_[i] = e;
        e.h->heap_index = (uint32_t)i;
    }
    void remove_at(size_t i) {
        heap_[i].h->heap_index = Handle::kNotInHeap;
        Entry last = heap_.back();
        heap_.pop_back();
        if (i == heap_.size()) return;  // it was the last slot
        if (i > 0 && earlier(last, heap_[(i - 1) / 2])) {
            heap_[i] = last;
            sift_up(i);
        } else {
            heap_[i] = last;
            sift_down(i);
        }
    }
    void sift_up(size_t i) {
        Entry e = heap_[i];
        while (i > 0) {
            size_t parent = (i - 1) / 2;
            if (!earlier(e, heap_[parent])) break;
            place(i, heap_[parent]);
            i = parent;
        }
        place(i, e);
    }
    void sift_down(size_t i) {
        Entry e = heap_[i];
        size_t n = heap_.size();
        for (;;) {
            size_t child = 2 * i + 1;
            if (child >= n) break;
            if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) child++;
            if (!earlier(heap_[child], e)) break;
            place(i, heap_[child]);
            i = child;
        }
        place(i, e);
    }
    __attribute__((noinline, cold)) void grow() {
        heap_.reserve(heap_.empty() ? 64 : 2 * heap_.size());
    }

    std::vector<Entry> heap_;
};

}  // namespace aiol
