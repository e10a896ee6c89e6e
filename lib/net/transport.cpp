// SocketTransport: asyncio's _SelectorSocketTransport. See transport.h.
#include "transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "config.h"
#include "connect.h"
#include "server.h"
#include "../sys/sys.h"
#if AIOL_HAVE_TLS
#include "../tls/tls.h"
#endif

namespace aiol {

namespace {

constexpr unsigned kLogThresholdForConnLostWrites = 5;  // asyncio constants
constexpr size_t kSendfileChunk = 1u << 30;
constexpr size_t kSendfileBudget = 8u << 20;  // per readiness event, so others get a turn
constexpr size_t kFallbackChunk = 256 * 1024;  // asyncio sock_sendfile's read size

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

// sendfile(2) cannot take MSG_NOSIGNAL: block SIGPIPE on this thread around it and
// consume the one it raised, so a peer that vanished never kills the process.
ssize_t sendfile_nosigpipe(int out_fd, int in_fd, off_t *offset, size_t count) {
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = sys::sendfile(out_fd, in_fd, offset, count);
    int err = errno;
    if (n < 0 && err == EPIPE && !was_pending) {
        timespec zero{0, 0};
        sigtimedwait(&pipe_set, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = err;
    return n;
}

}  // namespace

SocketTransport::SocketTransport(Loop *loop, int fd, const aiol_protocol &protocol, void *ud,
                                 Server *server, const sockaddr *peer, socklen_t peer_len)
    : IoWatcher(IoWatcher::kTransport), NetObject(NetObject::kTransport), loop_(loop), fd_(fd), proto_(protocol),
      ud_(ud), server_(server) {
    if (peer && peer_len > 0) peer_.set(peer, peer_len);
    else peer_.fetch(::getpeername, fd);
    local_.fetch(::getsockname, fd);
    family_ = local_.family();
    if (family_ == AF_INET || family_ == AF_INET6) {  // base_events._set_nodelay
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

SocketTransport::~SocketTransport() {
    delete sendfile_;
#if AIOL_HAVE_TLS
    if (tls_) tls_layer_free(tls_);
#endif
}

aiol_transport *SocketTransport::self() { return static_cast<aiol_transport *>(this); }

void SocketTransport::start() {
    if (int rc = loop_->watch(fd_, this, 0); rc < 0) throw std::system_error(-rc, std::generic_category());
    ref();  // held by the scheduled connection_made
    try {
        loop_->call_soon(cb_connection_made, this, cb_unref, nullptr);
    } catch (...) {
        refs_.fetch_sub(1, std::memory_order_relaxed);
        loop_->unwatch(fd_);
        throw;
    }
    loop_->link(this);
    loop_->retain_alive();
}

void SocketTransport::unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete self();
}

void SocketTransport::cb_unref(void *t) { static_cast<SocketTransport *>(t)->unref(); }

// ---- connection_made and reading ------------------------------------------------------

void SocketTransport::cb_connection_made(aiol_loop *, void *p) {
    auto *t = static_cast<SocketTransport *>(p);
    if (t->conn_lost_) return;  // aborted or abandoned before it ran
#if AIOL_HAVE_TLS
    if (t->tls_) {  // connection_made waits for the handshake (asyncio SSLProtocol)
        t->tls_start();
        return;
    }
#endif
    t->make_connection();
}

void SocketTransport::make_connection() {
    made_ = true;
    if (proto_.connection_made)
        loop_->invoke([&] { proto_.connection_made(self(), ud_); },
                      (const void *)proto_.connection_made);
    if (pause_pending_) {  // writes made before connection_made passed the high mark
        pause_pending_ = false;
        if (protocol_paused_ && !lost_ && proto_.pause_writing)
            loop_->invoke([&] { proto_.pause_writing(self(), ud_); },
                          (const void *)proto_.pause_writing);
    }
    if (connect_) {
        ConnectRequest *r = connect_;
        connect_ = nullptr;
        r->on_connection_made(this);  // done(t, 0)
    }
    update_interest();  // asyncio's call_soon(self._add_reader, ...)
}

void SocketTransport::on_io(uint32_t events) {
#if AIOL_HAVE_TLS
    if (tls_) {
        tls_on_io(events);
        return;
    }
#endif
    if ((events & kReadable) && is_reading() && !read_eof_ && !sendfile_) {
        if (proto_.get_buffer) read_ready_buffered();
        else read_ready();
    }
    if ((events & kWritable) && !conn_lost_) {
        if (!wbuf_.empty()) write_ready();
        else if (sendfile_ && !closing_) sendfile_step();
    }
}

void SocketTransport::read_ready() {
    unsigned char *buf = loop_->read_buffer();
    ssize_t n = sys::recv(fd_, buf, Loop::kReadSize, 0);
    if (n > 0) {
        if (proto_.data_received)
            loop_->invoke([&] { proto_.data_received(self(), buf, (size_t)n, ud_); },
                          (const void *)proto_.data_received);
    } else if (n == 0) {
        on_eof();
    } else if (!would_block(errno)) {
        fatal_error(-errno, "Fatal read error on socket transport", false);
    }
}

void SocketTransport::read_ready_buffered() {
    // get_buffer, recv and buffer_updated run back to back: what get_buffer defers runs
    // after buffer_updated, so no other callback can touch the lent buffer in between.
    size_t len = 0;
    void *buf = proto_.get_buffer(self(), 0, &len, ud_);
    if (!is_reading()) {  // paused or closed inside get_buffer
        loop_->drain_deferred();
        return;
    }
    if (!buf || len == 0) {
        fatal_error(AIOL_EINVAL, "Fatal error: protocol get_buffer() returned an empty buffer",
                    true);
        loop_->drain_deferred();
        return;
    }
    ssize_t n = sys::recv(fd_, buf, len, 0);
    if (n > 0) {
        loop_->invoke([&] { proto_.buffer_updated(self(), (size_t)n, ud_); },
                      (const void *)proto_.buffer_updated);
        return;
    }
    loop_->drain_deferred();
    if (n == 0) on_eof();
    else if (!would_block(errno)) fatal_error(-errno, "Fatal read error on socket transport", false);
}

void SocketTransport::on_eof() {
    int keep_open = 0;
    if (proto_.eof_received)
        loop_->invoke([&] { keep_open = proto_.eof_received(self(), ud_); },
                      (const void *)proto_.eof_received);
    if (conn_lost_) return;
    if (keep_open) {
        read_eof_ = true;  // asyncio removes the reader and keeps the transport
        update_interest();
    } else {
        close();
    }
}

int SocketTransport::pause_reading() {
    if (lost_) return AIOL_ECLOSED;
    if (closing_ || paused_) return 0;  // not is_reading(): a sendfile may be running
    paused_ = true;
    update_interest();
    return 0;
}

int SocketTransport::resume_reading() {
    if (lost_) return AIOL_ECLOSED;
    if (closing_ || !paused_) return 0;
    paused_ = false;
    update_interest();
#if AIOL_HAVE_TLS
    if (tls_) tls_resumed();  // plaintext already decrypted (or received) is delivered next
#endif
    return 0;
}

// ---- interest -------------------------------------------------------------------------

void SocketTransport::update_interest() {
    uint32_t want = 0;
    if (!conn_lost_) {
        if ((made_ || handshaking_) && is_reading() && !read_eof_ && !sendfile_)
            want |= kReadable;
        if (!wbuf_.empty() || sendfile_) want |= kWritable;
    }
    if (want == interest_) return;  // no epoll_ctl when nothing changes
    int rc = loop_->set_interest(fd_, want);
    if (rc < 0 && want != 0) {
        interest_ = 0;
        loop_->set_interest(fd_, 0);
        force_close(rc);
        return;
    }
    interest_ = want;
}

// ---- writing --------------------------------------------------------------------------

void SocketTransport::note_write_after_loss() {
    // asyncio warns once writes keep coming after the connection was lost; we report it
    // once, later, through the exception handler.
    if (++writes_after_loss_ == kLogThresholdForConnLostWrites && loop_ && !loop_->closed()) {
        aiol_error_context ctx{};
        ctx.size = sizeof ctx;
        ctx.code = AIOL_ECLOSED;
        ctx.message = "socket.send() raised exception: writes after the connection was lost";
        ctx.object_kind = AIOL_OBJ_TRANSPORT;
        ctx.object = self();
        try {
            loop_->report_later(ctx);
        } catch (...) {
        }
    }
}

int SocketTransport::write(const void *data, size_t len) {
    if (closing_ || lost_) {
        note_write_after_loss();
        return AIOL_ECLOSED;
    }
    if (eof_) return AIOL_ESTATE;
    if (sendfile_) return AIOL_EBUSY;
    if (len == 0) return 0;
#if AIOL_HAVE_TLS
    if (tls_) {
        aiol_buf b{data, len};
        return tls_write(&b, 1);
    }
#endif
    auto *p = static_cast<const unsigned char *>(data);
    if (wbuf_.empty()) {  // try to send now, queue only the rest
        ssize_t n = sys::send(fd_, p, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len) return 0;
        if (n < 0) {
            if (!would_block(errno)) {
                fatal_error(-errno, "Fatal write error on socket transport", false);
                return 0;
            }
            n = 0;
        }
        p += n;
        len -= (size_t)n;
        if (n > 0) {  // part of it is on the wire: failing to queue the rest breaks the stream
            try {
                wbuf_.append(p, len);
            } catch (const std::bad_alloc &) {
                fatal_error(AIOL_ENOMEM, "out of memory queueing a write", false);
                return 0;
            }
            update_interest();
            maybe_pause_protocol();
            return 0;
        }
    }
    wbuf_.append(p, len);  // nothing sent: a failure here loses nothing (AIOL_ENOMEM)
    update_interest();
    maybe_pause_protocol();
    return 0;
}

int SocketTransport::writev(const aiol_buf *bufs, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!bufs[i].base && bufs[i].len) return AIOL_EINVAL;
        if (bufs[i].len > SIZE_MAX - total) return AIOL_EINVAL;
        total += bufs[i].len;
    }
    if (closing_ || lost_) {
        note_write_after_loss();
        return AIOL_ECLOSED;
    }
    if (eof_) return AIOL_ESTATE;
    if (sendfile_) return AIOL_EBUSY;
    if (total == 0) return 0;
#if AIOL_HAVE_TLS
    if (tls_) return tls_write(bufs, n);
#endif

    size_t skip = 0;  // bytes already on the wire
    if (wbuf_.empty()) {
        iovec iov[IOV_MAX < 1024 ? IOV_MAX : 1024];
        size_t cnt = 0;
        for (size_t i = 0; i < n && cnt < sizeof iov / sizeof iov[0]; i++)
            if (bufs[i].len) iov[cnt++] = iovec{const_cast<void *>(bufs[i].base), bufs[i].len};
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = cnt;
        ssize_t sent = sys::sendmsg(fd_, &msg, MSG_NOSIGNAL);
        if (sent < 0) {
            if (!would_block(errno)) {
                fatal_error(-errno, "Fatal write error on socket transport", false);
                return 0;
            }
            sent = 0;
        }
        if ((size_t)sent == total) return 0;
        skip = (size_t)sent;
    }
    try {
        wbuf_.reserve(total - skip);
    } catch (const std::bad_alloc &) {
        if (skip == 0) throw;  // nothing sent: report AIOL_ENOMEM, lose nothing
        fatal_error(AIOL_ENOMEM, "out of memory queueing a write", false);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        wbuf_.append(static_cast<const unsigned char *>(bufs[i].base) + skip, len - skip);
        skip = 0;
    }
    update_interest();
    maybe_pause_protocol();
    return 0;
}

void SocketTransport::write_ready() {
    ssize_t n = sys::send(fd_, wbuf_.data(), wbuf_.size(), MSG_NOSIGNAL);
    if (n < 0) {
        if (would_block(errno)) return;
        int err = -errno;
        wbuf_.clear();
        fatal_error(err, "Fatal write error on socket transport", false);
        return;
    }
    wbuf_.consume((size_t)n);
    maybe_resume_protocol();  // may append to the buffer
    if (!wbuf_.empty() || conn_lost_) return;
    update_interest();
    if (closing_) {  // a sendfile still pending is cancelled (done before connection_lost)
        conn_lost_ = true;
        update_interest();
        schedule_connection_lost(0);
    } else if (eof_ && !shut_wr_) {
        shut_wr_ = true;
        shutdown(fd_, SHUT_WR);
    }
}

void SocketTransport::maybe_pause_protocol() {
    if (protocol_paused_ || wbuf_.size() <= high_) return;
    protocol_paused_ = true;
    if (!proto_.pause_writing) return;
    if (!made_) {  // written before connection_made (adopt): tell it right after that
        pause_pending_ = true;
        return;
    }
    // Never inside aiol_transport_write: right after the current callback instead.
    ref();
    loop_->defer(cb_pause_writing, this, nullptr);
}

void SocketTransport::cb_pause_writing(void *p, void *) {
    auto *t = static_cast<SocketTransport *>(p);
    // Delivered even if the same callback then closed or aborted: asyncio calls
    // pause_writing inside write(), so the protocol sees it before connection_lost.
    if (!t->lost_ && t->protocol_paused_ && t->proto_.pause_writing)
        t->proto_.pause_writing(t->self(), t->ud_);
    t->unref();
}

void SocketTransport::maybe_resume_protocol() {
    if (!protocol_paused_ || wbuf_.size() > low_) return;
    protocol_paused_ = false;
    if (pause_pending_) {  // drained before connection_made: neither pause nor resume
        pause_pending_ = false;
        return;
    }
    if (proto_.resume_writing)
        loop_->invoke([&] { proto_.resume_writing(self(), ud_); },
                      (const void *)proto_.resume_writing);
}

int SocketTransport::set_write_buffer_limits(size_t high, size_t low) {
    if (lost_) return AIOL_ECLOSED;
    // transports._FlowControlMixin._set_write_buffer_limits
    if (high == AIOL_WBUF_DEFAULT)
        high = low == AIOL_WBUF_DEFAULT ? 64 * 1024 : (low > SIZE_MAX / 4 ? SIZE_MAX - 1 : 4 * low);
    if (low == AIOL_WBUF_DEFAULT) low = high / 4;
    if (high < low) return AIOL_EINVAL;
    high_ = high;
    low_ = low;
    maybe_pause_protocol();
    return 0;
}

int SocketTransport::write_eof() {
    if (lost_ || closing_) return AIOL_ECLOSED;
    if (tls_) return AIOL_ESTATE;  // TLS has no half-close
    if (eof_) return 0;
    if (sendfile_) return AIOL_EBUSY;
    eof_ = true;
    if (wbuf_.empty()) {
        shut_wr_ = true;
        shutdown(fd_, SHUT_WR);  // ENOTCONN after a reset: the read side will report it
    }
    return 0;
}

// ---- closing --------------------------------------------------------------------------

int SocketTransport::close() {
    if (lost_) return AIOL_ECLOSED;
    if (closing_) return 0;
#if AIOL_HAVE_TLS
    if (tls_) {
        tls_close();  // close_notify queued (or an abort during the handshake)
        if (conn_lost_) return 0;
    }
#endif
    closing_ = true;
    if (wbuf_.empty()) {  // a sendfile in flight is cancelled: done(AIOL_ECANCELED) first
        conn_lost_ = true;
        schedule_connection_lost(0);
    }
    update_interest();
    return 0;
}

int SocketTransport::abort() {
    if (lost_) return AIOL_ECLOSED;
    force_close(AIOL_ECANCELED);
    return 0;
}

void SocketTransport::abandon() { force_close(AIOL_ECANCELED); }

void SocketTransport::fatal_error(int err, const char *message, bool report) {
    // asyncio reports non-OSError failures (a protocol bug) and only debug-logs OS errors.
    if (report && !conn_lost_) loop_->report(err, message, AIOL_OBJ_TRANSPORT, self(), ud_);
    force_close(err);
}

void SocketTransport::force_close(int err) {
    if (conn_lost_) return;
    wbuf_.clear();
    closing_ = true;
    conn_lost_ = true;
    update_interest();
    schedule_connection_lost(err);
}

void SocketTransport::schedule_connection_lost(int err) {
    lost_status_ = err;
    ref();  // held by the scheduled call
    try {
        loop_->call_soon_internal(cb_connection_lost, this, cb_unref);
    } catch (...) {
        refs_.fetch_sub(1, std::memory_order_relaxed);
        throw;
    }
}

void SocketTransport::cb_connection_lost(aiol_loop *, void *p) {
    auto *t = static_cast<SocketTransport *>(p);
    t->call_connection_lost(t->lost_status_);
}

void SocketTransport::call_connection_lost(int err) {
    if (lost_) return;
    if (sendfile_) finish_sendfile(AIOL_ECANCELED);  // done runs before connection_lost
#if AIOL_HAVE_TLS
    if (tls_) tls_teardown();  // timers cancelled
#endif
    lost_ = true;
    if (made_ && proto_.connection_lost)
        loop_->invoke([&] { proto_.connection_lost(self(), err, ud_); },
                      (const void *)proto_.connection_lost);
    loop_->unwatch(fd_);
    ::close(fd_);
    loop_->defer_destroy(proto_.destroy, ud_);
    loop_->unlink(this);
    loop_->release_alive();
    if (Server *s = server_) {
        server_ = nullptr;
        s->detach(this);  // may run wait_closed callbacks (inside close) or schedule them
    }
    loop_ = nullptr;  // the transport may outlive the loop now
    unref();          // the library's reference
}

void SocketTransport::on_loop_close() {
    // aiol_loop_close: abort, and run connection_lost now (call_soon_internal runs it
    // at once inside close). One already scheduled runs now instead of later.
    if (!conn_lost_) force_close(AIOL_ECANCELED);
    else call_connection_lost(lost_status_);
}

// ---- sendfile (asyncio _sendfile_native / _sock_sendfile_native_impl) --------------------

int SocketTransport::sendfile(int fd, uint64_t offset, uint64_t count,
                              void (*done)(aiol_transport *, int, uint64_t, void *), void *ud) {
    if (lost_ || closing_) return AIOL_ECLOSED;
    if (eof_) return AIOL_ESTATE;
    if (sendfile_) return AIOL_EBUSY;
    if (fd < 0) return AIOL_EBADF;
    if (offset > (uint64_t)INT64_MAX) return AIOL_EINVAL;
    sendfile_ = new SendfileJob{fd, offset, count ? count : UINT64_MAX, 0, false, false, done, ud};
    update_interest();  // reading stops; the first chunk goes once the socket is writable
    return 0;
}

void SocketTransport::sendfile_step() {
#if AIOL_HAVE_TLS
    if (tls_) {  // read + write through the TLS layer
        tls_sendfile_step();
        return;
    }
#endif
    SendfileJob *job = sendfile_;
    size_t budget = kSendfileBudget;
    while (job->remaining > 0 && budget > 0) {
        size_t chunk = job->remaining < kSendfileChunk ? (size_t)job->remaining : kSendfileChunk;
        ssize_t n;
        if (!job->fallback) {
            off_t off = (off_t)job->offset;
            n = sendfile_nosigpipe(fd_, job->fd, &off, chunk);
            if (n < 0 && (errno == EINVAL || errno == ENOSYS || errno == ESPIPE) &&
                job->sent == 0) {
                job->fallback = true;  // not mmap-able (a pipe, /proc, some file systems)
                continue;
            }
        } else {  // read + send through the loop's read buffer
            unsigned char *buf = loop_->read_buffer();
            size_t want = chunk < kFallbackChunk ? chunk : kFallbackChunk;
            ssize_t r = job->stream ? sys::read(job->fd, buf, want)
                                    : sys::pread(job->fd, buf, want, (off_t)job->offset);
            if (r < 0 && errno == ESPIPE && !job->stream && job->sent == 0) {
                job->stream = true;  // a pipe or FIFO has no offsets: read it as a stream
                continue;
            }
            if (r < 0 && errno == EINTR) continue;  // as the TLS path: not a file error
            if (r < 0) {
                finish_sendfile(-errno);
                return;
            }
            n = r == 0 ? 0 : sys::send(fd_, buf, (size_t)r, MSG_NOSIGNAL);
            if (job->stream && r > 0 && n < r && (n >= 0 || would_block(errno))) {
                // Bytes read from a stream cannot be read again: queue what the socket did
                // not take; write_ready drains it before the next step.
                size_t took = n > 0 ? (size_t)n : 0;
                try {
                    wbuf_.append(buf + took, (size_t)r - took);
                } catch (const std::bad_alloc &) {
                    finish_sendfile(AIOL_ENOMEM);
                    fatal_error(AIOL_ENOMEM, "out of memory in sendfile", false);
                    return;
                }
                job->sent += (uint64_t)r;
                job->offset += (uint64_t)r;
                if (job->remaining != UINT64_MAX) job->remaining -= (uint64_t)r;
                return;
            }
        }
        if (n < 0) {
            if (would_block(errno)) return;  // wait for writability
            int err = -errno;
            finish_sendfile(err);
            fatal_error(err, "Fatal error in sendfile", false);
            return;
        }
        if (n == 0) break;  // end of file
        job->sent += (uint64_t)n;
        job->offset += (uint64_t)n;
        if (job->remaining != UINT64_MAX) job->remaining -= (uint64_t)n;
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
    }
    if (job->remaining == 0 || budget > 0) finish_sendfile(0);
}

void SocketTransport::finish_sendfile(int status) {
    SendfileJob *job = sendfile_;
    sendfile_ = nullptr;
    if (!conn_lost_) update_interest();  // reading resumes
    if (job->done)
        loop_->invoke([&] { job->done(self(), status, job->sent, job->ud); },
                      (const void *)job->done);
    delete job;  // a close() inside done schedules connection_lost itself
}

// ---- the rest -------------------------------------------------------------------------

int SocketTransport::set_protocol(const aiol_protocol &p, void *ud) {
    if (lost_) return AIOL_ECLOSED;
    bool same = p.destroy == proto_.destroy && ud == ud_;
    if (!same && proto_.destroy) loop_->defer_destroy(proto_.destroy, ud_);
    proto_ = p;
    ud_ = ud;
    return 0;
}

int SocketTransport::copy_name(bool peer, sockaddr_storage *addr, socklen_t *len) const {
    const StoredAddress &src = peer ? peer_ : local_;
    socklen_t have = src.size();
    if (have == 0) return -ENOTCONN;
    socklen_t n = *len < have ? *len : have;
    __builtin_memcpy(addr, src.data(), n);
    *len = have;
    return 0;
}

}  // namespace aiol
