/* The public header alone, as strict C99 (-std=c99 -pedantic-errors -Werror): it must not
   need any other include, any GNU extension or a newer standard. */
#include <aioloop.h>

#include <stdio.h>

/* C99 has no _Static_assert. */
#define CHECK(name, cond) typedef char check_##name[(cond) ? 1 : -1]

CHECK(version_hex, AIOL_VERSION_HEX ==
                       ((AIOL_VERSION_MAJOR << 16) | (AIOL_VERSION_MINOR << 8) | AIOL_VERSION_PATCH));
CHECK(eclosed, AIOL_ECLOSED == -30001);
CHECK(einval_is_errno, AIOL_EINVAL == -EINVAL);
CHECK(ctx_size_first, offsetof(aiol_error_context, size) == 0);
CHECK(run_modes, AIOL_RUN_DEFAULT == 0 && AIOL_RUN_ONCE == 1 && AIOL_RUN_NOWAIT == 2);

static void on_timer(aiol_loop *loop, void *user_data) {
    (void)loop;
    (void)user_data;
}

int main(void) {
    aiol_callback cb = on_timer;
    aiol_error_context ctx = {0};
    aiol_loop *loop = NULL;
    ctx.size = sizeof ctx;
    ctx.code = AIOL_ETHREAD;
    (void)cb;
    (void)loop;
    /* The loaded library must be the one the header describes. */
    if (aiol_version() != AIOL_VERSION_HEX) {
        printf("header says %06x, library says %06x\n", (unsigned)AIOL_VERSION_HEX,
               aiol_version());
        return 1;
    }
    printf("C99: aioloop %s, %s\n", aiol_version_string(), aiol_err_name(ctx.code));
    return 0;
}
