// extern "C" shims for TLS contexts and the TLS getters of transports. Every function
// exists in every build; without TLS (-Dtls=disabled) each returns AIOL_ENOTSUP (or
// NULL for the pointer getters).
#include <climits>
#include <cstring>
#include <vector>

#include "aioloop.h"
#include "config.h"
#include "guard.h"
#include "../net/transport.h"

#if AIOL_HAVE_TLS
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../tls/tls_layer.h"
#endif

#define AIOL_API extern "C" AIOL_EXPORT

using aiol::guard;

#if AIOL_HAVE_TLS

namespace {

SSL_CTX *new_ssl_ctx(bool server) {
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx) return nullptr;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);  // asyncio / ssl defaults
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

int wrap(SSL_CTX *ssl_ctx, bool server, bool verify, aiol_tls_context **ret) {
    auto *c = new (std::nothrow) aiol_tls_context();
    if (!c) {
        SSL_CTX_free(ssl_ctx);
        return AIOL_ENOMEM;
    }
    c->ctx = ssl_ctx;
    c->server = server;
    c->verify = verify;
    *ret = c;
    return 0;
}

int alpn_select(SSL *, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                unsigned int inlen, void *arg) {
    auto *c = static_cast<aiol_tls_context *>(arg);
    unsigned char *o = nullptr;
    // Server preference order (ssl.SSLContext.set_alpn_protocols).
    if (SSL_select_next_proto(&o, outlen, c->alpn.data(), (unsigned)c->alpn.size(), in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;  // no overlap: go on without ALPN (as Python does)
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

}  // namespace

AIOL_API int aiol_tls_context_new_server(const char *cert_pem_path, const char *key_pem_path,
                                         aiol_tls_context **ret) {
    if (!cert_pem_path || !key_pem_path || !ret) return AIOL_EINVAL;
    ERR_clear_error();
    SSL_CTX *ctx = new_ssl_ctx(true);
    if (!ctx) return AIOL_ENOMEM;
    // The certificate file may hold the chain after the leaf.
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_pem_path) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_pem_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return AIOL_ETLS;
    }
    return wrap(ctx, true, false, ret);
}

AIOL_API int aiol_tls_context_new_server_pem(const void *cert, size_t cert_len, const void *key,
                                             size_t key_len, aiol_tls_context **ret) {
    if (!cert || !key || !cert_len || !key_len || !ret || cert_len > INT_MAX || key_len > INT_MAX)
        return AIOL_EINVAL;
    ERR_clear_error();
    SSL_CTX *ctx = new_ssl_ctx(true);
    if (!ctx) return AIOL_ENOMEM;
    bool ok = false;
    BIO *cb = BIO_new_mem_buf(cert, (int)cert_len);
    BIO *kb = BIO_new_mem_buf(key, (int)key_len);
    if (cb && kb) {
        X509 *leaf = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
        EVP_PKEY *pkey = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
        ok = leaf && pkey && SSL_CTX_use_certificate(ctx, leaf) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
        X509_free(leaf);
        EVP_PKEY_free(pkey);
        while (ok) {  // the rest of the PEM: the chain
            X509 *ca = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
            if (!ca) break;
            if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
                X509_free(ca);
                ok = false;
            }
        }
    }
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    if (!ok) {
        SSL_CTX_free(ctx);
        return AIOL_ETLS;
    }
    return wrap(ctx, true, false, ret);
}

AIOL_API int aiol_tls_context_new_client(const char *ca_pem_path, int verify,
                                         aiol_tls_context **ret) {
    if (!ret) return AIOL_EINVAL;
    ERR_clear_error();
    SSL_CTX *ctx = new_ssl_ctx(false);
    if (!ctx) return AIOL_ENOMEM;
    int ok = ca_pem_path ? SSL_CTX_load_verify_locations(ctx, ca_pem_path, nullptr)
                         : SSL_CTX_set_default_verify_paths(ctx);
    ERR_clear_error();
    if (ok != 1 && (ca_pem_path || verify)) {
        SSL_CTX_free(ctx);
        return AIOL_ETLS;
    }
    SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    return wrap(ctx, false, verify != 0, ret);
}

AIOL_API int aiol_tls_context_set_alpn(aiol_tls_context *ctx, const char *const *protocols,
                                       size_t n) {
    if (!ctx || (n && !protocols)) return AIOL_EINVAL;
    if (ctx->used.load(std::memory_order_relaxed)) return AIOL_ESTATE;
    return guard([&] {
        std::vector<unsigned char> wire;
        for (size_t i = 0; i < n; i++) {
            size_t len = protocols[i] ? strlen(protocols[i]) : 0;
            if (len == 0 || len > 255) return AIOL_EINVAL;
            wire.push_back((unsigned char)len);
            wire.insert(wire.end(), protocols[i], protocols[i] + len);
        }
        if (ctx->server) {
            ctx->alpn = std::move(wire);
            if (ctx->alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx->ctx, nullptr, nullptr);
            else SSL_CTX_set_alpn_select_cb(ctx->ctx, alpn_select, ctx);
        } else {
            // SSL_CTX_set_alpn_protos returns 0 on success
            if (SSL_CTX_set_alpn_protos(ctx->ctx, wire.empty() ? nullptr : wire.data(),
                                        (unsigned)wire.size()) != 0)
                return AIOL_ENOMEM;
            ctx->alpn = std::move(wire);
        }
        return 0;
    });
}

