/* shim.c — C definitions for the Go binding: thin wrappers from the library's callback
 * signatures to the trampolines exported by callbacks.go. Nothing here holds Go memory:
 * user_data is always a runtime/cgo.Handle value. */
#include "shim.h"
#include "_cgo_export.h"

#define H(ud) ((uintptr_t)(ud))
#define UD(h) ((void *)(h))

static void cb(aiol_loop *loop, void *ud) {
    (void)loop;
    aiolgoCallback(H(ud));
}

static void fd_cb(aiol_loop *loop, int fd, void *ud) {
    (void)loop;
    aiolgoFdCallback(fd, H(ud));
}

static void destroy(void *ud) { aiolgoDestroy(H(ud)); }

static void exception(const aiol_error_context *ctx, void *ud) {
    aiolgoException((aiol_error_context *)ctx, H(ud));
}

static int factory(void *fd, const struct sockaddr *peer, socklen_t peer_len, void **ud) {
    (void)peer, (void)peer_len;
    uintptr_t h = aiolgoFactory(H(fd));
    if (!h) return -1;
    *ud = UD(h);
    return 0;
}

static void connection_made(aiol_transport *t, void *ud) { aiolgoConnectionMade(t, H(ud)); }

static void data_received(aiol_transport *t, const void *data, size_t len, void *ud) {
    aiolgoDataReceived(t, (void *)data, len, H(ud));
}

static int eof_received(aiol_transport *t, void *ud) { return aiolgoEOFReceived(t, H(ud)); }

static void connection_lost(aiol_transport *t, int status, void *ud) {
    aiolgoConnectionLost(t, status, H(ud));
}

static void pause_writing(aiol_transport *t, void *ud) { aiolgoPauseWriting(t, H(ud)); }

static void resume_writing(aiol_transport *t, void *ud) { aiolgoResumeWriting(t, H(ud)); }

static void *get_buffer(aiol_transport *t, size_t hint, size_t *len, void *ud) {
    return aiolgoGetBuffer(t, hint, len, H(ud));
}

static void buffer_updated(aiol_transport *t, size_t n, void *ud) {
    aiolgoBufferUpdated(t, n, H(ud));
}

static void connect_done(aiol_transport *t, int status, void *ud) {
    aiolgoConnectDone(t, status, H(ud));
}

static void wait_closed(aiol_server *s, void *ud) {
    (void)s;
    aiolgoWaitClosed(H(ud));
}

const aiol_protocol aiolgo_protocol = {
    .size = sizeof(aiol_protocol),
    .connection_made = connection_made,
    .data_received = data_received,
    .eof_received = eof_received,
    .connection_lost = connection_lost,
    .pause_writing = pause_writing,
    .resume_writing = resume_writing,
    .destroy = destroy,
};

const aiol_protocol aiolgo_buffered_protocol = {
    .size = sizeof(aiol_protocol),
    .connection_made = connection_made,
    .data_received = NULL, /* never called: get_buffer is set */
    .eof_received = eof_received,
    .connection_lost = connection_lost,
    .pause_writing = pause_writing,
    .resume_writing = resume_writing,
    .get_buffer = get_buffer,
    .buffer_updated = buffer_updated,
    .destroy = destroy, /* the same: a switch with the same user_data destroys nothing */
};

int aiolgo_transport_set_vtable(aiol_transport *t, int buffered, uintptr_t h) {
    return aiol_transport_set_protocol(t, buffered ? &aiolgo_buffered_protocol : &aiolgo_protocol,
                                       UD(h));
}

int aiolgo_call_soon(aiol_loop *loop, uintptr_t h, aiol_handle **ret) {
    return aiol_loop_call_soon(loop, cb, UD(h), destroy, ret);
}

int aiolgo_call_later(aiol_loop *loop, uint64_t delay_ns, uintptr_t h, aiol_handle **ret) {
    return aiol_loop_call_later(loop, delay_ns, cb, UD(h), destroy, ret);
}

int aiolgo_call_soon_threadsafe(aiol_loop *loop, uintptr_t h) {
    return aiol_loop_call_soon_threadsafe(loop, cb, UD(h), destroy);
}

int aiolgo_add_reader(aiol_loop *loop, int fd, uintptr_t h) {
    return aiol_loop_add_reader(loop, fd, fd_cb, UD(h), destroy);
}

int aiolgo_add_writer(aiol_loop *loop, int fd, uintptr_t h) {
    return aiol_loop_add_writer(loop, fd, fd_cb, UD(h), destroy);
}

int aiolgo_set_exception_handler(aiol_loop *loop, uintptr_t h) {
    if (!h) return aiol_loop_set_exception_handler(loop, NULL, NULL, NULL);
    return aiol_loop_set_exception_handler(loop, exception, UD(h), destroy);
}

int aiolgo_server_start(aiol_loop *loop, const aiol_server_config *cfg, uintptr_t h,
                        aiol_server **ret) {
    return aiol_server_start(loop, cfg, &aiolgo_protocol, factory, UD(h), destroy, ret);
}

int aiolgo_server_wait_closed(aiol_server *s, uintptr_t h) {
    return aiol_server_wait_closed(s, wait_closed, UD(h));
}

int aiolgo_connect(aiol_loop *loop, const aiol_connect_config *cfg, uintptr_t h,
                   aiol_handle **ret) {
    /* One handle serves both: the protocol's destroy (the last callback) deletes it,
       and done always runs before that destroy. */
    return aiol_loop_connect(loop, cfg, &aiolgo_protocol, UD(h), connect_done, UD(h), ret);
}

int aiolgo_adopt(aiol_loop *loop, int fd, uintptr_t h, aiol_transport **ret) {
    return aiol_transport_adopt(loop, fd, &aiolgo_protocol, UD(h), ret);
}
