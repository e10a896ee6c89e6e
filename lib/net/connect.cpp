// ConnectRequest: asyncio create_connection. See connect.h.
#include "connect.h"

#include <netdb.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "config.h"
#include "address.h"
#include "resolver.h"
#include "transport.h"
#if AIOL_HAVE_TLS
#include "../tls/tls.h"
#endif

namespace aiol {

ConnectRequest::ConnectRequest(Loop *loop, const aiol_connect_config &cfg,
                               const aiol_protocol &protocol, void *ud,
                               void (*done)(aiol_transport *, int, void *), void *done_ud)
    : NetObject(kRequest), loop_(loop), port_(cfg.port), timeout_ns_(cfg.timeout_ns),
      proto_(protocol), ud_(ud), done_(done), done_ud_(done_ud) {
    if (cfg.host) host_ = cfg.host;
    if (cfg.unix_path) unix_path_ = cfg.unix_path;
    watcher_.req = this;
#if AIOL_HAVE_TLS
    if (cfg.tls) {
        if (cfg.server_hostname) server_hostname_ = cfg.server_hostname;
        else if (cfg.host) server_hostname_ = cfg.host;
        tls_handshake_timeout_ns_ = cfg.tls_handshake_timeout_ns;
        tls_shutdown_timeout_ns_ = cfg.tls_shutdown_timeout_ns;
        tls_ = cfg.tls;
        tls_context_ref(tls_);
    }
#endif
}

ConnectRequest::~ConnectRequest() {
    if (fd_ >= 0) ::close(fd_);
#if AIOL_HAVE_TLS
    if (tls_) tls_context_unref(tls_);
#endif
}

void ConnectRequest::free_request(void *p) { delete static_cast<ConnectRequest *>(p); }

// Appends every address of res, in resolver order (the order they are tried in).
void ConnectRequest::add_addresses(const addrinfo *res) {
    for (const addrinfo *ai = res; ai; ai = ai->ai_next) {
        sockaddr_storage ss{};
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        addrs_.push_back(ss);
        addr_lens_.push_back(ai->ai_addrlen);
    }
}

void ConnectRequest::start(Handle **ret) {
    // Everything that can fail to allocate happens before anything is scheduled.
    if (!unix_path_.empty()) {
        sockaddr_storage ss{};
        auto *sun = reinterpret_cast<sockaddr_un *>(&ss);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, unix_path_.c_str(), unix_path_.size() + 1);
        addrs_.push_back(ss);
        addr_lens_.push_back(sizeof(sockaddr_un));
    } else {
        addrinfo hints{}, *res = nullptr;
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)port_);
        if (getaddrinfo(host_.c_str(), port, &hints, &res) == 0) {  // numeric: no resolver
            try {
                add_addresses(res);
            } catch (...) {
                freeaddrinfo(res);
                throw;
            }
            freeaddrinfo(res);
        }
    }
    Handle *h = nullptr;
    if (ret) {
        h = new aiol_handle();
        h->loop = loop_;
        h->cancel_hook = cancel_hook;
        h->owner = this;
        h->refs.store(2, std::memory_order_relaxed);  // the caller's and ours
    }
    try {
        if (timeout_ns_) {
            uint64_t now = Loop::now();
            uint64_t when = timeout_ns_ > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns_;
            loop_->call_at(when, cb_timeout, this, nullptr, &timeout_);
        }
        if (addrs_.empty()) {
            state_ = kResolving;
            job_ = Resolver::of(loop_)->submit(host_, port_, this);
        } else {
            state_ = kConnecting;
            loop_->call_soon(cb_start, this, nullptr, nullptr);  // never inside the call
        }
    } catch (...) {
        if (timeout_) {
            loop_->cancel(timeout_);
            timeout_->unref();
        }
        delete h;
        throw;
    }
    handle_ = h;
    if (ret) *ret = h;
    loop_->link(this);
    loop_->retain_alive();
}

void ConnectRequest::cb_start(aiol_loop *, void *p) {
    auto *r = static_cast<ConnectRequest *>(p);
    if (r->state_ == kConnecting && r->fd_ < 0) r->try_next();
}

void ConnectRequest::on_resolved(int status, const addrinfo *res) {
    job_ = nullptr;
    if (state_ != kResolving) return;
    if (status != 0) {
        finish(nullptr, status);
        return;
    }
    add_addresses(res);
    state_ = kConnecting;
    if (addrs_.empty()) finish(nullptr, AIOL_EAI_NONAME);
    else try_next();
}