AIOL_API int aiol_tls_context_set_min_version(aiol_tls_context *ctx, int version) {
    if (!ctx) return AIOL_EINVAL;
    if (version != 0 && version != TLS1_2_VERSION && version != TLS1_3_VERSION)
        return AIOL_EINVAL;
    return SSL_CTX_set_min_proto_version(ctx->ctx, version ? version : TLS1_2_VERSION) == 1
               ? 0
               : AIOL_ETLS;
}

AIOL_API void *aiol_tls_context_ssl_ctx(aiol_tls_context *ctx) { return ctx ? ctx->ctx : nullptr; }

AIOL_API int aiol_tls_context_free(aiol_tls_context *ctx) {
    if (ctx) aiol::tls_context_unref(ctx);
    return 0;
}

namespace {
int check_tls_transport(const aiol_transport *t) {
    if (!t) return AIOL_EINVAL;
    if (!t->tls()) return AIOL_EINVAL;  // a plain transport
    return 0;
}
}  // namespace

AIOL_API int aiol_transport_tls_alpn(const aiol_transport *t, const char **proto, size_t *len) {
    if (!proto || !len) return AIOL_EINVAL;
    *proto = nullptr;
    *len = 0;
    if (int rc = check_tls_transport(t)) return rc;
    const unsigned char *p = nullptr;
    unsigned l = 0;
    SSL_get0_alpn_selected(t->tls()->ssl, &p, &l);
    if (p && l) {
        *proto = reinterpret_cast<const char *>(p);
        *len = l;
    }
    return 0;
}

AIOL_API const char *aiol_transport_tls_server_name(const aiol_transport *t) {
    if (check_tls_transport(t)) return nullptr;
    return SSL_get_servername(t->tls()->ssl, TLSEXT_NAMETYPE_host_name);
}

AIOL_API int aiol_transport_tls_peer_cert_der(const aiol_transport *t, const void **der,
                                              size_t *len) {
    if (!der || !len) return AIOL_EINVAL;
    *der = nullptr;
    *len = 0;
    if (int rc = check_tls_transport(t)) return rc;
    aiol::TlsLayer *l = t->tls();
    if (!l->peer_der_done) {
        X509 *cert = SSL_get0_peer_certificate(l->ssl);
        if (!cert) return 0;  // none (yet): a server that did not ask for one
        int n = i2d_X509(cert, nullptr);
        if (n <= 0) return AIOL_ETLS;
        int rc = guard([&] {
            l->peer_der.resize((size_t)n);
            unsigned char *p = l->peer_der.data();
            i2d_X509(cert, &p);
            return 0;
        });
        if (rc) return rc;
        l->peer_der_done = true;
    }
    *der = l->peer_der.data();
    *len = l->peer_der.size();
    return 0;
}

AIOL_API void *aiol_transport_tls_ssl(const aiol_transport *t) {
    return t && t->tls() ? t->tls()->ssl : nullptr;
}

#else  // !AIOL_HAVE_TLS

AIOL_API int aiol_tls_context_new_server(const char *, const char *, aiol_tls_context **ret) {
    if (ret) *ret = nullptr;
    return AIOL_ENOTSUP;
}
AIOL_API int aiol_tls_context_new_server_pem(const void *, size_t, const void *, size_t,
                                             aiol_tls_context **ret) {
    if (ret) *ret = nullptr;
    return AIOL_ENOTSUP;
}
AIOL_API int aiol_tls_context_new_client(const char *, int, aiol_tls_context **ret) {
    if (ret) *ret = nullptr;
    return AIOL_ENOTSUP;
}
AIOL_API int aiol_tls_context_set_alpn(aiol_tls_context *, const char *const *, size_t) {
    return AIOL_ENOTSUP;
}
AIOL_API int aiol_tls_context_set_min_version(aiol_tls_context *, int) { return AIOL_ENOTSUP; }
AIOL_API void *aiol_tls_context_ssl_ctx(aiol_tls_context *) { return nullptr; }
AIOL_API int aiol_tls_context_free(aiol_tls_context *) { return AIOL_ENOTSUP; }
AIOL_API int aiol_transport_tls_alpn(const aiol_transport *, const char **proto, size_t *len) {
    if (proto) *proto = nullptr;
    if (len) *len = 0;
    return AIOL_ENOTSUP;
}
AIOL_API const char *aiol_transport_tls_server_name(const aiol_transport *) { return nullptr; }
AIOL_API int aiol_transport_tls_peer_cert_der(const aiol_transport *, const void **der,
                                              size_t *len) {
    if (der) *der = nullptr;
    if (len) *len = 0;
    return AIOL_ENOTSUP;
}
AIOL_API void *aiol_transport_tls_ssl(const aiol_transport *) { return nullptr; }

#endif
