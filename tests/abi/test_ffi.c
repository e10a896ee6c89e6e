/* libffi ABI test: libaioloop used exactly as ctypes, cffi or JNA use it.
 *
 * The library is found with dlopen (path in argv[1]) and dlsym only; every call goes
 * through ffi_call with a hand-declared ffi_cif; every callback handed to the library
 * (timers, the fd reader, destroys, the exception handler) is an ffi closure made with
 * ffi_closure_alloc + ffi_prep_closure_loc. The error-context layout is declared here as
 * an FFI user would declare it (a ctypes.Structure); aioloop.h is included only to check
 * that declaration and the constants at compile time. Nothing links against the library,
 * so a direct aiol_* call would not even link.
 *
 * Output is TAP, one line per check.
 */
#include <dlfcn.h>
#include <ffi.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <aioloop.h> /* compile-time cross-checks only, see above */

/* ---- what an FFI user declares -------------------------------------------------------- */

struct ffi_error_context { /* aiol_error_context, by hand */
    size_t size;
    int code;
    const char *message;
    const char *detail;
    void *loop;
    int object_kind;
    void *object;
    void *protocol_data;
};

#define K_EINVAL (-22)
#define K_ECLOSED (-30001)
#define K_ESTATE (-30002)
#define K_OBJ_HANDLE 3
#define K_RUN_DEFAULT 0

#define SAME_OFFSET(f) (offsetof(struct ffi_error_context, f) == offsetof(aiol_error_context, f))
typedef char layout_matches_header[(sizeof(struct ffi_error_context) == sizeof(aiol_error_context) &&
                                    SAME_OFFSET(size) && SAME_OFFSET(code) && SAME_OFFSET(message) &&
                                    SAME_OFFSET(detail) && SAME_OFFSET(loop) &&
                                    SAME_OFFSET(object_kind) && SAME_OFFSET(object) &&
                                    SAME_OFFSET(protocol_data))
                                       ? 1
                                       : -1];
typedef char constants_match_header[(K_EINVAL == AIOL_EINVAL && K_ECLOSED == (int)AIOL_ECLOSED &&
                                     K_ESTATE == (int)AIOL_ESTATE &&
                                     K_OBJ_HANDLE == (int)AIOL_OBJ_HANDLE &&
                                     K_RUN_DEFAULT == (int)AIOL_RUN_DEFAULT)
                                        ? 1
                                        : -1];

/* ---- TAP ------------------------------------------------------------------------------ */

static int n_checks, n_failed;

static int check(int ok, const char *fmt, ...) {
    va_list ap;
    n_checks++;
    if (!ok) n_failed++;
    printf("%sok %d - ", ok ? "" : "not ", n_checks);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return ok;
}

