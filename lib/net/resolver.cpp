#include "resolver.h"

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <thread>

#include "address.h"
#include "connect.h"

namespace aiol {

namespace {
constexpr int kMaxWorkers = 4;
}

struct Resolver::Shared {
    std::mutex mutex;
    Loop *loop = nullptr;             // NULL once detached
    std::deque<ResolveJob *> queue;   // waiting for a worker
    std::vector<ResolveJob *> done;   // resolved, waiting for the loop
    int workers = 0, idle = 0;
    bool posted = false;              // a cb_results is queued on the loop
    std::condition_variable cv;
};

Resolver::Resolver(Loop *loop) : NetObject(kRequest), loop_(loop), shared_(new Shared) {
    shared_->loop = loop;
}

Resolver *Resolver::of(Loop *loop) {
    NetObject *&slot = loop->resolver_slot();
    if (!slot) {
        auto *r = new Resolver(loop);
        loop->link(r);
        slot = r;
    }
    return static_cast<Resolver *>(slot);
}

ResolveJob *Resolver::submit(const std::string &host, uint16_t port, ConnectRequest *req) {
    auto *job = new ResolveJob{host, port, req};
    std::unique_lock<std::mutex> lock(shared_->mutex);
    shared_->queue.push_back(job);
    if (shared_->idle > 0) {
        shared_->cv.notify_one();
    } else if (shared_->workers < kMaxWorkers) {
        shared_->workers++;
        try {
            std::thread(worker, shared_).detach();
        } catch (...) {
            shared_->workers--;
            shared_->queue.pop_back();
            delete job;
            throw;
        }
    }
    return job;
}

void Resolver::cancel(ResolveJob *job) {
    std::lock_guard<std::mutex> lock(shared_->mutex);
    job->req = nullptr;  // whoever holds it frees it
}

void Resolver::worker(std::shared_ptr<Shared> s) {
    std::unique_lock<std::mutex> lock(s->mutex);
    for (;;) {
        if (s->queue.empty()) {  // linger a little for a burst, then exit
            s->idle++;
            bool got = s->cv.wait_for(lock, std::chrono::seconds(2), [&] { return !s->queue.empty(); });
            s->idle--;
            if (!got) break;
        }
        ResolveJob *job = s->queue.front();
        s->queue.pop_front();
        if (!job->req || !s->loop) {  // cancelled while queued
            delete job;
            continue;
        }
        lock.unlock();
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)job->port);
        int rc = getaddrinfo(job->host.c_str(), port, &hints, &job->res);
        job->status = gai_error(rc, errno);
        lock.lock();
        if (!s->loop) {  // the loop closed meanwhile
            if (job->res) freeaddrinfo(job->res);
            delete job;
            continue;
        }
        s->done.push_back(job);
        if (!s->posted) {
            s->posted = true;
            if (s->loop->call_soon_threadsafe(cb_results, s.get(), nullptr) < 0) s->posted = false;
        }
    }
    s->workers--;
}

void Resolver::cb_results(aiol_loop *, void *p) {
    auto *s = static_cast<Shared *>(p);
    std::vector<ResolveJob *> done;
    {
        std::lock_guard<std::mutex> lock(s->mutex);
        done.swap(s->done);
        s->posted = false;
    }
    for (ResolveJob *job : done) {
        if (job->req) job->req->on_resolved(job->status, job->res);
        if (job->res) freeaddrinfo(job->res);
        delete job;
    }
}

void Resolver::on_loop_close() {
    {
        std::lock_guard<std::mutex> lock(shared_->mutex);
        shared_->loop = nullptr;
        for (ResolveJob *job : shared_->done) {
            if (job->res) freeaddrinfo(job->res);
            delete job;
        }
        shared_->done.clear();
        for (ResolveJob *job : shared_->queue) delete job;
        shared_->queue.clear();
        shared_->cv.notify_all();
    }
    loop_->unlink(this);
    loop_->resolver_slot() = nullptr;
    delete this;
}

}  // namespace aiol
