// The TLS layer's interface to the rest of the library, free of OpenSSL headers.
//
// A TlsLayer is asyncio's SSLProtocol reduced to what a SocketTransport needs: an SSL
// object over two memory BIOs. The transport feeds it the bytes it receives and sends
// what it produces; the transport's code for TLS lives in tls_layer.cpp. Only built (and
// only referenced) when AIOL_HAVE_TLS is 1.
#pragma once

#include <cstdint>

#include "aioloop.h"

namespace aiol {

struct TlsLayer;

void tls_context_ref(aiol_tls_context *ctx);
void tls_context_unref(aiol_tls_context *ctx);
bool tls_context_is_server(const aiol_tls_context *ctx);

// A layer for one connection (server side when server_hostname is NULL and the context
// is a server context). Throws std::bad_alloc (or std::system_error) on failure.
TlsLayer *tls_layer_new(aiol_tls_context *ctx, const char *server_hostname,
                        uint64_t handshake_timeout_ns, uint64_t shutdown_timeout_ns);
void tls_layer_free(TlsLayer *l);

}  // namespace aiol
