// extern "C" shims for servers, transports and connect: check the arguments, run the body
// through guard(), nothing else.
#include <fcntl.h>
#include <sys/un.h>

#include "aioloop.h"
#include "config.h"
#include "guard.h"
#include "../net/connect.h"
#include "../net/server.h"
#include "../net/transport.h"
#if AIOL_HAVE_TLS
#include "../tls/tls.h"
#endif

#define AIOL_API extern "C" AIOL_EXPORT

using aiol::guard;
using aiol::read_sized;

namespace {

// The first published sizes (0.1): a caller's struct must be at least this big.
constexpr size_t kProtocolSize01 = sizeof(aiol_protocol);
constexpr size_t kServerConfigSize01 = sizeof(aiol_server_config);
constexpr size_t kConnectConfigSize01 = sizeof(aiol_connect_config);

bool tls_is_server(const aiol_tls_context *ctx) {
#if AIOL_HAVE_TLS
    return aiol::tls_context_is_server(ctx);
#else
    (void)ctx;
    return false;
#endif
}

int read_protocol(const aiol_protocol *in, aiol_protocol *out) {
    if (!in) return AIOL_EINVAL;
    if (int rc = read_sized(in, kProtocolSize01, out)) return rc;
    if (!out->get_buffer != !out->buffer_updated) return AIOL_EINVAL;  // both or neither
    return 0;
}

// A server call: NULL is EINVAL; after aiol_loop_close the server is detached (ECLOSED).
int check_server(const aiol_server *s) {
    if (!s) return AIOL_EINVAL;
    if (!s->loop()) return AIOL_ECLOSED;
    return s->loop()->check_call();
}

// A transport call: NULL is EINVAL; after connection_lost every call but ref, unref and the
// address getters is ECLOSED.
int check_transport(const aiol_transport *t) {
    if (!t) return AIOL_EINVAL;
    if (t->lost()) return AIOL_ECLOSED;
    return t->loop()->check_call();
}

#define CHECK_TRANSPORT(t)                          \
    do {                                            \
        if (int rc_ = check_transport(t)) return rc_; \
    } while (0)

int start_server(aiol_loop *loop, int listen_fd, const aiol_server_config *cfg,
                 const aiol_protocol *protocol, aiol_protocol_factory factory,
                 void *factory_data, aiol_destroy_fn factory_destroy, aiol_server **ret) {
    AIOL_CHECK_LOOP(loop);
    if (!factory || !ret || (!cfg && listen_fd < 0)) return AIOL_EINVAL;
    aiol_server_config c{};
    if (cfg) {
        if (int rc = read_sized(cfg, kServerConfigSize01, &c)) return rc;
    }
    if (c.backlog < 0 || (c.host && c.unix_path)) return AIOL_EINVAL;
    if (c.unix_path && strlen(c.unix_path) >= sizeof(sockaddr_un::sun_path)) return -ENAMETOOLONG;
    if (c.tls && !AIOL_HAVE_TLS) return AIOL_ENOTSUP;  // built with -Dtls=disabled
    if (c.tls && !tls_is_server(c.tls)) return AIOL_EINVAL;  // a client context
    aiol_protocol p;
    if (int rc = read_protocol(protocol, &p)) return rc;
    return guard([&] {
        auto *s = new aiol_server(loop, c, p, factory, factory_data, factory_destroy);
        int rc;
        try {
            rc = listen_fd >= 0 ? s->adopt_listener(listen_fd) : s->bind_and_listen();
            if (rc == 0) rc = s->start_serving();
        } catch (const std::bad_alloc &) {
            rc = AIOL_ENOMEM;  // cleaned up below: sockets bound so far, the server
        }
        if (rc < 0) {
            s->forget_factory_data();
            s->give_back_adopted();  // an adopted fd stays the caller's, as it was
            delete s;                // closes what it bound itself
            return rc;
        }
        *ret = s;
        return 0;
    });
}

}  // namespace

// ---- server -------------------------------------------------------------------------------

AIOL_API int aiol_server_start(aiol_loop *loop, const aiol_server_config *cfg,
                               const aiol_protocol *protocol, aiol_protocol_factory factory,
                               void *factory_data, aiol_destroy_fn factory_destroy,
                               aiol_server **ret) {
    if (!cfg) return AIOL_EINVAL;
    return start_server(loop, -1, cfg, protocol, factory, factory_data, factory_destroy, ret);
}