static void note(const char *fmt, ...) {
    va_list ap;
    printf("# ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void bail_out(const char *why) {
    printf("Bail out! %s\n", why);
    exit(1);
}

/* ---- foreign functions ---------------------------------------------------------------- */

struct foreign {
    const char *name;
    void (*fn)(void);
    ffi_cif cif;
    ffi_type *args[8];
};

static void *lib;

/* Resolves name with dlsym and prepares its cif: ret, nargs, then the arg types. */
static void declare(struct foreign *f, const char *name, ffi_type *ret, unsigned nargs, ...) {
    va_list ap;
    void *sym;
    unsigned i;
    f->name = name;
    dlerror();
    sym = dlsym(lib, name);
    if (!check(sym != NULL, "dlsym(%s)", name)) {
        const char *err = dlerror();
        bail_out(err ? err : name);
    }
    memcpy(&f->fn, &sym, sizeof sym); /* object pointer to function pointer, as FFI does */
    va_start(ap, nargs);
    for (i = 0; i < nargs; i++) f->args[i] = va_arg(ap, ffi_type *);
    va_end(ap);
    if (ffi_prep_cif(&f->cif, FFI_DEFAULT_ABI, nargs, ret, f->args) != FFI_OK)
        bail_out("ffi_prep_cif failed");
}

/* Calls f with the argument values (each a pointer to the value); returns the int. */
static int call_int(struct foreign *f, void **values) {
    ffi_arg rc = 0;
    ffi_call(&f->cif, f->fn, &rc, values);
    return (int)(ffi_sarg)rc;
}

static void *call_ptr(struct foreign *f, void **values) {
    void *rc = NULL;
    union {
        ffi_arg a;
        void *p;
    } r;
    r.a = 0;
    ffi_call(&f->cif, f->fn, &r, values);
    rc = r.p;
    return rc;
}

static uint64_t call_u64(struct foreign *f, void **values) {
    uint64_t rc = 0;
    ffi_call(&f->cif, f->fn, &rc, values);
    return rc;
}

static struct foreign f_loop_new, f_call_later, f_call_soon, f_add_reader, f_remove_reader,
    f_run, f_close, f_free, f_strerror, f_version, f_version_string, f_set_exc,
    f_call_exc, f_loop_now, f_handle_when, f_handle_cancel, f_handle_release;

/* Thin wrappers: each packs its arguments for ffi_call, nothing else. */
static int x_loop_new(void **loop) {
    void *v[] = {&loop};
    return call_int(&f_loop_new, v);
}
static int x_call_later(void *loop, uint64_t delay, void *cb, void *ud, void *destroy,
                        void **ret) {
    void *v[] = {&loop, &delay, &cb, &ud, &destroy, &ret};
    return call_int(&f_call_later, v);
}
static int x_call_soon(void *loop, void *cb, void *ud, void *destroy, void **ret) {
    void *v[] = {&loop, &cb, &ud, &destroy, &ret};
    return call_int(&f_call_soon, v);
}
static int x_add_reader(void *loop, int fd, void *cb, void *ud, void *destroy) {
    void *v[] = {&loop, &fd, &cb, &ud, &destroy};
    return call_int(&f_add_reader, v);
}
static int x_remove_reader(void *loop, int fd) {
    void *v[] = {&loop, &fd};
    return call_int(&f_remove_reader, v);
}
static int x_run(void *loop, int mode) {
    void *v[] = {&loop, &mode};
    return call_int(&f_run, v);
}
static int x_close(void *loop) {
    void *v[] = {&loop};
    return call_int(&f_close, v);
}
static int x_free(void *loop) {
    void *v[] = {&loop};
    return call_int(&f_free, v);
}
static const char *x_strerror(int err) {
    void *v[] = {&err};
    return (const char *)call_ptr(&f_strerror, v);
}
static unsigned x_version(void) {
    ffi_arg rc = 0;
    ffi_call(&f_version.cif, f_version.fn, &rc, NULL);
    return (unsigned)rc;
}
static const char *x_version_string(void) { return (const char *)call_ptr(&f_version_string, NULL); }
static int x_set_exc(void *loop, void *h, void *ud, void *destroy) {
    void *v[] = {&loop, &h, &ud, &destroy};
    return call_int(&f_set_exc, v);
}
static int x_call_exc(void *loop, const struct ffi_error_context *ctx) {
    void *v[] = {&loop, &ctx};
    return call_int(&f_call_exc, v);
}
static uint64_t x_loop_now(void *loop) {
    void *v[] = {&loop};
    return call_u64(&f_loop_now, v);
}
static uint64_t x_handle_when(void *h) {
    void *v[] = {&h};
    return call_u64(&f_handle_when, v);
}
static int x_handle_cancel(void *h) {
    void *v[] = {&h};
    return call_int(&f_handle_cancel, v);
}
static int x_handle_release(void *h) {
    void *v[] = {&h};
    return call_int(&f_handle_release, v);
}

/* ---- closures ------------------------------------------------------------------------- */

struct closure {
    ffi_closure *closure;
    void *code; /* the C function pointer the library gets */
    ffi_cif cif;
    ffi_type *args[4];
};

static void make_closure(struct closure *c, void (*fun)(ffi_cif *, void *, void **, void *),
                         void *data, unsigned nargs, ...) {
    va_list ap;
    unsigned i;
    c->closure = ffi_closure_alloc(sizeof(ffi_closure), &c->code);
    if (!c->closure) bail_out("ffi_closure_alloc failed");
    va_start(ap, nargs);
    for (i = 0; i < nargs; i++) c->args[i] = va_arg(ap, ffi_type *);
    va_end(ap);
    if (ffi_prep_cif(&c->cif, FFI_DEFAULT_ABI, nargs, &ffi_type_void, c->args) != FFI_OK)
        bail_out("ffi_prep_cif (closure) failed");
    if (ffi_prep_closure_loc(c->closure, &c->cif, fun, data, c->code) != FFI_OK)
        bail_out("ffi_prep_closure_loc failed");
}

static void free_closure(struct closure *c) { ffi_closure_free(c->closure); }

/* The event log: what ran, in order. */
enum ev {
    EV_SOON = 1,
    EV_SOON_DESTROY,
    EV_READER,
    EV_READER_DESTROY,
    EV_TIMER,
    EV_TIMER_DESTROY,
    EV_CANCELLED_CB,
    EV_CANCELLED_DESTROY,
    EV_EXC,
    EV_EXC_DESTROY,
    EV_REJECTED_DESTROY,
    EV_MAX
};
static const char *const ev_names[EV_MAX] = {
    "?", "soon", "soon_destroy", "reader", "reader_destroy", "timer", "timer_destroy",
    "cancelled_cb", "cancelled_destroy", "exc", "exc_destroy", "rejected_destroy",
};
static int evlog[64], n_ev;
static int ev_count[EV_MAX];

static void log_ev(int e) {
    if (n_ev < (int)(sizeof evlog / sizeof evlog[0])) evlog[n_ev++] = e;
    ev_count[e]++;
}

static int ev_pos(int e) {
    int i;
    for (i = 0; i < n_ev; i++)
        if (evlog[i] == e) return i;
    return -1;
}

/* The test's state, reachable by the closures through their data pointer. */
struct state {
    void *loop;
    int rfd, wfd;
    int in_timer;       /* 1 while the timer callback is on the stack */
    int exc_in_timer;   /* the handler ran while the timer callback was on the stack */
    int call_exc_rc;
    int remove_reader_rc;
    char reader_byte;
    /* The user_data values handed to the library; callbacks must get these back. */
    int ud_soon, ud_reader, ud_timer, ud_cancelled, ud_exc, ud_rejected;
    int object_marker, protocol_marker;
    /* What the callbacks saw. */
    int bad_loop, bad_ud, bad_fd;
    struct ffi_error_context seen;
    char seen_message[64], seen_detail[64];
    void *seen_exc_ud;
};

static struct state S;

/* timer / soon callback: void (*)(aiol_loop *loop, void *user_data) */
static void cb_soon(ffi_cif *cif, void *ret, void **args, void *data) {
    void *loop = *(void **)args[0], *ud = *(void **)args[1];
    (void)cif;
    (void)ret;
    (void)data;
    if (loop != S.loop) S.bad_loop++;
    if (ud != &S.ud_soon) S.bad_ud++;
    log_ev(EV_SOON);
}

static void cb_reader(ffi_cif *cif, void *ret, void **args, void *data) {
    void *loop = *(void **)args[0];
    int fd = *(int *)args[1];
    void *ud = *(void **)args[2];
    (void)cif;
    (void)ret;
    (void)data;
    if (loop != S.loop) S.bad_loop++;
    if (fd != S.rfd) S.bad_fd++;
    if (ud != &S.ud_reader) S.bad_ud++;
    log_ev(EV_READER);
    if (read(fd, &S.reader_byte, 1) != 1) S.reader_byte = 0;
    /* A call back into the library from inside a callback, also through ffi. */
    S.remove_reader_rc = x_remove_reader(loop, fd);
}

static void cb_timer(ffi_cif *cif, void *ret, void **args, void *data) {
    void *loop = *(void **)args[0], *ud = *(void **)args[1];
    struct ffi_error_context ctx;
    (void)cif;
    (void)ret;
    (void)data;
    if (loop != S.loop) S.bad_loop++;
    if (ud != &S.ud_timer) S.bad_ud++;
    log_ev(EV_TIMER);
    memset(&ctx, 0, sizeof ctx);
    ctx.size = sizeof ctx;
    ctx.code = K_ESTATE;
    ctx.message = "reported through ffi";
    ctx.detail = "some detail";
    ctx.loop = NULL; /* the library fills it in */
    ctx.object_kind = K_OBJ_HANDLE;
    ctx.object = &S.object_marker;
    ctx.protocol_data = &S.protocol_marker;
    S.in_timer = 1;
    S.call_exc_rc = x_call_exc(loop, &ctx);
    S.in_timer = 0;
    /* Scribble over the caller's copy: a deferred delivery must have copied it. */
    memset(&ctx, 0xA5, sizeof ctx);
}

static void cb_cancelled(ffi_cif *cif, void *ret, void **args, void *data) {
    (void)cif;
    (void)ret;
    (void)args;
    (void)data;
    log_ev(EV_CANCELLED_CB);
}

/* exception handler: void (*)(const aiol_error_context *ctx, void *user_data) */
static void cb_exc(ffi_cif *cif, void *ret, void **args, void *data) {
    const struct ffi_error_context *ctx = *(const struct ffi_error_context **)args[0];
    void *ud = *(void **)args[1];
    (void)cif;
    (void)ret;
    (void)data;
    log_ev(EV_EXC);
    if (S.in_timer) S.exc_in_timer = 1;
    S.seen_exc_ud = ud;
    memset(&S.seen, 0, sizeof S.seen);
    memcpy(&S.seen, ctx, ctx->size < sizeof S.seen ? ctx->size : sizeof S.seen);
    snprintf(S.seen_message, sizeof S.seen_message, "%s", ctx->message ? ctx->message : "(null)");
    snprintf(S.seen_detail, sizeof S.seen_detail, "%s", ctx->detail ? ctx->detail : "(null)");
}

/* destroy: void (*)(void *user_data); the closure's data is the event to log, and the
   user_data must be the one given with the callback. */
struct destroy_info {
    int ev;
    void *expect_ud;
};

static void cb_destroy(ffi_cif *cif, void *ret, void **args, void *data) {
    const struct destroy_info *di = (const struct destroy_info *)data;
    void *ud = *(void **)args[0];
    (void)cif;
    (void)ret;
    if (ud != di->expect_ud) S.bad_ud++;
    log_ev(di->ev);
}

/* ---- the test ------------------------------------------------------------------------- */

static void print_log(void) {
    char buf[512];
    size_t len = 0;
    int i;
    buf[0] = 0;
    for (i = 0; i < n_ev && len < sizeof buf - 32; i++)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? ", " : "",
                                ev_names[evlog[i]]);
    note("callback order: %s", buf);
}

