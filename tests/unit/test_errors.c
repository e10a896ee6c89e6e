/* Error codes, names and messages; version and feature probes. */
#include "common.h"

/* The library codes have their fixed values, messages and names. */
static void library_codes_fixed(void **state) {
    UNUSED(state);
    assert_int_equal(AIOL_ECLOSED, -30001);
    assert_int_equal(AIOL_ESTATE, -30002);
    assert_int_equal(AIOL_ETHREAD, -30003);
    assert_int_equal(AIOL_ETLS, -30004);
    assert_int_equal(AIOL_EAI_NONAME, -30101);
    assert_int_equal(AIOL_EAI_AGAIN, -30102);
    assert_int_equal(AIOL_EAI_FAIL, -30103);
#define CHECK_CODE(name, value, msg)                                  \
    assert_int_equal(AIOL_##name, value);                             \
    assert_string_equal(aiol_strerror(value), msg);                   \
    assert_string_equal(aiol_err_name(value), "AIOL_" #name);
    AIOL_LIBRARY_ERROR_MAP(CHECK_CODE)
#undef CHECK_CODE
}

/* System codes are exactly -errno. */
static void system_codes_are_minus_errno(void **state) {
    UNUSED(state);
    assert_int_equal(AIOL_EINVAL, -EINVAL);
    assert_int_equal(AIOL_EPERM, -EPERM);
    assert_int_equal(AIOL_EBADF, -EBADF);
    assert_int_equal(AIOL_EAGAIN, -EAGAIN);
    assert_int_equal(AIOL_ENOMEM, -ENOMEM);
    assert_int_equal(AIOL_EBUSY, -EBUSY);
    assert_int_equal(AIOL_ENOTSUP, -EOPNOTSUPP);
    assert_int_equal(AIOL_ECONNRESET, -ECONNRESET);
    assert_int_equal(AIOL_ECANCELED, -ECANCELED);
    assert_int_equal(AIOL_ETIMEDOUT, -ETIMEDOUT);
    assert_string_equal(aiol_err_name(AIOL_ECONNRESET), "ECONNRESET");
    assert_string_equal(aiol_err_name(AIOL_EINVAL), "EINVAL");
    assert_string_equal(aiol_err_name(AIOL_ENOTSUP), "EOPNOTSUPP");
    assert_string_equal(aiol_strerror(-ECONNRESET), strerror(ECONNRESET));
    assert_string_equal(aiol_strerror(-EINVAL), strerror(EINVAL));
}

/* Every value from -133 to 0 and beyond: never NULL, never empty; a known errno gets
   its own name, an unknown one "UNKNOWN" / "Unknown error". */
static void every_errno_named(void **state) {
    UNUSED(state);
    for (int e = 1; e <= 133; e++) {
        const char *msg = aiol_strerror(-e), *name = aiol_err_name(-e);
        assert_non_null(msg);
        assert_non_null(name);
        assert_true(msg[0] != '\0');
        assert_true(name[0] != '\0');
        const char *sys = strerrorname_np(e);
        if (sys) assert_string_equal(name, sys);
        else assert_string_equal(name, "UNKNOWN");
        /* stable across calls (static text) */
        assert_ptr_equal(aiol_strerror(-e), msg);
        assert_ptr_equal(aiol_err_name(-e), name);
    }
    int others[] = {0, 1, 5, 30001, 12345, -134, -4095, -4096, -29999, -30000, -30005,
                    -30100, -30104, -99999, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_non_null(aiol_strerror(others[i]));
        assert_non_null(aiol_err_name(others[i]));
        assert_true(aiol_strerror(others[i])[0] != '\0');
    }
    int unknown[] = {1, 5, 30001, -30000, -30005, -30104, -99999, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_string_equal(aiol_strerror(unknown[i]), "Unknown error");
        assert_string_equal(aiol_err_name(unknown[i]), "UNKNOWN");
    }
    assert_string_not_equal(aiol_err_name(0), "UNKNOWN");
}

/* The library loaded is the one the header describes. */
static void version_matches_header(void **state) {
    UNUSED(state);
    assert_int_equal(aiol_version(), AIOL_VERSION_HEX);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", AIOL_VERSION_MAJOR, AIOL_VERSION_MINOR,
             AIOL_VERSION_PATCH);
    assert_string_equal(aiol_version_string(), want);
}

/* Exactly one poller is built in; unknown names are 0. */
static void feature_probes(void **state) {
    UNUSED(state);
    assert_int_equal(aiol_has_feature("epoll") + aiol_has_feature("poll"), 1);
    assert_int_equal(aiol_has_feature("nonsense"), 0);
    assert_int_equal(aiol_has_feature(""), 0);
    assert_int_equal(aiol_has_feature("EPOLL"), 0);
    assert_int_equal(aiol_has_feature(NULL), 0);
}

static const struct CMUnitTest tests[] = {
    CASE(library_codes_fixed),
    CASE(system_codes_are_minus_errno),
    CASE(every_errno_named),
    CASE(version_matches_header),
    CASE(feature_probes),
};

TEST_MAIN("errors", tests)
