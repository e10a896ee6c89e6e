// Resolver: getaddrinfo on a few worker threads, off the loop thread (asyncio's
// run_in_executor(getaddrinfo)). Results come back through call_soon_threadsafe. At loop
// close the resolver detaches: workers still inside getaddrinfo finish, find no loop and
// free their job; nothing touches the loop after detach() returns.
#pragma once

#include <netdb.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/loop.h"

namespace aiol {

struct ConnectRequest;

struct ResolveJob {
    std::string host;
    uint16_t port;
    ConnectRequest *req;  // NULL once cancelled
    int status = 0;
    addrinfo *res = nullptr;
};

class Resolver final : public NetObject {
public:
    static Resolver *of(Loop *loop);  // the loop's resolver, made on first use
    ResolveJob *submit(const std::string &host, uint16_t port, ConnectRequest *req);
    void cancel(ResolveJob *job);  // loop thread; the job is freed by whoever holds it
    void on_loop_close() override;

private:
    struct Shared;  // what the workers share with the loop, outliving it
    explicit Resolver(Loop *loop);
    static void cb_results(aiol_loop *, void *shared);
    static void worker(std::shared_ptr<Shared> shared);
    Loop *loop_;
    std::shared_ptr<Shared> shared_;
};

}  // namespace aiol
