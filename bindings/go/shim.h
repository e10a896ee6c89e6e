/* shim.h — the C side of the Go binding.
 *
 * The Go trampolines are exported from callbacks.go (cgo cannot export Go functions from a
 * file whose preamble defines C functions, so the definitions live in shim.c). Every
 * registration goes through an aiolgo_* wrapper that takes the cgo.Handle as a uintptr_t
 * and turns it into the library's void *user_data, so Go code never converts an integer
 * to unsafe.Pointer. */
#ifndef AIOLGO_SHIM_H
#define AIOLGO_SHIM_H

#include <aioloop.h>
#include <stdint.h>

/* The two protocol vtables. They differ only in the read path and share destroy, so
   switching one transport between them with the same user_data destroys nothing (see
   aiol_transport_set_protocol). Servers, dials and adopted sockets register the plain one
   (data_received: one C->Go call per read); a connection whose Go protocol is a
   BufferedProtocol is switched to the buffered one (get_buffer + buffer_updated) in its
   connection_made, before any read, and SetProtocol switches either way (protocol.go). */
extern const aiol_protocol aiolgo_protocol;
extern const aiol_protocol aiolgo_buffered_protocol;

/* aiol_transport_set_protocol(t, buffered ? &aiolgo_buffered_protocol : &aiolgo_protocol,
   the user_data h): h must be the transport's current user_data. */
int aiolgo_transport_set_vtable(aiol_transport *t, int buffered, uintptr_t h);

int aiolgo_call_soon(aiol_loop *loop, uintptr_t h, aiol_handle **ret);
int aiolgo_call_later(aiol_loop *loop, uint64_t delay_ns, uintptr_t h, aiol_handle **ret);
int aiolgo_call_soon_threadsafe(aiol_loop *loop, uintptr_t h);
int aiolgo_add_reader(aiol_loop *loop, int fd, uintptr_t h);
int aiolgo_add_writer(aiol_loop *loop, int fd, uintptr_t h);
int aiolgo_set_exception_handler(aiol_loop *loop, uintptr_t h);
int aiolgo_server_start(aiol_loop *loop, const aiol_server_config *cfg, uintptr_t h,
                        aiol_server **ret);
int aiolgo_server_wait_closed(aiol_server *s, uintptr_t h);
int aiolgo_connect(aiol_loop *loop, const aiol_connect_config *cfg, uintptr_t h,
                   aiol_handle **ret);
int aiolgo_adopt(aiol_loop *loop, int fd, uintptr_t h, aiol_transport **ret);

#endif
