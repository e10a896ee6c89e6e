// Server: asyncio's Server and the accept loop of BaseSelectorEventLoop. See server.h.
#include "server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "address.h"
#include "transport.h"
#include "../sys/sys.h"
#include "config.h"
#if AIOL_HAVE_TLS
#include "../tls/tls.h"
#endif

namespace aiol {

namespace {
constexpr uint64_t kAcceptRetryDelayNs = 1000000000ull;  // constants.ACCEPT_RETRY_DELAY
constexpr uint64_t kAcceptBriefDelayNs = 10000000ull;  // after a batch that filled the fd table
constexpr int kDefaultBacklog = 100;
}  // namespace

Server::Server(Loop *loop, const aiol_server_config &cfg, const aiol_protocol &protocol,
               aiol_protocol_factory factory, void *factory_data, aiol_destroy_fn factory_destroy)
    : NetObject(NetObject::kServer), loop_(loop), cfg_(cfg), proto_(protocol), factory_(factory),
      factory_data_(factory_data), factory_destroy_(factory_destroy) {
    if (cfg.host) host_ = cfg.host;
    if (cfg.unix_path) unix_path_ = cfg.unix_path;
    cfg_.host = nullptr;  // the copies above are what we use
    cfg_.unix_path = nullptr;
    if (cfg_.backlog <= 0) cfg_.backlog = kDefaultBacklog;
#if AIOL_HAVE_TLS
    if (cfg_.tls) tls_context_ref(cfg_.tls);
#else
    cfg_.tls = nullptr;
#endif
}

Server::~Server() {
#if AIOL_HAVE_TLS
    if (cfg_.tls) tls_context_unref(cfg_.tls);
#endif
    if (unlink_path_ && !closed_) unlink(unix_path_.c_str());  // failed start
    for (Listener *l : listeners_) {
        if (l->fd >= 0) ::close(l->fd);
        delete l;
    }
}

aiol_server *Server::self() { return static_cast<aiol_server *>(this); }

void Server::unref() {
    if (--refs_ > 0) return;
    if (linked_) loop_->unlink(this);
    if (factory_destroy_) loop_->defer_destroy(factory_destroy_, factory_data_);
    delete self();
}

bool Server::detached() const { return loop_ == nullptr; }

// ---- binding ------------------------------------------------------------------------------

// Owns fd from here (closed by close() or the destructor), unless adopted_flags >= 0 and
// the start fails (give_back_adopted).
void Server::add_listener(int fd, int adopted_flags) {
    listeners_.reserve(listeners_.size() + 1);  // push_back below cannot throw
    auto *l = new Listener();
    l->server = this;
    l->fd = fd;
    l->adopted_flags = adopted_flags;
    l->addr_len = sizeof l->addr;
    getsockname(fd, reinterpret_cast<sockaddr *>(&l->addr), &l->addr_len);
    listeners_.push_back(l);
}

int Server::listen_on(int fd) {
    try {
        add_listener(fd, -1);
    } catch (...) {
        ::close(fd);  // not ours yet: nobody else would close it
        throw;
    }
    if (listen(fd, cfg_.backlog) < 0) return -errno;
    return 0;
}

int Server::bind_and_listen() {
    if (!unix_path_.empty()) {
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        if (unix_path_.size() >= sizeof sun.sun_path) return -ENAMETOOLONG;
        memcpy(sun.sun_path, unix_path_.c_str(), unix_path_.size() + 1);
        struct stat st;
        if (stat(unix_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(unix_path_.c_str());  // a stale socket from an earlier run (asyncio)
        int fd = new_socket(AF_UNIX);
        if (fd < 0) return fd;
        if (bind(fd, reinterpret_cast<sockaddr *>(&sun), sizeof sun) < 0) {
            int err = -errno;
            ::close(fd);
            return err;
        }
        unlink_path_ = true;
        return listen_on(fd);
    }

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)cfg_.port);
    addrinfo *res = nullptr;
    int rc = getaddrinfo(host_.empty() ? nullptr : host_.c_str(), port, &hints, &res);
    if (rc != 0) return gai_error(rc, errno);

    int err = 0;
    for (addrinfo *ai = res; ai; ai = ai->ai_next) {
        bool dup = false;  // asyncio builds a set of the infos
        for (addrinfo *p = res; p != ai; p = p->ai_next)
            dup |= p->ai_addrlen == ai->ai_addrlen && memcmp(p->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0;
        if (dup) continue;
        int fd = new_socket(ai->ai_family);
        if (fd == -EAFNOSUPPORT) continue;  // a family this machine lacks
        if (fd < 0) {
            err = fd;
            break;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (cfg_.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
            err = -errno;
            ::close(fd);
            break;
        }
        if (ai->ai_family == AF_INET6)  // one socket per family, as asyncio
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = -errno;
            ::close(fd);
            break;
        }
        try {
            err = listen_on(fd);
        } catch (...) {
            freeaddrinfo(res);
            throw;
        }
        if (err < 0) break;
    }
    freeaddrinfo(res);
    if (err == 0 && listeners_.empty()) err = -EAFNOSUPPORT;
    return err;
}

int Server::adopt_listener(int fd) {
    int type = 0, acc = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return errno == ENOTSOCK ? AIOL_ENOTSOCK : -errno;
    if (type != SOCK_STREAM) return AIOL_EINVAL;
    len = sizeof acc;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc) return AIOL_EINVAL;
    if (loop_->watcher_of(fd)) return AIOL_EBUSY;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -errno;
    if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    try {
        add_listener(fd, flags);
    } catch (...) {
        fcntl(fd, F_SETFL, flags);  // the caller keeps fd as it was
        throw;
    }
    return 0;
}

void Server::give_back_adopted() {
    for (Listener *l : listeners_) {
        if (l->adopted_flags < 0 || l->fd < 0) continue;
        fcntl(l->fd, F_SETFL, l->adopted_flags);
        l->fd = -1;  // the destructor leaves it open
    }
}

int Server::start_serving() {
    for (size_t i = 0; i < listeners_.size(); i++) {
        if (int rc = loop_->watch(listeners_[i]->fd, listeners_[i], kReadable); rc < 0) {
            for (size_t j = 0; j < i; j++) loop_->unwatch(listeners_[j]->fd);
            return rc;
        }
    }
    serving_ = true;
    loop_->link(this);
    linked_ = true;
    loop_->retain_alive();  // an open server keeps the loop alive
    return 0;
}

// ---- accepting ----------------------------------------------------------------------------

void Server::accept_connections(Listener *l) {
    refs_++;  // a factory may free the server: keep it (and its listeners) until we return
    int accepted = 0;
    for (int i = 0; i < cfg_.backlog && serving_; i++) {
        sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = sys::accept4(l->fd, reinterpret_cast<sockaddr *>(&peer), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accept_one(fd, peer, len);
            accepted++;
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK) break;  // the backlog is empty
        if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == ENETDOWN ||
            err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET || err == EHOSTUNREACH ||
            err == ENETUNREACH)
            continue;  // that connection is gone; the next may be fine (accept(2))
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
            // A batch that filled the table itself may have taken dead connections from
            // the backlog that close on their first read: pause briefly, silently, and try
            // again before asyncio's reported one-second back-off. Only a batch that
            // accepted something pauses briefly, so this never spins.
            back_off(l, err, accepted > 0);
            break;
        }
        loop_->report(-err, "accept() failed", AIOL_OBJ_SERVER, self());
        break;
    }
    unref();
}

