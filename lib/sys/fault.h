/* Fault injection for tests (C API). Only in the static test library libaioloop_faults.a
 * that -Dfault_injection=true builds (lib/sys/meson.build); libaioloop.so neither has nor
 * exports any of this.
 *
 * A rule per call: of the calls the library makes on the thread that set the rule, let
 * `after` through, then fault the next `count` (-1: all that follow): fail them with errno
 * `err`, or (aiol_fault_short) cut each one's length to at most max_len bytes. Rules are
 * per call kind and stay until aiol_fault_clear. AIOL_FAULT_ALLOC fails C++ allocations
 * (operator new throws std::bad_alloc, the nothrow forms return NULL) and, after
 * aiol_fault_hook_openssl, OpenSSL's. */
#ifndef AIOL_FAULT_H
#define AIOL_FAULT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum aiol_fault_call {
    AIOL_FAULT_ACCEPT,     /* accept4: the accept loop */
    AIOL_FAULT_RECV,       /* recv: transports' reads (plain and TLS) */
    AIOL_FAULT_READ,       /* read / pread: the sendfile fallback's file reads */
    AIOL_FAULT_SEND,       /* send: write, write_ready, the sendfile fallback, TLS flushes */
    AIOL_FAULT_SENDMSG,    /* sendmsg: aiol_transport_writev */
    AIOL_FAULT_SENDFILE,   /* sendfile(2) */
    AIOL_FAULT_EPOLL_CTL,  /* epoll_ctl: every registration change (epoll backend) */
    AIOL_FAULT_EVENTFD,    /* eventfd: the loop's wake-up fd in aiol_loop_new */
    AIOL_FAULT_PIPE2,      /* pipe2: the wake-up fallback, the signal pipe */
    AIOL_FAULT_ALLOC,      /* operator new, the write buffer's malloc, OpenSSL's once hooked */
    AIOL_FAULT_CALLS
};

void aiol_fault_set(int call, int err, long after, long count);
void aiol_fault_short(int call, size_t max_len, long after, long count);
void aiol_fault_clear(void);             /* every rule off, every counter zero */
long aiol_fault_hits(int call);          /* calls faulted since the rule was set */
long aiol_fault_seen(int call);          /* calls checked (faulted or not) since then */

/* Routes OpenSSL's allocations through AIOL_FAULT_ALLOC; call before anything uses
   OpenSSL. Returns 1, or 0 if OpenSSL has allocated already or TLS is not built in. */
int aiol_fault_hook_openssl(void);

#ifdef __cplusplus
}
#endif

#endif
