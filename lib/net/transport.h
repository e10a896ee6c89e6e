// SocketTransport: asyncio's _SelectorSocketTransport (selector_events.py) with its
// _FlowControlMixin (transports.py): reads into data_received or a BufferedProtocol's
// buffer, try-now-then-queue writes, watermarks, half-close, close/abort, sendfile.
//
// The library holds one reference from creation until connection_lost has returned (or
// the attempt was abandoned); callers add theirs with aiol_transport_ref. Memory goes with
// the last reference; the fd is closed when connection_lost runs, as asyncio does.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>

#include "../core/loop.h"
#include "address.h"
#include "write_buffer.h"

namespace aiol {

class Server;
struct ConnectRequest;
struct TlsLayer;

struct SendfileJob {
    int fd;
    uint64_t offset;
    uint64_t remaining;  // UINT64_MAX: to the end of the file
    uint64_t sent = 0;
    bool fallback = false;
    bool stream = false;  // fallback on a pipe / FIFO: read(), no offsets
    void (*done)(aiol_transport *, int, uint64_t, void *);
    void *ud;
};

class SocketTransport : public IoWatcher, public NetObject {
public:
    // peer: the address accept() returned, if any (saves a getpeername).
    SocketTransport(Loop *loop, int fd, const aiol_protocol &protocol, void *ud, Server *server,
                    const sockaddr *peer = nullptr, socklen_t peer_len = 0);
    ~SocketTransport() override;

    // Registers the fd and schedules connection_made (then reading), as asyncio's
    // __init__ does with call_soon. Throws std::bad_alloc on failure (nothing scheduled).
    void start();
    void set_connect_request(ConnectRequest *r) { connect_ = r; }

    // ---- the public operations (aiol_transport_*) --------------------------------------
    int write(const void *data, size_t len);
    int writev(const aiol_buf *bufs, size_t n);
    int write_eof();
    // TCP and AF_UNIX both half-close; TLS does not (asyncio's SSL transport).
    bool can_write_eof() const { return tls_ == nullptr; }
    int close();
    int abort();
    bool is_closing() const { return closing_; }
    int pause_reading();
    int resume_reading();
    // Reading is paused while a sendfile runs (asyncio's _sendfile_native pauses it).
    bool is_reading() const { return !closing_ && !paused_ && !lost_ && !sendfile_; }
    int set_write_buffer_limits(size_t high, size_t low);
    size_t write_buffer_size() const { return wbuf_.size(); }
    size_t high_water() const { return high_; }
    size_t low_water() const { return low_; }
    int sendfile(int fd, uint64_t offset, uint64_t count,
                 void (*done)(aiol_transport *, int, uint64_t, void *), void *ud);
    int set_protocol(const aiol_protocol &p, void *ud);
    void *protocol_data() const { return ud_; }
    int fileno() const { return lost_ ? AIOL_ECLOSED : fd_; }
    bool lost() const { return lost_; }
    Loop *loop() const { return loop_; }
    int copy_name(bool peer, sockaddr_storage *addr, socklen_t *len) const;

    void ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
    void unref();

    // Abandons a transport whose connection_made has not run (a cancelled connect).
    void abandon();

    // TLS (lib/tls/tls_layer.cpp): set before start(); connection_made then waits for the
    // handshake. The layer is freed with the transport.
    void attach_tls(TlsLayer *l) {
        tls_ = l;
        handshaking_ = true;
    }
    TlsLayer *tls() const { return tls_; }

    void on_io(uint32_t events) override;
    void on_loop_close() override;

private:
    friend class Server;
    aiol_transport *self();

    void read_ready();
    void read_ready_buffered();
    void on_eof();
    void write_ready();
    void sendfile_step();
    void finish_sendfile(int status);
    void update_interest();
    void maybe_pause_protocol();
    void maybe_resume_protocol();
    void fatal_error(int err, const char *message, bool report);
    void force_close(int err);
    void schedule_connection_lost(int err);
    void call_connection_lost(int err);
    void note_write_after_loss();

    static void cb_connection_made(aiol_loop *, void *t);
    static void cb_connection_lost(aiol_loop *, void *t);
    static void cb_unref(void *t);
    static void cb_pause_writing(void *t, void *);
    void make_connection();  // connection_made, done(t, 0), reading starts

    // TLS: the transport's side of the layer (lib/tls/tls_layer.cpp)
    void tls_start();
    void tls_on_io(uint32_t events);
    void tls_read_ready();
    void tls_process();
    bool tls_encrypt(const void *data, size_t len);
    bool tls_flush_out();
    int tls_write(const aiol_buf *bufs, size_t n);
    void tls_handshake_failed(int err, const char *detail);
    void tls_on_eof(bool close_notify);
    void tls_close();
    void tls_resumed();
    void tls_sendfile_step();
    void tls_teardown();
    static void cb_tls_handshake_timeout(aiol_loop *, void *t);
    static void cb_tls_shutdown_timeout(aiol_loop *, void *t);
    static void cb_tls_resume(aiol_loop *, void *t);

    Loop *loop_;
    int fd_;
    int family_ = AF_UNSPEC;
    aiol_protocol proto_;
    void *ud_;
    Server *server_;
    ConnectRequest *connect_ = nullptr;
    std::atomic<int> refs_{1};

    WriteBuffer wbuf_;
    size_t high_ = 64 * 1024, low_ = 16 * 1024;  // _FlowControlMixin defaults
    uint32_t interest_ = 0;
    int lost_status_ = 0;
    unsigned writes_after_loss_ = 0;
    SendfileJob *sendfile_ = nullptr;
    TlsLayer *tls_ = nullptr;     // NULL: plain (the only check on the plain hot path)

    bool made_ = false;           // connection_made ran
    bool closing_ = false;        // close() or abort() called (asyncio _closing)
    bool conn_lost_ = false;      // connection_lost scheduled (asyncio _conn_lost)
    bool lost_ = false;           // connection_lost ran; the fd is closed
    bool paused_ = false;         // pause_reading
    bool read_eof_ = false;       // EOF seen and kept open: the reader is gone
    bool eof_ = false;            // write_eof called
    bool shut_wr_ = false;        // shutdown(SHUT_WR) done
    bool protocol_paused_ = false;  // pause_writing delivered or queued
    bool pause_pending_ = false;    // paused before connection_made: deliver after it
    bool handshaking_ = false;    // TLS handshake in progress (reading on, no protocol yet)

    StoredAddress peer_, local_;

public:
    SocketTransport *server_prev = nullptr, *server_next = nullptr;  // Server's client list
};

}  // namespace aiol

struct aiol_transport final : aiol::SocketTransport {
    using SocketTransport::SocketTransport;
};