AIOL_API int aiol_server_start_fd(aiol_loop *loop, int listen_fd, const aiol_server_config *cfg,
                                  const aiol_protocol *protocol, aiol_protocol_factory factory,
                                  void *factory_data, aiol_destroy_fn factory_destroy,
                                  aiol_server **ret) {
    if (listen_fd < 0) return AIOL_EBADF;
    return start_server(loop, listen_fd, cfg, protocol, factory, factory_data, factory_destroy, ret);
}

AIOL_API int aiol_server_close(aiol_server *s) {
    if (int rc = check_server(s)) return rc == AIOL_ECLOSED ? 0 : rc;  // idempotent
    return guard([&] { return s->close(); });
}

AIOL_API int aiol_server_close_clients(aiol_server *s) {
    if (int rc = check_server(s)) return rc;
    return guard([&] { return s->close_clients(false); });
}

AIOL_API int aiol_server_abort_clients(aiol_server *s) {
    if (int rc = check_server(s)) return rc;
    return guard([&] { return s->close_clients(true); });
}

AIOL_API int aiol_server_wait_closed(aiol_server *s, void (*cb)(aiol_server *, void *), void *ud) {
    if (int rc = check_server(s)) return rc;
    if (!cb) return AIOL_EINVAL;
    return guard([&] { return s->wait_closed(cb, ud); });
}

AIOL_API int aiol_server_is_serving(const aiol_server *s) { return s && s->is_serving() ? 1 : 0; }

AIOL_API int aiol_server_socket_count(const aiol_server *s) {
    return s && s->loop() && s->is_serving() ? s->socket_count() : 0;
}

AIOL_API int aiol_server_sockname(const aiol_server *s, int index, struct sockaddr_storage *addr,
                                  socklen_t *len) {
    if (!s || !addr || !len) return AIOL_EINVAL;
    return s->sockname(index, addr, len);
}

AIOL_API aiol_loop *aiol_server_loop(const aiol_server *s) {
    return s && s->loop() ? static_cast<aiol_loop *>(s->loop()) : nullptr;
}

AIOL_API int aiol_server_free(aiol_server *s) {
    if (!s) return 0;
    if (s->loop()) {
        if (int rc = s->loop()->check_call(); rc == AIOL_ETHREAD) return rc;
    }
    return guard([&] {
        s->release_caller();
        return 0;
    });
}

// ---- transport ----------------------------------------------------------------------------

AIOL_API int aiol_transport_write(aiol_transport *t, const void *data, size_t len) {
    CHECK_TRANSPORT(t);
    if (!data && len) return AIOL_EINVAL;
    return guard([&] { return t->write(data, len); });
}

AIOL_API int aiol_transport_writev(aiol_transport *t, const aiol_buf *bufs, size_t n) {
    CHECK_TRANSPORT(t);
    if (!bufs && n) return AIOL_EINVAL;
    return guard([&] { return t->writev(bufs, n); });
}

AIOL_API int aiol_transport_write_eof(aiol_transport *t) {
    CHECK_TRANSPORT(t);
    return guard([&] { return t->write_eof(); });
}

AIOL_API int aiol_transport_can_write_eof(const aiol_transport *t) {
    return t && !t->lost() && t->can_write_eof() ? 1 : 0;
}

AIOL_API int aiol_transport_close(aiol_transport *t) {
    CHECK_TRANSPORT(t);
    return guard([&] { return t->close(); });
}

AIOL_API int aiol_transport_abort(aiol_transport *t) {
    CHECK_TRANSPORT(t);
    return guard([&] { return t->abort(); });
}

AIOL_API int aiol_transport_is_closing(const aiol_transport *t) {
    return t && (t->lost() || t->is_closing()) ? 1 : 0;
}

AIOL_API int aiol_transport_pause_reading(aiol_transport *t) {
    CHECK_TRANSPORT(t);
    return guard([&] { return t->pause_reading(); });
}

AIOL_API int aiol_transport_resume_reading(aiol_transport *t) {
    CHECK_TRANSPORT(t);
    return guard([&] { return t->resume_reading(); });
}

AIOL_API int aiol_transport_is_reading(const aiol_transport *t) {
    return t && t->is_reading() ? 1 : 0;
}

AIOL_API int aiol_transport_set_write_buffer_limits(aiol_transport *t, size_t high, size_t low) {
    CHECK_TRANSPORT(t);
    return guard([&] { return t->set_write_buffer_limits(high, low); });
}

AIOL_API size_t aiol_transport_get_write_buffer_size(const aiol_transport *t) {
    return t && !t->lost() ? t->write_buffer_size() : 0;
}