void ConnectRequest::try_next() {
    while (next_ < addrs_.size()) {
        size_t i = next_++;
        int fd = new_socket(addrs_[i].ss_family);
        if (fd < 0) {
            last_err_ = fd;
            continue;
        }
        if (connect(fd, reinterpret_cast<sockaddr *>(&addrs_[i]), addr_lens_[i]) == 0) {
            fd_ = fd;
            connected();
            return;
        }
        int err = errno;
        if (err == EINPROGRESS || err == EINTR) {
            if (int rc = loop_->watch(fd, &watcher_, kWritable); rc < 0) {
                ::close(fd);
                last_err_ = rc;
                continue;
            }
            fd_ = fd;
            return;
        }
        ::close(fd);
        last_err_ = -err;  // the status reported is the last address's error
    }
    finish(nullptr, last_err_);
}

void ConnectRequest::on_writable() {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    loop_->unwatch(fd_);
    if (err == 0) {
        connected();
        return;
    }
    ::close(fd_);
    fd_ = -1;
    last_err_ = -err;
    try_next();
}

void ConnectRequest::connected() {
    loop_->unwatch(fd_);
    auto *t = new (std::nothrow) aiol_transport(loop_, fd_, proto_, ud_, nullptr);
    if (t) {
        try {
#if AIOL_HAVE_TLS
            if (tls_)
                t->attach_tls(tls_layer_new(tls_, server_hostname_.c_str(),
                                            tls_handshake_timeout_ns_, tls_shutdown_timeout_ns_));
#endif
            t->start();
        } catch (...) {
            delete t;
            t = nullptr;
        }
    }
    if (!t) {
        finish(nullptr, AIOL_ENOMEM);
        return;
    }
    fd_ = -1;  // the transport owns it
    transport_ = t;
    t->set_connect_request(this);
    state_ = kMaking;  // done(t, 0) comes right after connection_made
}

void ConnectRequest::on_connection_made(SocketTransport *t) {
    transport_ = nullptr;
    finish(t, 0);
}

void ConnectRequest::on_handshake_failed(int err) {
    finish(nullptr, err);  // the transport (already closing) is abandoned: it destroys ud
}

// Stops whatever is in flight without reporting.
void ConnectRequest::stop_activity() {
    if (job_) {
        Resolver::of(loop_)->cancel(job_);
        job_ = nullptr;
    }
    if (fd_ >= 0) {
        loop_->unwatch(fd_);
        ::close(fd_);
        fd_ = -1;
    }
    if (timeout_) {
        loop_->cancel(timeout_);
        timeout_->unref();
        timeout_ = nullptr;
    }
}

void ConnectRequest::finish(SocketTransport *t, int status) {
    if (state_ == kDone) return;
    state_ = kDone;
    stop_activity();
    SocketTransport *abandoned = transport_;
    transport_ = nullptr;
    if (handle_) {
        if (handle_->state == Handle::kPending) handle_->state = Handle::kDone;
        handle_->unref();
        handle_ = nullptr;
    }
    if (done_)
        loop_->invoke([&] { done_(t ? static_cast<aiol_transport *>(t) : nullptr, status, done_ud_); },
                      (const void *)done_);
    if (abandoned) {
        // A transport made but not yet announced: it owns user_data now; its teardown
        // runs destroy (no connection_lost, since connection_made never ran).
        abandoned->set_connect_request(nullptr);
        abandoned->abandon();
    } else if (!t && !transport_owns_ud_) {
        loop_->defer_destroy(proto_.destroy, ud_);  // abandoned attempt: after done returns
    }
    loop_->unlink(this);
    loop_->release_alive();
    loop_->free_later(free_request, this);
}

void ConnectRequest::cb_timeout(aiol_loop *, void *p) {
    auto *r = static_cast<ConnectRequest *>(p);
    r->timeout_->unref();
    r->timeout_ = nullptr;
    r->finish(nullptr, AIOL_ETIMEDOUT);
}

void ConnectRequest::cancel_hook(void *p) {
    // Inside aiol_handle_cancel: stop now, report ECANCELED from the loop.
    auto *r = static_cast<ConnectRequest *>(p);
    r->stop_activity();
    r->state_ = kCancelling;
    r->cancel_status_ = AIOL_ECANCELED;
    r->loop_->call_soon_internal(cb_cancelled, r, nullptr);  // done first,
    if (SocketTransport *t = r->transport_) {                  // then the transport's destroy
        r->transport_ = nullptr;
        r->transport_owns_ud_ = true;
        t->set_connect_request(nullptr);
        t->abandon();
    }
}

void ConnectRequest::cb_cancelled(aiol_loop *, void *p) {
    auto *r = static_cast<ConnectRequest *>(p);
    r->finish(nullptr, r->cancel_status_);
}

void ConnectRequest::on_loop_close() {
    finish(nullptr, AIOL_ECANCELED);  // done runs inside aiol_loop_close
}

}  // namespace aiol