void Server::back_off(Listener *l, int err, bool brief) {
    // asyncio: report, stop listening on this socket, try again after ACCEPT_RETRY_DELAY.
    // The kernel keeps reporting the socket readable, so staying registered would spin.
    if (!brief)
        loop_->report(-err, "socket.accept() out of system resource", AIOL_OBJ_SERVER, self());
    if (l->retry) return;
    loop_->set_interest(l->fd, 0);
    Handle *h = nullptr;
    loop_->call_at(Loop::now() + (brief ? kAcceptBriefDelayNs : kAcceptRetryDelayNs), cb_retry,
                   l, nullptr, &h);
    l->retry = h;
}

void Server::cb_retry(aiol_loop *, void *p) {
    auto *l = static_cast<Listener *>(p);
    l->retry->unref();
    l->retry = nullptr;
    if (l->server->serving_) l->server->loop_->set_interest(l->fd, kReadable);
}

void Server::accept_one(int fd, const sockaddr_storage &peer, socklen_t peer_len) {
    void *ud = nullptr;
    int rc = 0;
    loop_->invoke([&] { rc = factory_(factory_data_, reinterpret_cast<const sockaddr *>(&peer),
                                     peer_len, &ud); },
                  (const void *)factory_);
    if (rc != 0) {  // refused
        ::close(fd);
        return;
    }
    aiol_transport *t = nullptr;
    try {
        t = new aiol_transport(loop_, fd, proto_, ud, this, reinterpret_cast<const sockaddr *>(&peer),
                               peer_len);
#if AIOL_HAVE_TLS
        if (cfg_.tls)  // the handshake runs before connection_made; it counts as a client
            t->attach_tls(tls_layer_new(cfg_.tls, nullptr, cfg_.tls_handshake_timeout_ns,
                                        cfg_.tls_shutdown_timeout_ns));
#endif
        t->start();
    } catch (...) {
        delete t;
        ::close(fd);
        loop_->defer_destroy(proto_.destroy, ud);  // accepted user_data: destroy exactly once
        loop_->report(AIOL_ENOMEM, "out of memory accepting a connection", AIOL_OBJ_SERVER, self());
        return;
    }
    // asyncio _attach
    t->server_next = clients_;
    if (clients_) clients_->server_prev = t;
    clients_ = t;
    active_count_++;
    refs_++;
}

