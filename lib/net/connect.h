// ConnectRequest: asyncio's create_connection (base_events.py) for one protocol: resolve
// off the loop thread, try each address in order (sock_connect), wrap the socket in a
// transport, and report through done after connection_made.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "../core/loop.h"

namespace aiol {

class SocketTransport;
struct ResolveJob;

struct ConnectRequest final : NetObject {
    ConnectRequest(Loop *loop, const aiol_connect_config &cfg, const aiol_protocol &protocol,
                   void *ud, void (*done)(aiol_transport *, int, void *), void *done_ud);
    ~ConnectRequest() override;

    // Starts the attempt (nothing reported from inside). Throws on allocation failure.
    void start(Handle **ret);
    void on_resolved(int status, const addrinfo *res);
    void on_connection_made(SocketTransport *t);
    void on_handshake_failed(int err);  // TLS: done(NULL, err)
    void on_loop_close() override;

private:
    enum State { kResolving, kConnecting, kMaking, kCancelling, kDone };
    struct Watcher final : IoWatcher {
        Watcher() : IoWatcher(kInternal) {}
        void on_io(uint32_t) override { req->on_writable(); }
        ConnectRequest *req = nullptr;
    };
    void add_addresses(const addrinfo *res);
    void try_next();
    void on_writable();
    void connected();
    void stop_activity();
    void finish(SocketTransport *t, int status);
    static void cb_start(aiol_loop *, void *req);
    static void cb_timeout(aiol_loop *, void *req);
    static void cb_cancelled(aiol_loop *, void *req);
    static void cancel_hook(void *req);
    static void free_request(void *req);

    Loop *loop_;
    std::string host_, unix_path_;
    uint16_t port_;
    uint64_t timeout_ns_;
    aiol_tls_context *tls_ = nullptr;  // a reference while the request lives
    std::string server_hostname_;
    uint64_t tls_handshake_timeout_ns_ = 0, tls_shutdown_timeout_ns_ = 0;
    aiol_protocol proto_;
    void *ud_;
    void (*done_)(aiol_transport *, int, void *);
    void *done_ud_;
    Handle *handle_ = nullptr;   // the caller's cancel handle
    Handle *timeout_ = nullptr;
    ResolveJob *job_ = nullptr;
    SocketTransport *transport_ = nullptr;
    std::vector<sockaddr_storage> addrs_;
    std::vector<socklen_t> addr_lens_;
    size_t next_ = 0;
    int fd_ = -1;
    int last_err_ = AIOL_ECONNREFUSED;
    int cancel_status_ = 0;
    bool transport_owns_ud_ = false;  // a transport was made: its teardown destroys ud
    State state_ = kResolving;
    Watcher watcher_;
};

}  // namespace aiol