int main(int argc, char **argv) {
    struct closure c_soon, c_reader, c_timer, c_cancelled, c_exc;
    struct closure d_soon, d_reader, d_timer, d_cancelled, d_exc, d_rejected;
    struct destroy_info di_soon = {EV_SOON_DESTROY, &S.ud_soon},
                        di_reader = {EV_READER_DESTROY, &S.ud_reader},
                        di_timer = {EV_TIMER_DESTROY, &S.ud_timer},
                        di_cancelled = {EV_CANCELLED_DESTROY, &S.ud_cancelled},
                        di_exc = {EV_EXC_DESTROY, &S.ud_exc},
                        di_rejected = {EV_REJECTED_DESTROY, &S.ud_rejected};
    void *loop = NULL, *timer_h = NULL, *cancelled_h = NULL, *rejected_h = NULL;
    const uint64_t delay = 2000000; /* 2 ms */
    const uint64_t far = 3600ull * 1000000000ull;
    unsigned want_version = 0, major = 0, minor = 0, patch = 0;
    uint64_t t0, when;
    const char *s;
    int p[2], rc, e;

    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/libaioloop.so [version]\n", argv[0]);
        return 2;
    }
    if (argc > 2 && sscanf(argv[2], "%u.%u.%u", &major, &minor, &patch) == 3)
        want_version = (major << 16) | (minor << 8) | patch;

    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!check(lib != NULL, "dlopen(%s)", argv[1])) bail_out(dlerror());

    /* int aiol_loop_new(aiol_loop **ret) */
    declare(&f_loop_new, "aiol_loop_new", &ffi_type_sint, 1, &ffi_type_pointer);
    /* int aiol_loop_call_later(loop, uint64_t, cb, void *, destroy, aiol_handle **) */
    declare(&f_call_later, "aiol_loop_call_later", &ffi_type_sint, 6, &ffi_type_pointer,
            &ffi_type_uint64, &ffi_type_pointer, &ffi_type_pointer, &ffi_type_pointer,
            &ffi_type_pointer);
    declare(&f_call_soon, "aiol_loop_call_soon", &ffi_type_sint, 5, &ffi_type_pointer,
            &ffi_type_pointer, &ffi_type_pointer, &ffi_type_pointer, &ffi_type_pointer);
    declare(&f_add_reader, "aiol_loop_add_reader", &ffi_type_sint, 5, &ffi_type_pointer,
            &ffi_type_sint, &ffi_type_pointer, &ffi_type_pointer, &ffi_type_pointer);
    declare(&f_remove_reader, "aiol_loop_remove_reader", &ffi_type_sint, 2, &ffi_type_pointer,
            &ffi_type_sint);
    declare(&f_run, "aiol_loop_run", &ffi_type_sint, 2, &ffi_type_pointer, &ffi_type_sint);
    declare(&f_close, "aiol_loop_close", &ffi_type_sint, 1, &ffi_type_pointer);
    declare(&f_free, "aiol_loop_free", &ffi_type_sint, 1, &ffi_type_pointer);
    declare(&f_strerror, "aiol_strerror", &ffi_type_pointer, 1, &ffi_type_sint);
    declare(&f_version, "aiol_version", &ffi_type_uint, 0);
    declare(&f_version_string, "aiol_version_string", &ffi_type_pointer, 0);
    declare(&f_set_exc, "aiol_loop_set_exception_handler", &ffi_type_sint, 4,
            &ffi_type_pointer, &ffi_type_pointer, &ffi_type_pointer, &ffi_type_pointer);
    declare(&f_call_exc, "aiol_loop_call_exception_handler", &ffi_type_sint, 2,
            &ffi_type_pointer, &ffi_type_pointer);
    declare(&f_loop_now, "aiol_loop_now", &ffi_type_uint64, 1, &ffi_type_pointer);
    declare(&f_handle_when, "aiol_handle_when", &ffi_type_uint64, 1, &ffi_type_pointer);
    declare(&f_handle_cancel, "aiol_handle_cancel", &ffi_type_sint, 1, &ffi_type_pointer);
    declare(&f_handle_release, "aiol_handle_release", &ffi_type_sint, 1, &ffi_type_pointer);

    /* Plain values across the boundary. */
    if (want_version)
        check(x_version() == want_version, "aiol_version() = 0x%06x (want 0x%06x)", x_version(),
              want_version);
    s = x_version_string();
    check(s && argc > 2 && strcmp(s, argv[2]) == 0, "aiol_version_string() = \"%s\"",
          s ? s : "(null)");
    s = x_strerror(K_ECLOSED);
    check(s && strcmp(s, "object is closed") == 0, "aiol_strerror(-30001) = \"%s\"",
          s ? s : "(null)");
    s = x_strerror(K_EINVAL);
    check(s && strcmp(s, strerror(22)) == 0, "aiol_strerror(-EINVAL) = \"%s\"", s ? s : "(null)");
    s = x_strerror(-29999);
    check(s && strcmp(s, "Unknown error") == 0, "aiol_strerror(-29999) = \"%s\"", s ? s : "(null)");

    /* Closures: the callbacks the library gets are ffi trampolines. */
    make_closure(&c_soon, cb_soon, NULL, 2, &ffi_type_pointer, &ffi_type_pointer);
    make_closure(&c_timer, cb_timer, NULL, 2, &ffi_type_pointer, &ffi_type_pointer);
    make_closure(&c_cancelled, cb_cancelled, NULL, 2, &ffi_type_pointer, &ffi_type_pointer);
    make_closure(&c_reader, cb_reader, NULL, 3, &ffi_type_pointer, &ffi_type_sint,
                 &ffi_type_pointer);
    make_closure(&c_exc, cb_exc, NULL, 2, &ffi_type_pointer, &ffi_type_pointer);
    make_closure(&d_soon, cb_destroy, &di_soon, 1, &ffi_type_pointer);
    make_closure(&d_reader, cb_destroy, &di_reader, 1, &ffi_type_pointer);
    make_closure(&d_timer, cb_destroy, &di_timer, 1, &ffi_type_pointer);
    make_closure(&d_cancelled, cb_destroy, &di_cancelled, 1, &ffi_type_pointer);
    make_closure(&d_exc, cb_destroy, &di_exc, 1, &ffi_type_pointer);
    make_closure(&d_rejected, cb_destroy, &di_rejected, 1, &ffi_type_pointer);

    rc = x_loop_new(&loop);
    if (!check(rc == 0 && loop != NULL, "aiol_loop_new -> %d, loop %p", rc, loop))
        bail_out("no loop");
    S.loop = loop;

    rc = x_set_exc(loop, c_exc.code, &S.ud_exc, d_exc.code);
    check(rc == 0, "aiol_loop_set_exception_handler(closure) -> %d", rc);

    if (pipe(p) != 0) bail_out("pipe");
    S.rfd = p[0];
    S.wfd = p[1];
    if (write(S.wfd, "x", 1) != 1) bail_out("write");
    rc = x_add_reader(loop, S.rfd, c_reader.code, &S.ud_reader, d_reader.code);
    check(rc == 0, "aiol_loop_add_reader(fd %d, closure) -> %d", S.rfd, rc);

    rc = x_call_soon(loop, c_soon.code, &S.ud_soon, d_soon.code, NULL);
    check(rc == 0, "aiol_loop_call_soon(closure) -> %d", rc);

    t0 = x_loop_now(loop);
    rc = x_call_later(loop, delay, c_timer.code, &S.ud_timer, d_timer.code, &timer_h);
    check(rc == 0 && timer_h != NULL, "aiol_loop_call_later(2 ms, closure, &handle) -> %d", rc);
    when = x_handle_when(timer_h);
    check(when >= t0 + delay && when < t0 + delay + 1000000000ull,
          "uint64 round trip: aiol_handle_when - aiol_loop_now = %llu ns (delay %llu ns)",
          (unsigned long long)(when - t0), (unsigned long long)delay);

    rc = x_call_later(loop, far, c_cancelled.code, &S.ud_cancelled, d_cancelled.code,
                      &cancelled_h);
    check(rc == 0 && cancelled_h != NULL, "aiol_loop_call_later(1 h) for cancelling -> %d", rc);
    rc = x_handle_cancel(cancelled_h);
    check(rc == 1, "aiol_handle_cancel -> %d (1: prevented the run)", rc);
    rc = x_handle_release(cancelled_h); /* the loop still holds its reference */
    check(rc == 0, "aiol_handle_release(cancelled, before run) -> %d", rc);

    /* A failed call takes no ownership: its destroy never runs. */
    rc = x_call_soon(loop, NULL, &S.ud_rejected, d_rejected.code, &rejected_h);
    check(rc == K_EINVAL && rejected_h == NULL, "aiol_loop_call_soon(cb NULL) -> %d (%s)", rc,
          x_strerror(rc));

    check(n_ev == 0, "no callback ran inside a call other than run/close (%d ran)", n_ev);

    rc = x_run(loop, K_RUN_DEFAULT);
    check(rc == 0, "aiol_loop_run(DEFAULT) -> %d (nothing alive)", rc);
    print_log();

    check(S.bad_loop == 0, "every callback got the loop pointer (%d wrong)", S.bad_loop);
    check(S.bad_ud == 0, "every callback and destroy got its own user_data (%d wrong)", S.bad_ud);
    check(S.bad_fd == 0, "the reader got its fd (%d wrong)", S.bad_fd);
    check(S.reader_byte == 'x', "the reader read the byte written to the pipe");
    check(S.remove_reader_rc == 1, "aiol_loop_remove_reader inside the reader -> %d",
          S.remove_reader_rc);
    check(ev_count[EV_SOON] == 1, "call_soon callback ran once (%d)", ev_count[EV_SOON]);
    check(ev_count[EV_READER] == 1, "reader ran once (%d), not again after removal",
          ev_count[EV_READER]);
    check(ev_count[EV_TIMER] == 1, "timer ran once (%d)", ev_count[EV_TIMER]);
    check(ev_count[EV_CANCELLED_CB] == 0, "cancelled timer never ran (%d)",
          ev_count[EV_CANCELLED_CB]);
    check(ev_pos(EV_CANCELLED_DESTROY) >= 0 && ev_pos(EV_CANCELLED_DESTROY) < ev_pos(EV_SOON),
          "the cancelled timer's destroy ran in run, before the first callback");
    check(ev_pos(EV_SOON) >= 0 && ev_pos(EV_SOON) < ev_pos(EV_SOON_DESTROY) &&
              ev_pos(EV_SOON_DESTROY) < ev_pos(EV_READER),
          "call_soon, then its destroy, before the I/O callback of the same iteration");
    check(ev_pos(EV_READER) < ev_pos(EV_READER_DESTROY) &&
              ev_pos(EV_READER_DESTROY) < ev_pos(EV_TIMER),
          "reader, then its destroy (after it returned), before the 2 ms timer");
    check(ev_pos(EV_TIMER) >= 0 && ev_pos(EV_TIMER) < ev_pos(EV_EXC) &&
              ev_pos(EV_EXC) < ev_pos(EV_TIMER_DESTROY),
          "timer, exception handler, then the timer's destroy");
    check(S.call_exc_rc == 0, "aiol_loop_call_exception_handler inside the timer -> %d",
          S.call_exc_rc);
    check(!S.exc_in_timer, "the report was delivered after the timer returned, never inside "
                           "aiol_loop_call_exception_handler (no callback inside an aiol_* call)");
    check(ev_count[EV_EXC] == 1, "exception handler ran once (%d)", ev_count[EV_EXC]);
    check(S.seen_exc_ud == &S.ud_exc, "exception handler got its user_data");
    check(S.seen.size >= sizeof(struct ffi_error_context), "ctx->size = %zu (>= %zu)",
          S.seen.size, sizeof(struct ffi_error_context));
    check(S.seen.code == K_ESTATE, "ctx->code = %d", S.seen.code);
    check(strcmp(S.seen_message, "reported through ffi") == 0, "ctx->message = \"%s\"",
          S.seen_message);
    check(strcmp(S.seen_detail, "some detail") == 0, "ctx->detail = \"%s\"", S.seen_detail);
    check(S.seen.loop == loop, "ctx->loop = the loop (%p)", S.seen.loop);
    check(S.seen.object_kind == K_OBJ_HANDLE, "ctx->object_kind = %d", S.seen.object_kind);
    check(S.seen.object == &S.object_marker, "ctx->object = the caller's pointer");
    check(S.seen.protocol_data == &S.protocol_marker, "ctx->protocol_data = the caller's pointer");
    check(ev_count[EV_EXC_DESTROY] == 0, "exception handler's destroy not run before close");

    rc = x_close(loop);
    check(rc == 0, "aiol_loop_close -> %d", rc);
    check(ev_count[EV_EXC_DESTROY] == 1, "close ran the exception handler's destroy (%d)",
          ev_count[EV_EXC_DESTROY]);
    rc = x_call_soon(loop, c_soon.code, &S.ud_rejected, d_rejected.code, NULL);
    check(rc == K_ECLOSED, "aiol_loop_call_soon after close -> %d (%s)", rc, x_strerror(rc));
    rc = x_free(loop);
    check(rc == 0, "aiol_loop_free -> %d", rc);
    /* The caller's reference outlives the loop. */
    rc = x_handle_release(timer_h);
    check(rc == 0, "aiol_handle_release(fired timer, after free) -> %d", rc);

    for (e = 1; e < EV_MAX; e++) {
        int want = e == EV_CANCELLED_CB || e == EV_REJECTED_DESTROY ? 0 : 1;
        check(ev_count[e] == want, "%s ran %d time(s), want %d", ev_names[e], ev_count[e], want);
    }

    free_closure(&c_soon);
    free_closure(&c_reader);
    free_closure(&c_timer);
    free_closure(&c_cancelled);
    free_closure(&c_exc);
    free_closure(&d_soon);
    free_closure(&d_reader);
    free_closure(&d_timer);
    free_closure(&d_cancelled);
    free_closure(&d_exc);
    free_closure(&d_rejected);
    close(p[0]);
    close(p[1]);
    dlclose(lib);

    printf("1..%d\n", n_checks);
    if (n_failed) printf("# %d of %d checks failed\n", n_failed, n_checks);
    return n_failed ? 1 : 0;
}
