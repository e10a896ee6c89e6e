/* -Dtls=disabled: every TLS function exists and returns AIOL_ENOTSUP (NULL for the pointer
   getters); configs with a context are refused with AIOL_ENOTSUP. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "aioloop.h"

static int dummy_factory(void *fd, const struct sockaddr *p, socklen_t l, void **ud) {
    (void)fd, (void)p, (void)l;
    *ud = NULL;
    return 0;
}

static void everything_enotsup(void **state) {
    (void)state;
    assert_int_equal(aiol_has_feature("tls"), 0);
    aiol_tls_context *ctx = (aiol_tls_context *)1;
    assert_int_equal(aiol_tls_context_new_server("c", "k", &ctx), AIOL_ENOTSUP);
    assert_null(ctx);
    assert_int_equal(aiol_tls_context_new_server_pem("c", 1, "k", 1, &ctx), AIOL_ENOTSUP);
    assert_int_equal(aiol_tls_context_new_client(NULL, 1, &ctx), AIOL_ENOTSUP);
    const char *p[] = {"h2"};
    assert_int_equal(aiol_tls_context_set_alpn(NULL, p, 1), AIOL_ENOTSUP);
    assert_int_equal(aiol_tls_context_set_min_version(NULL, 0x0303), AIOL_ENOTSUP);
    assert_null(aiol_tls_context_ssl_ctx(NULL));
    assert_int_equal(aiol_tls_context_free(NULL), AIOL_ENOTSUP);
    const char *proto;
    size_t len;
    const void *der;
    assert_int_equal(aiol_transport_tls_alpn(NULL, &proto, &len), AIOL_ENOTSUP);
    assert_int_equal(aiol_transport_tls_peer_cert_der(NULL, &der, &len), AIOL_ENOTSUP);
    assert_null(aiol_transport_tls_server_name(NULL));
    assert_null(aiol_transport_tls_ssl(NULL));

    aiol_loop *loop;
    assert_int_equal(aiol_loop_new(&loop), 0);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = "127.0.0.1";
    cfg.tls = (aiol_tls_context *)&cfg;  /* any non-NULL pointer */
    aiol_protocol proto_vt;
    memset(&proto_vt, 0, sizeof proto_vt);
    proto_vt.size = sizeof proto_vt;
    aiol_server *s = NULL;
    assert_int_equal(aiol_server_start(loop, &cfg, &proto_vt, dummy_factory, NULL, NULL, &s),
                     AIOL_ENOTSUP);
    aiol_connect_config cc;
    memset(&cc, 0, sizeof cc);
    cc.size = sizeof cc;
    cc.host = "127.0.0.1";
    cc.port = 1;
    cc.tls = (aiol_tls_context *)&cfg;
    assert_int_equal(aiol_loop_connect(loop, &cc, &proto_vt, NULL, NULL, NULL, NULL), AIOL_ENOTSUP);
    assert_int_equal(aiol_loop_close(loop), 0);
    assert_int_equal(aiol_loop_free(loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(everything_enotsup)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
