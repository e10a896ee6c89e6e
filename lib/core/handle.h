// Handle: asyncio's events.Handle / TimerHandle — a callback scheduled on the loop.
//
// Two references keep it: the loop's, until it ran or was cancelled, and the caller's, if
// the caller asked for the handle (dropped by aiol_handle_release, from any thread).
#pragma once

#include <atomic>
#include <cstdint>

#include "aioloop.h"

namespace aiol {

class Loop;

struct Handle {
    enum State : uint8_t { kPending, kRunning, kDone, kCancelled };

    aiol_callback cb = nullptr;
    void *ud = nullptr;
    aiol_destroy_fn destroy = nullptr;
    Loop *loop = nullptr;
    uint64_t when = 0;  // deadline (timers); 0 for call_soon
    uint64_t seq = 0;   // scheduling order, breaks deadline ties
    std::atomic<uint32_t> refs{1};
    State state = kPending;
    bool timer = false;
    // Set for a handle that stands for a request rather than a scheduled callback
    // (aiol_loop_connect): cancel calls the hook instead of dropping a queued callback.
    void (*cancel_hook)(void *owner) = nullptr;
    void *owner = nullptr;

    // Drops one reference; the last one frees the memory (any thread).
    void unref() {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
    virtual ~Handle() = default;
};

}  // namespace aiol

struct aiol_handle final : aiol::Handle {};