AIOL_API int aiol_transport_get_write_buffer_limits(const aiol_transport *t, size_t *high,
                                                    size_t *low) {
    if (!t || !high || !low) return AIOL_EINVAL;
    if (t->lost()) return AIOL_ECLOSED;
    *high = t->high_water();
    *low = t->low_water();
    return 0;
}

AIOL_API int aiol_transport_peername(const aiol_transport *t, struct sockaddr_storage *addr,
                                     socklen_t *len) {
    if (!t || !addr || !len) return AIOL_EINVAL;
    return t->copy_name(true, addr, len);
}

AIOL_API int aiol_transport_sockname(const aiol_transport *t, struct sockaddr_storage *addr,
                                     socklen_t *len) {
    if (!t || !addr || !len) return AIOL_EINVAL;
    return t->copy_name(false, addr, len);
}

AIOL_API int aiol_transport_fileno(const aiol_transport *t) {
    if (!t) return AIOL_EINVAL;
    return t->fileno();
}

AIOL_API int aiol_transport_sendfile(aiol_transport *t, int fd, uint64_t offset, uint64_t count,
                                     void (*done)(aiol_transport *, int, uint64_t, void *),
                                     void *ud) {
    CHECK_TRANSPORT(t);
    return guard([&] { return t->sendfile(fd, offset, count, done, ud); });
}

AIOL_API aiol_loop *aiol_transport_loop(const aiol_transport *t) {
    return t && t->loop() ? static_cast<aiol_loop *>(t->loop()) : nullptr;
}

AIOL_API void *aiol_transport_get_protocol_data(const aiol_transport *t) {
    return t && !t->lost() ? t->protocol_data() : nullptr;  // destroyed after connection_lost
}

AIOL_API int aiol_transport_set_protocol(aiol_transport *t, const aiol_protocol *p,
                                         void *user_data) {
    CHECK_TRANSPORT(t);
    aiol_protocol copy;
    if (int rc = read_protocol(p, &copy)) return rc;
    return guard([&] { return t->set_protocol(copy, user_data); });
}

AIOL_API int aiol_transport_ref(aiol_transport *t) {
    if (!t) return AIOL_EINVAL;
    t->ref();
    return 0;
}

AIOL_API int aiol_transport_unref(aiol_transport *t) {
    if (!t) return AIOL_EINVAL;
    t->unref();
    return 0;
}

// ---- client -------------------------------------------------------------------------------

AIOL_API int aiol_loop_connect(aiol_loop *loop, const aiol_connect_config *cfg,
                               const aiol_protocol *protocol, void *user_data,
                               void (*done)(aiol_transport *, int, void *), void *ud,
                               aiol_handle **ret) {
    AIOL_CHECK_LOOP(loop);
    if (!cfg) return AIOL_EINVAL;
    aiol_connect_config c;
    if (int rc = read_sized(cfg, kConnectConfigSize01, &c)) return rc;
    if (!c.host == !c.unix_path) return AIOL_EINVAL;  // exactly one of them
    if (c.unix_path && strlen(c.unix_path) >= sizeof(sockaddr_un::sun_path)) return AIOL_EINVAL;
    if (c.tls && !AIOL_HAVE_TLS) return AIOL_ENOTSUP;  // built with -Dtls=disabled
    if (c.tls && tls_is_server(c.tls)) return AIOL_EINVAL;  // a server context
    aiol_protocol p;
    if (int rc = read_protocol(protocol, &p)) return rc;
    return guard([&] {
        auto *r = new aiol::ConnectRequest(loop, c, p, user_data, done, ud);
        try {
            aiol::Handle *h = nullptr;
            r->start(ret ? &h : nullptr);
            if (ret) *ret = static_cast<aiol_handle *>(h);
        } catch (...) {
            delete r;
            throw;
        }
        return 0;
    });
}

AIOL_API int aiol_transport_adopt(aiol_loop *loop, int fd, const aiol_protocol *protocol,
                                  void *user_data, aiol_transport **ret) {
    AIOL_CHECK_LOOP(loop);
    if (fd < 0) return AIOL_EBADF;
    aiol_protocol p;
    if (int rc = read_protocol(protocol, &p)) return rc;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return -errno;
    if (type != SOCK_STREAM) return AIOL_EINVAL;
    if (loop->watcher_of(fd)) return AIOL_EBUSY;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    return guard([&] {
        auto *t = new aiol_transport(loop, fd, p, user_data, nullptr);
        try {
            t->start();
        } catch (...) {
            delete t;
            throw;
        }
        if (ret) *ret = t;
        return 0;
    });
}