void Server::detach(SocketTransport *t) {  // asyncio _detach
    if (t->server_prev) t->server_prev->server_next = t->server_next;
    else clients_ = t->server_next;
    if (t->server_next) t->server_next->server_prev = t->server_prev;
    t->server_prev = t->server_next = nullptr;
    active_count_--;
    maybe_wake_waiters();
    unref();
}

// ---- closing ------------------------------------------------------------------------------

int Server::close() {
    if (closed_) return 0;
    closed_ = true;
    serving_ = false;
    for (Listener *l : listeners_) {
        if (l->retry) {
            loop_->cancel(l->retry);
            l->retry->unref();
            l->retry = nullptr;
        }
        loop_->unwatch(l->fd);
        ::close(l->fd);
        l->fd = -1;
    }
    if (unlink_path_) unlink(unix_path_.c_str());
    loop_->release_alive();
    maybe_wake_waiters();
    return 0;
}

int Server::close_clients(bool abort) {
    // Snapshot the list, holding a reference on each transport and on the server: inside
    // aiol_loop_close (and from any callback that runs inside it) abort/close runs
    // connection_lost at once, which detaches and may free that transport, and its
    // callback may close the others or free the server.
    std::vector<SocketTransport *> list;
    for (SocketTransport *t = clients_; t; t = t->server_next) list.push_back(t);
    refs_++;
    for (SocketTransport *t : list) t->ref();
    for (SocketTransport *t : list) {
        if (!t->lost()) {
            if (abort) t->abort();
            else t->close();
        }
        t->unref();
    }
    unref();
    return 0;
}

int Server::wait_closed(void (*cb)(aiol_server *, void *), void *ud) {
    waiters_.push_back(Waiter{cb, ud});
    refs_++;
    loop_->retain_alive();
    maybe_wake_waiters();
    return 0;
}

void Server::maybe_wake_waiters() {
    if (!closed_ || active_count_ > 0 || waiters_.empty()) return;
    refs_++;  // held by the scheduled call
    loop_->call_soon_internal(cb_run_waiters, this, cb_unref);
}

void Server::cb_unref(void *p) { static_cast<Server *>(p)->unref(); }

void Server::cb_run_waiters(aiol_loop *, void *p) {
    auto *s = static_cast<Server *>(p);
    std::vector<Waiter> waiters;
    waiters.swap(s->waiters_);
    for (const Waiter &w : waiters) {
        s->loop_->invoke([&] { w.cb(s->self(), w.ud); }, (const void *)w.cb);
        s->loop_->release_alive();
        s->unref();  // each waiter's reference; the scheduled call still holds one
    }
}

int Server::sockname(int index, sockaddr_storage *addr, socklen_t *len) const {
    if (closed_) return AIOL_ECLOSED;
    if (index < 0 || (size_t)index >= listeners_.size()) return AIOL_ERANGE;
    const Listener *l = listeners_[index];
    socklen_t n = *len < l->addr_len ? *len : l->addr_len;
    memcpy(addr, &l->addr, n);
    *len = l->addr_len;
    return 0;
}

void Server::release_caller() {
    if (loop_) close();
    unref();
}

void Server::on_loop_close() {
    // Connections went first (NetObject order): close, which runs the waiters at once
    // inside aiol_loop_close, then let go of the loop: the caller may free this server
    // after the loop is gone.
    refs_++;
    loop_->unlink(this);
    linked_ = false;
    close();
    if (!waiters_.empty()) cb_run_waiters(nullptr, this);  // scheduled, not yet run
    if (factory_destroy_) loop_->defer_destroy(factory_destroy_, factory_data_);
    factory_destroy_ = nullptr;
    loop_ = nullptr;
    unref();
}

}  // namespace aiol
