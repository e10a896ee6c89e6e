// TLS over OpenSSL: the context (aiol_tls_context) and the per-connection layer (an SSL
// object over two in-memory BIOs, as asyncio's sslproto.py drives ssl.MemoryBIO). Internal:
// only the files of lib/tls include it.
#pragma once

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/loop.h"
#include "../net/write_buffer.h"
#include "tls.h"

struct aiol_tls_context {
    SSL_CTX *ctx = nullptr;
    std::atomic<int> refs{1};
    std::atomic<bool> used{false};  // a server or connect took it: ALPN is fixed
    bool server = false;
    bool verify = false;
    std::vector<unsigned char> alpn;  // wire format (length-prefixed)
};

namespace aiol {

struct TlsLayer {
    aiol_tls_context *ctx = nullptr;
    SSL *ssl = nullptr;
    BIO *rbio = nullptr;  // bytes received from the socket, for OpenSSL to read
    BIO *wbio = nullptr;  // bytes OpenSSL produced, for the socket
    // What rbio reads: first `in` (ciphertext kept from earlier reads), then `ext` (this
    // recv, still in the loop's read buffer: the common case costs no copy). Whatever
    // OpenSSL has not taken when the read is done moves from ext to in.
    WriteBuffer in;
    const unsigned char *ext = nullptr;
    size_t ext_len = 0;
    uint64_t handshake_timeout_ns = 0;
    uint64_t shutdown_timeout_ns = 0;
    Handle *handshake_timer = nullptr;
    Handle *shutdown_timer = nullptr;
    bool resume_scheduled = false;
    bool shutdown_sent = false;
    bool peer_close_notify = false;  // the peer closed TLS cleanly; our answer may not reach it
    std::vector<unsigned char> peer_der;  // cached DER of the peer certificate
    bool peer_der_done = false;
};

// OpenSSL's first queued error as text ("" if none); clears the queue.
std::string tls_error_string();

}  // namespace aiol
