/*
 * aioloop_lua.c — the Lua binding of libaioloop (require "aioloop").
 *
 * Lua 5.4 and LuaJIT 2.1 (Lua 5.1 API), plain C99 over the Lua C API and include/aioloop.h.
 * The model is luv's:
 *
 *  - Every userdata is a box holding one pointer to separately allocated C memory, so no C
 *    object's lifetime is tied to the garbage collector's order. One metatable per type
 *    ("aioloop.loop", "aioloop.handle", "aioloop.server", "aioloop.transport",
 *    "aioloop.tls_context"), checked with luaL_checkudata. The exception is aioloop.buffer
 *    (BufferedProtocol's read target), whose bytes are the userdata's own.
 *  - Lua functions and protocol tables handed to the library live in the registry
 *    (luaL_ref) inside a small C struct given to the library as user_data; the library's
 *    destroy callback releases them.
 *  - Every Lua callback runs under lua_pcall with a traceback message handler; the pushes
 *    that may allocate happen inside that protected call too, so no Lua error ever longjmps
 *    through library frames. An error is reported through the loop's exception handler
 *    (aiol_loop_call_exception_handler: the default writes one line to stderr, and
 *    loop:set_exception_handler(fn) routes reports to Lua); an error in a protocol callback
 *    also aborts that connection. The loop keeps running.
 *  - Callbacks run on the Lua thread (coroutine) that called loop:run() / loop:close().
 *  - Failures return nil, "ENAME: message", "ENAME" (aiol_err_name / aiol_strerror);
 *    misuse (wrong types, a closed loop) raises a Lua error.
 *  - __gc releases what is still held. A loop collected (or left at lua_close) with live
 *    servers, transports or timers is torn down with aiol_loop_close without calling back
 *    into Lua (only the references are released), then freed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <lauxlib.h>
#include <lua.h>

#include <aioloop.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- Lua 5.1 / LuaJIT compatibility --------------------------------------------------- */

#if LUA_VERSION_NUM < 502
#define lua_rawlen lua_objlen
#ifndef LUA_OK
#define LUA_OK 0
#endif
static void compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup, "too many upvalues");
    for (; l->name; l++) {
        for (int i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}
#define luaL_setfuncs compat_setfuncs
#endif

#if defined(__GNUC__)
#define AIOL_LUA_EXPORT __attribute__((visibility("default")))
#else
#define AIOL_LUA_EXPORT
#endif

#define MT_LOOP "aioloop.loop"
#define MT_HANDLE "aioloop.handle"
#define MT_SERVER "aioloop.server"
#define MT_TRANSPORT "aioloop.transport"
#define MT_BUFFER "aioloop.buffer"
#define MT_TLS "aioloop.tls_context"

/* ---- binding state -------------------------------------------------------------------- */

typedef struct lloop {
    aiol_loop *loop;
    lua_State *L;   /* the thread inside run/close/__gc: callbacks run on it */
    int refs;       /* the box + every struct below that points here */
    int closed;     /* loop:close() or __gc ran: methods raise */
    int closing;    /* inside aiol_loop_close (a callback must not free the loop) */
    int quiet;      /* torn down by __gc: release references, call no Lua */
    int msgh_ref;   /* the traceback message handler */
    int invoke_ref; /* the protected invoker (l_invoke) */
    int exc_ref;    /* loop:set_exception_handler's function, or LUA_NOREF */
} lloop;

/* user_data of call_soon/call_later/watchers/signals/wait_closed */
typedef struct lcb {
    lloop *lp;
    int fn_ref;
    int arg; /* fd or signum */
    const char *what;
} lcb;

/* user_data of a connection (accepted or connected) */
typedef struct lconn {
    lloop *lp;
    int proto_ref;
    int box_ref;  /* the transport userdata, made at the first callback */
    int done_ref; /* connect's done */
    int buf_ref;  /* BufferedProtocol: the buffer last lent to the library (kept alive) */
} lconn;

/* aioloop.buffer: the byte buffer a BufferedProtocol lends to the library (asyncio's
   bytearray). Unlike the other types the bytes live inside the userdata: Lua never moves
   a userdata, and while the library may write into it a registry reference (buf_ref)
   keeps it from being collected. Lua code can only read it. */
typedef struct lbuffer {
    size_t len;
    unsigned char data[];
} lbuffer;

typedef struct lserver {
    aiol_server *s; /* owned by the box until __gc (aiol_server_free) */
    lloop *lp;
    int refs;        /* the box + the library's factory_data */
    int factory_ref; /* released in factory_destroy */
    int anchor_ref;  /* the box, kept alive while the server is open */
} lserver;

static void lloop_unref(lloop *lp) {
    if (--lp->refs == 0) free(lp);
}

static void unref_reg(lloop *lp, int *ref) {
    if (*ref != LUA_NOREF && *ref != LUA_REFNIL && lp->L) luaL_unref(lp->L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

/* ---- errors ----------------------------------------------------------------------------- */

static void push_errstring(lua_State *L, int err) {
    lua_pushfstring(L, "%s: %s", aiol_err_name(err), aiol_strerror(err));
}

/* luv's fail convention: nil, "ENAME: message", "ENAME" */
static int push_fail(lua_State *L, int err) {
    lua_pushnil(L);
    push_errstring(L, err);
    lua_pushstring(L, aiol_err_name(err));
    return 3;
}

static int push_result(lua_State *L, int rc) {
    if (rc < 0) return push_fail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- boxes -------------------------------------------------------------------------------- */

static void **new_box(lua_State *L, const char *mt) {
    void **box = (void **)lua_newuserdata(L, sizeof(void *));
    *box = NULL;
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    return box;
}

static lloop *check_loop(lua_State *L, int idx) {
    lloop **box = (lloop **)luaL_checkudata(L, idx, MT_LOOP);
    if (!*box || (*box)->closed) luaL_argerror(L, idx, "loop is closed");
    return *box;
}

static aiol_transport *check_transport(lua_State *L, int idx) {
    aiol_transport **box = (aiol_transport **)luaL_checkudata(L, idx, MT_TRANSPORT);
    if (!*box) luaL_argerror(L, idx, "transport is released");
    return *box;
}

static lserver *check_server(lua_State *L, int idx) {
    lserver **box = (lserver **)luaL_checkudata(L, idx, MT_SERVER);
    if (!*box || !(*box)->s) luaL_argerror(L, idx, "server is released");
    return *box;
}

static aiol_handle *check_handle(lua_State *L, int idx) {
    aiol_handle **box = (aiol_handle **)luaL_checkudata(L, idx, MT_HANDLE);
    if (!*box) luaL_argerror(L, idx, "handle is released");
    return *box;
}

/* The userdata at idx if its metatable is mt's, else NULL (no luaL_testudata in 5.1) */
static void *test_udata(lua_State *L, int idx, const char *mt) {
    void *p = lua_touserdata(L, idx);
    if (!p || !lua_getmetatable(L, idx)) return NULL;
    luaL_getmetatable(L, mt);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}

static aiol_tls_context *check_tls(lua_State *L, int idx) {
    aiol_tls_context **box = (aiol_tls_context **)luaL_checkudata(L, idx, MT_TLS);
    if (!*box) luaL_argerror(L, idx, "TLS context is released");
    return *box;
}

/* string.sub's rule for [i, j] over len bytes: the 0-based start and the count */
static size_t byte_range(lua_Integer i, lua_Integer j, size_t len, size_t *start) {
    lua_Integer n = (lua_Integer)len;
    if (i < 0) i = i < -n ? 1 : n + i + 1;
    else if (i == 0) i = 1;
    if (j < 0) j = n + j + 1;
    else if (j > n) j = n;
    *start = (size_t)(i - 1);
    return i > j ? 0 : (size_t)(j - i + 1);
}

static void check_callable(lua_State *L, int idx) {
    if (lua_isfunction(L, idx)) return;
    if (luaL_getmetafield(L, idx, "__call")) {
        lua_pop(L, 1);
        return;
    }
    luaL_argerror(L, idx, lua_pushfstring(L, "function expected, got %s", luaL_typename(L, idx)));
}

/* ---- addresses ---------------------------------------------------------------------------- */

/* host, port for IP; path for AF_UNIX ("@name" for the abstract namespace, "" unnamed) */
static int push_sockaddr(lua_State *L, const struct sockaddr_storage *ss, socklen_t len) {
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        lua_pushstring(L, host);
        lua_pushinteger(L, ntohs(a->sin_port));
        return 2;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        lua_pushstring(L, host);
        lua_pushinteger(L, ntohs(a->sin6_port));
        return 2;
    }
    if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *a = (const struct sockaddr_un *)ss;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = len > off ? (size_t)len - off : 0;
        if (n > sizeof a->sun_path) n = sizeof a->sun_path;
        if (n > 0 && a->sun_path[0] == '\0') {
            lua_pushliteral(L, "@");
            lua_pushlstring(L, a->sun_path + 1, n - 1);
            lua_concat(L, 2);
        } else {
            size_t k = 0;
            while (k < n && a->sun_path[k]) k++;
            lua_pushlstring(L, a->sun_path, k);
        }
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

/* ---- protected invocation ----------------------------------------------------------------- */

enum { K_CALL, K_FACTORY, K_PROTO, K_DONE, K_EXC };

typedef struct inv {
    int kind;
    lloop *lp;
    int fn_ref;          /* K_CALL, K_FACTORY, K_DONE */
    int has_arg;         /* K_CALL: pass arg */
    int arg;
    lconn *conn;         /* K_PROTO, K_DONE */
    aiol_transport *t;   /* K_PROTO, K_DONE (may be NULL) */
    const char *method;  /* K_PROTO */
    const char *data;    /* K_PROTO data_received */
    size_t len;
    int status;          /* K_PROTO connection_lost / K_DONE */
    int pass_status;
    int pass_num;        /* K_PROTO get_buffer's size hint, buffer_updated's nbytes */
    lua_Integer num;
    int made;            /* K_PROTO connection_made: pick plain or buffered reads */
    int get_buffer;      /* K_PROTO get_buffer: the lent area comes back in ptr, plen */
    void *ptr;
    size_t plen;
    const aiol_error_context *ctx; /* K_EXC */
    int result;          /* K_PROTO: truthiness; K_FACTORY: the protocol's ref */
} inv;

static int l_msgh(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
#if LUA_VERSION_NUM >= 502 || defined(LUA_LJDIR) /* LuaJIT 2.1 has it */
    luaL_traceback(L, L, msg, 1);
#else
    lua_getfield(L, LUA_GLOBALSINDEX, "debug");
    if (lua_istable(L, -1)) lua_getfield(L, -1, "traceback");
    if (!lua_isfunction(L, -1)) {
        lua_pushstring(L, msg);
        return 1;
    }
    lua_pushstring(L, msg);
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
#endif
    return 1;
}

static void use_buffered(aiol_transport *t, lconn *c);

/* The transport box of a connection: made once, kept in the registry until destroy. */
static void push_transport(lua_State *L, lconn *c, aiol_transport *t) {
    if (c->box_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->box_ref);
        return;
    }
    aiol_transport **box = (aiol_transport **)new_box(L, MT_TRANSPORT);
    lua_pushvalue(L, -1);
    c->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (aiol_transport_ref(t) == 0) *box = t;
}

static const char *kind_name(int kind) {
    switch (kind) {
    case AIOL_OBJ_SERVER: return "server";
    case AIOL_OBJ_TRANSPORT: return "transport";
    case AIOL_OBJ_HANDLE: return "handle";
    case AIOL_OBJ_LOOP: return "loop";
    default: return NULL;
    }
}

static int l_invoke(lua_State *L) {
    inv *v = (inv *)lua_touserdata(L, 1);
    lua_settop(L, 0);
    switch (v->kind) {
    case K_CALL:
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->fn_ref);
        if (v->has_arg) lua_pushinteger(L, v->arg);
        lua_call(L, v->has_arg ? 1 : 0, 0);
        break;
    case K_FACTORY:
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->fn_ref);
        if (!lua_istable(L, -1)) {
            lua_call(L, 0, 1);
            if (lua_isnil(L, -1)) luaL_error(L, "the protocol factory returned nil");
        }
        v->result = luaL_ref(L, LUA_REGISTRYINDEX);
        break;
    case K_PROTO: {
        int n = 2;
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->conn->proto_ref); /* 1: protocol */
        if (v->made) {
            /* asyncio picks the read path by isinstance(protocol, BufferedProtocol); here
               a get_buffer method (metatables included) makes a BufferedProtocol */
            lua_getfield(L, 1, "get_buffer");
            lua_getfield(L, 1, "buffer_updated");
            int gb = !lua_isnil(L, -2), bu = !lua_isnil(L, -1);
            lua_pop(L, 2);
            if (gb != bu) luaL_error(L, "a protocol with get_buffer needs buffer_updated, and the reverse");
            if (gb) use_buffered(v->t, v->conn);
        }
        lua_getfield(L, 1, v->method);
        if (lua_isnil(L, -1)) return 0;
        lua_pushvalue(L, 1);
        push_transport(L, v->conn, v->t);
        if (v->data) {
            lua_pushlstring(L, v->data, v->len);
            n++;
        }
        if (v->pass_status) {
            if (v->status) push_errstring(L, v->status);
            else lua_pushnil(L);
            n++;
        }
        if (v->pass_num) {
            lua_pushinteger(L, v->num);
            n++;
        }
        if (!v->get_buffer) {
            lua_call(L, n, 1);
            v->result = lua_toboolean(L, -1);
            break;
        }
        /* get_buffer -> buf [, i [, j]]: the library reads into buf[i..j] */
        lua_call(L, n, 3);
        lbuffer *b = (lbuffer *)test_udata(L, -3, MT_BUFFER);
        if (!b) luaL_error(L, "get_buffer must return an aioloop.buffer (got %s)", luaL_typename(L, -3));
        for (int k = -2; k <= -1; k++)
            if (!lua_isnil(L, k) && !lua_isnumber(L, k))
                luaL_error(L, "get_buffer: the range after the buffer must be integers (got %s)",
                           luaL_typename(L, k));
        lua_Integer i = lua_isnil(L, -2) ? 1 : lua_tointeger(L, -2);
        lua_Integer j = lua_isnil(L, -1) ? -1 : lua_tointeger(L, -1);
        size_t start;
        size_t len = byte_range(i, j, b->len, &start);
        lua_pushvalue(L, -3); /* keep it alive while the library holds the pointer */
        unref_reg(v->lp, &v->conn->buf_ref);
        v->conn->buf_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        v->ptr = b->data + (len ? start : 0);
        v->plen = len; /* 0: the library aborts with EINVAL, as asyncio's empty-buffer error */
        break;
    }
    case K_DONE:
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->fn_ref);
        if (v->t) {
            push_transport(L, v->conn, v->t);
            lua_call(L, 1, 0);
        } else {
            lua_pushnil(L);
            push_errstring(L, v->status);
            lua_pushstring(L, aiol_err_name(v->status));
            lua_call(L, 3, 0);
        }
        break;
    case K_EXC: {
        const aiol_error_context *ctx = v->ctx;
        lua_rawgeti(L, LUA_REGISTRYINDEX, v->lp->exc_ref);
        lua_createtable(L, 0, 7);
        lua_pushstring(L, ctx->message ? ctx->message : "error");
        lua_setfield(L, -2, "message");
        if (ctx->code) {
            lua_pushinteger(L, ctx->code);
            lua_setfield(L, -2, "code");
            push_errstring(L, ctx->code);
            lua_setfield(L, -2, "err");
        }
        if (ctx->detail) {
            lua_pushstring(L, ctx->detail);
            lua_setfield(L, -2, "detail");
        }
        if (kind_name(ctx->object_kind)) {
            lua_pushstring(L, kind_name(ctx->object_kind));
            lua_setfield(L, -2, "object");
        }
        /* every transport of this binding carries an lconn */
        if (ctx->object_kind == AIOL_OBJ_TRANSPORT && ctx->protocol_data) {
            lconn *c = (lconn *)ctx->protocol_data;
            if (c->box_ref != LUA_NOREF) {
                lua_rawgeti(L, LUA_REGISTRYINDEX, c->box_ref);
                lua_setfield(L, -2, "transport");
            }
        }
        lua_call(L, 1, 0);
        break;
    }
    }
    return 0;
}

static void report_error(lloop *lp, const char *what, const char *msg, int kind, void *object,
                         void *protocol_data) {
    char buf[160];
    snprintf(buf, sizeof buf, "error in Lua %s", what);
    aiol_error_context ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.size = sizeof ctx;
    ctx.message = buf;
    ctx.detail = msg;
    ctx.object_kind = kind;
    ctx.object = object;
    ctx.protocol_data = protocol_data;
    aiol_loop_call_exception_handler(lp->loop, &ctx);
}

/* Runs v under lua_pcall on lp->L. On error reports it (what, and the object for the
   context) and returns nonzero. */
static int invoke(lloop *lp, inv *v, const char *what, int kind, void *object, void *pdata) {
    lua_State *L = lp->L;
    if (!L || lp->quiet) return -1;
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->msgh_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lp->invoke_ref);
    lua_pushlightuserdata(L, v);
    int rc = lua_pcall(L, 1, 0, base + 1);
    if (rc != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (!msg) msg = "(error object is not a string)";
        if (v->kind == K_EXC) {
            fprintf(stderr, "aioloop: error in the Lua exception handler: %s\n", msg);
            fprintf(stderr, "aioloop: (the report was: %s%s%s)\n",
                    v->ctx->message ? v->ctx->message : "error", v->ctx->detail ? ": " : "",
                    v->ctx->detail ? v->ctx->detail : "");
        } else {
            report_error(lp, what, msg, kind, object, pdata);
        }
    }
    lua_settop(L, base);
    return rc;
}

/* ---- trampolines ------------------------------------------------------------------------- */

static void on_exception(const aiol_error_context *ctx, void *ud) {
    lloop *lp = (lloop *)ud;
    if (!lp->L || lp->quiet || lp->exc_ref == LUA_NOREF) {
        fprintf(stderr, "aioloop: %s%s%s%s%s\n", ctx->message ? ctx->message : "error",
                ctx->code ? ": " : "", ctx->code ? aiol_strerror(ctx->code) : "",
                ctx->detail ? ": " : "", ctx->detail ? ctx->detail : "");
        return;
    }
    inv v;
    memset(&v, 0, sizeof v);
    v.kind = K_EXC;
    v.lp = lp;
    v.ctx = ctx;
    invoke(lp, &v, "exception handler", AIOL_OBJ_LOOP, NULL, NULL);
}

static void cb_destroy(void *ud) {
    lcb *c = (lcb *)ud;
    unref_reg(c->lp, &c->fn_ref);
    lloop_unref(c->lp);
    free(c);
}

static void call_lcb(lcb *c, int has_arg) {
    inv v;
    memset(&v, 0, sizeof v);
    v.kind = K_CALL;
    v.lp = c->lp;
    v.fn_ref = c->fn_ref;
    v.has_arg = has_arg;
    v.arg = c->arg;
    invoke(c->lp, &v, c->what, AIOL_OBJ_HANDLE, NULL, NULL);
}

static void cb_handle(aiol_loop *loop, void *ud) {
    (void)loop;
    call_lcb((lcb *)ud, 0);
}

static void cb_signal(aiol_loop *loop, void *ud) {
    (void)loop;
    call_lcb((lcb *)ud, 1);
}

static void cb_fd(aiol_loop *loop, int fd, void *ud) {
    (void)loop, (void)fd;
    call_lcb((lcb *)ud, 1);
}

static void cb_wait_closed(aiol_server *s, void *ud) {
    lcb *c = (lcb *)ud;
    inv v;
    memset(&v, 0, sizeof v);
    v.kind = K_CALL;
    v.lp = c->lp;
    v.fn_ref = c->fn_ref;
    invoke(c->lp, &v, c->what, AIOL_OBJ_SERVER, s, NULL);
    cb_destroy(c); /* one-shot, no destroy of its own */
}

/* protocol */

static void proto_call(lconn *c, aiol_transport *t, const char *method, inv *v) {
    v->kind = K_PROTO;
    v->lp = c->lp;
    v->conn = c;
    v->t = t;
    v->method = method;
    char what[64];
    snprintf(what, sizeof what, "protocol callback %s", method);
    if (invoke(c->lp, v, what, AIOL_OBJ_TRANSPORT, t, c) != LUA_OK && !c->lp->quiet &&
        strcmp(method, "connection_lost") != 0)
        aiol_transport_abort(t);
}

static void p_connection_made(aiol_transport *t, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    v.made = 1;
    proto_call((lconn *)ud, t, "connection_made", &v);
}

static void p_data_received(aiol_transport *t, const void *data, size_t len, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    v.data = (const char *)data;
    v.len = len;
    proto_call((lconn *)ud, t, "data_received", &v);
}

static int p_eof_received(aiol_transport *t, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    proto_call((lconn *)ud, t, "eof_received", &v);
    return v.result;
}

static void p_connection_lost(aiol_transport *t, int status, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    v.pass_status = 1;
    v.status = status;
    proto_call((lconn *)ud, t, "connection_lost", &v);
}

static void p_pause_writing(aiol_transport *t, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    proto_call((lconn *)ud, t, "pause_writing", &v);
}

static void p_resume_writing(aiol_transport *t, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    proto_call((lconn *)ud, t, "resume_writing", &v);
}

/* BufferedProtocol (asyncio get_buffer / buffer_updated). An error in get_buffer aborts
   the transport (is_reading() is then false, so the library does not read); a buffer
   with no room left gives the library's empty-buffer abort (EINVAL). */
static void *p_get_buffer(aiol_transport *t, size_t size_hint, size_t *len, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    v.get_buffer = 1;
    v.pass_num = 1;
    v.num = size_hint ? (lua_Integer)size_hint : -1; /* asyncio's "any size" */
    proto_call((lconn *)ud, t, "get_buffer", &v);
    *len = v.plen;
    return v.ptr;
}

static void p_buffer_updated(aiol_transport *t, size_t nbytes, void *ud) {
    inv v;
    memset(&v, 0, sizeof v);
    v.pass_num = 1;
    v.num = (lua_Integer)nbytes;
    proto_call((lconn *)ud, t, "buffer_updated", &v);
}

static void p_destroy(void *ud) {
    lconn *c = (lconn *)ud;
    unref_reg(c->lp, &c->buf_ref);
    unref_reg(c->lp, &c->proto_ref);
    unref_reg(c->lp, &c->box_ref);
    unref_reg(c->lp, &c->done_ref);
    lloop_unref(c->lp);
    free(c);
}

static const aiol_protocol lua_protocol = {
    sizeof(aiol_protocol), p_connection_made, p_data_received, p_eof_received,
    p_connection_lost, p_pause_writing, p_resume_writing, NULL, NULL, p_destroy,
};

/* Every connection starts with lua_protocol; connection_made switches a protocol table
   with get_buffer to this vtable (same user_data and destroy, so nothing is destroyed)
   before any data is read. */
static const aiol_protocol lua_buffered_protocol = {
    sizeof(aiol_protocol), p_connection_made, NULL, p_eof_received,
    p_connection_lost, p_pause_writing, p_resume_writing, p_get_buffer, p_buffer_updated,
    p_destroy,
};

static void use_buffered(aiol_transport *t, lconn *c) {
    aiol_transport_set_protocol(t, &lua_buffered_protocol, c);
}

static void lserver_unref(lserver *ls) {
    if (--ls->refs > 0) return;
    lloop_unref(ls->lp);
    free(ls);
}

static int server_factory(void *factory_data, const struct sockaddr *peer, socklen_t peer_len,
                          void **user_data) {
    (void)peer, (void)peer_len;
    lserver *ls = (lserver *)factory_data;
    lloop *lp = ls->lp;
    if (!lp->L || lp->quiet) return -1;
    lconn *c = (lconn *)calloc(1, sizeof *c);
    if (!c) return -1;
    inv v;
    memset(&v, 0, sizeof v);
    v.kind = K_FACTORY;
    v.lp = lp;
    v.fn_ref = ls->factory_ref;
    if (invoke(lp, &v, "protocol factory", AIOL_OBJ_SERVER, ls->s, NULL) != LUA_OK) {
        free(c);
        return -1;
    }
    c->lp = lp;
    lp->refs++;
    c->proto_ref = v.result;
    c->box_ref = LUA_NOREF;
    c->done_ref = LUA_NOREF;
    c->buf_ref = LUA_NOREF;
    *user_data = c;
    return 0;
}

static void server_factory_destroy(void *ud) {
    lserver *ls = (lserver *)ud;
    unref_reg(ls->lp, &ls->factory_ref);
    unref_reg(ls->lp, &ls->anchor_ref);
    lserver_unref(ls);
}

static void connect_done(aiol_transport *t, int status, void *ud) {
    lconn *c = (lconn *)ud;
    if (c->done_ref != LUA_NOREF) {
        inv v;
        memset(&v, 0, sizeof v);
        v.kind = K_DONE;
        v.lp = c->lp;
        v.fn_ref = c->done_ref;
        v.conn = c;
        v.t = status == 0 ? t : NULL;
        v.status = status;
        if (invoke(c->lp, &v, "connect done callback", t ? AIOL_OBJ_TRANSPORT : AIOL_OBJ_NONE,
                   t, t ? c : NULL) != LUA_OK &&
            t && !c->lp->quiet)
            aiol_transport_abort(t);
        unref_reg(c->lp, &c->done_ref);
    }
}

/* ---- numbers and options ------------------------------------------------------------------- */

static uint64_t seconds_to_ns(lua_State *L, int idx) {
    lua_Number s = luaL_checknumber(L, idx);
    if (s != s) luaL_argerror(L, idx, "delay is NaN");
    if (s <= 0) return 0;
    if (s >= 1.8e10) return UINT64_MAX;
    double ns = (double)s * 1e9;
    uint64_t r = (uint64_t)ns;
    if ((double)r < ns) r++; /* never early */
    return r;
}

static int check_int_range(lua_State *L, int idx, lua_Number lo, lua_Number hi) {
    lua_Number n = luaL_checknumber(L, idx);
    if (!(n >= lo && n <= hi) || n != (lua_Number)(long long)n)
        luaL_argerror(L, idx, "integer out of range");
    return (int)n;
}

/* The value of opts[name] on the stack (always pushed; popped by the caller's settop). */
static const char *opt_string(lua_State *L, int opts, const char *name) {
    lua_getfield(L, opts, name);
    if (lua_isnil(L, -1)) return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad option '%s' (string expected, got %s)", name, luaL_typename(L, -1));
    return lua_tostring(L, -1);
}

static lua_Number opt_number(lua_State *L, int opts, const char *name, lua_Number dflt,
                             lua_Number lo, lua_Number hi, int integer) {
    lua_getfield(L, opts, name);
    int t = lua_type(L, -1);
    lua_Number n = dflt;
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER)
            luaL_error(L, "bad option '%s' (number expected, got %s)", name, luaL_typename(L, -1));
        n = lua_tonumber(L, -1);
        if (!(n >= lo && n <= hi) || (integer && n != (lua_Number)(long long)n))
            luaL_error(L, "bad option '%s' (out of range)", name);
    }
    lua_pop(L, 1);
    return n;
}

static int opt_bool(lua_State *L, int opts, const char *name) {
    lua_getfield(L, opts, name);
    int b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

/* ---- module functions ------------------------------------------------------------------- */

static int l_new_loop(lua_State *L) {
    lloop **box = (lloop **)new_box(L, MT_LOOP);
    lloop *lp = (lloop *)calloc(1, sizeof *lp);
    if (!lp) return push_fail(L, AIOL_ENOMEM);
    int rc = aiol_loop_new(&lp->loop);
    if (rc < 0) {
        free(lp);
        return push_fail(L, rc);
    }
    lp->refs = 1;
    lp->exc_ref = LUA_NOREF;
    lua_pushcfunction(L, l_msgh);
    lp->msgh_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushcfunction(L, l_invoke);
    lp->invoke_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *box = lp;
    return 1;
}

static int l_strerror(lua_State *L) {
    lua_pushstring(L, aiol_strerror(check_int_range(L, 1, INT32_MIN, INT32_MAX)));
    return 1;
}

static int l_err_name(lua_State *L) {
    lua_pushstring(L, aiol_err_name(check_int_range(L, 1, INT32_MIN, INT32_MAX)));
    return 1;
}

static int l_has_feature(lua_State *L) {
    lua_pushboolean(L, aiol_has_feature(luaL_checkstring(L, 1)));
    return 1;
}

static int l_version(lua_State *L) {
    lua_pushstring(L, aiol_version_string());
    return 1;
}

/* fd helpers for watchers: pipe() -> rfd, wfd (non-blocking, close-on-exec) */
static int l_pipe(lua_State *L) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return push_fail(L, -errno);
    lua_pushinteger(L, fds[0]);
    lua_pushinteger(L, fds[1]);
    return 2;
}

static int l_fd_write(lua_State *L) {
    int fd = check_int_range(L, 1, 0, INT32_MAX);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    ssize_t n = write(fd, s, len);
    if (n < 0) return push_fail(L, -errno);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_fd_read(lua_State *L) {
    int fd = check_int_range(L, 1, 0, INT32_MAX);
    int n = check_int_range(L, 2, 1, 1 << 20);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char *p = luaL_prepbuffer(&b);
    if ((size_t)n > LUAL_BUFFERSIZE) n = LUAL_BUFFERSIZE;
    ssize_t r = read(fd, p, (size_t)n);
    if (r < 0) return push_fail(L, -errno);
    luaL_addsize(&b, (size_t)r);
    luaL_pushresult(&b);
    return 1;
}

static int l_fd_close(lua_State *L) {
    int fd = check_int_range(L, 1, 0, INT32_MAX);
    return push_result(L, close(fd) < 0 ? -errno : 0);
}

/* ---- buffers (for BufferedProtocol) ------------------------------------------------------ */

/* aioloop.buffer(n) -> a zero-filled buffer of n bytes (asyncio's bytearray(n)) */
static int l_buffer(lua_State *L) {
    lua_Number n = luaL_checknumber(L, 1);
    if (!(n >= 0 && n <= 4503599627370496.0) || n != (lua_Number)(long long)n)
        luaL_argerror(L, 1, "size out of range");
    size_t len = (size_t)n;
    lbuffer *b = (lbuffer *)lua_newuserdata(L, sizeof(lbuffer) + len);
    b->len = len;
    memset(b->data, 0, len);
    luaL_getmetatable(L, MT_BUFFER);
    lua_setmetatable(L, -2);
    return 1;
}

static lbuffer *check_buffer(lua_State *L, int idx) {
    return (lbuffer *)luaL_checkudata(L, idx, MT_BUFFER);
}

static int l_buffer_len(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)check_buffer(L, 1)->len);
    return 1;
}

/* buf:tostring([i [, j]]) -> the bytes i..j as a string (string.sub's indices) */
static int l_buffer_tostring_range(lua_State *L) {
    lbuffer *b = check_buffer(L, 1);
    size_t start;
    size_t n = byte_range(luaL_optinteger(L, 2, 1), luaL_optinteger(L, 3, -1), b->len, &start);
    lua_pushlstring(L, n ? (const char *)b->data + start : "", n);
    return 1;
}

/* buf:byte([i [, j]]) -> the byte values, as string.byte */
static int l_buffer_byte(lua_State *L) {
    lbuffer *b = check_buffer(L, 1);
    lua_Integer i = luaL_optinteger(L, 2, 1);
    size_t start;
    size_t n = byte_range(i, luaL_optinteger(L, 3, i), b->len, &start);
    if (n >= (size_t)INT32_MAX) return luaL_error(L, "byte: range too long");
    luaL_checkstack(L, (int)n, "byte: range too long");
    for (size_t k = 0; k < n; k++) lua_pushinteger(L, b->data[start + k]);
    return (int)n;
}

static int l_buffer_tostring(lua_State *L) {
    lbuffer *b = check_buffer(L, 1);
    lua_pushfstring(L, "aioloop.buffer (%d bytes): %p", (int)(b->len > INT32_MAX ? INT32_MAX : b->len),
                    (void *)b);
    return 1;
}

/* ---- TLS contexts (ssl.SSLContext) ------------------------------------------------------- */

static int new_tls(lua_State *L, int (*make)(lua_State *, aiol_tls_context **)) {
    aiol_tls_context **box = (aiol_tls_context **)new_box(L, MT_TLS);
    int top = lua_gettop(L);
    int rc = make(L, box);
    lua_settop(L, top); /* the box */
    if (rc < 0) {
        *box = NULL;
        return push_fail(L, rc);
    }
    return 1;
}

static int make_server(lua_State *L, aiol_tls_context **ret) {
    return aiol_tls_context_new_server(luaL_checkstring(L, 1), luaL_checkstring(L, 2), ret);
}

static int make_server_pem(lua_State *L, aiol_tls_context **ret) {
    size_t clen, klen;
    const char *cert = luaL_checklstring(L, 1, &clen);
    const char *key = luaL_checklstring(L, 2, &klen);
    return aiol_tls_context_new_server_pem(cert, clen, key, klen, ret);
}

/* tls_client{ca=, verify=}: verify defaults to true (ssl.create_default_context) */
static int make_client(lua_State *L, aiol_tls_context **ret) {
    const char *ca = NULL;
    int verify = 1;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        ca = opt_string(L, 1, "ca"); /* stays on the stack, under the box */
        lua_getfield(L, 1, "verify");
        if (!lua_isnil(L, -1)) verify = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    return aiol_tls_context_new_client(ca, verify, ret);
}

/* aioloop.tls_server(cert_path, key_path), tls_server_pem(cert, key), tls_client{...} */
static int l_tls_server(lua_State *L) {
    luaL_checkstring(L, 1), luaL_checkstring(L, 2);
    return new_tls(L, make_server);
}

static int l_tls_server_pem(lua_State *L) {
    luaL_checkstring(L, 1), luaL_checkstring(L, 2);
    return new_tls(L, make_server_pem);
}

static int l_tls_client(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    return new_tls(L, make_client);
}

/* ctx:set_alpn{"h2", "http/1.1"} (ssl.SSLContext.set_alpn_protocols) */
static int l_tls_set_alpn(lua_State *L) {
    aiol_tls_context *ctx = check_tls(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = lua_rawlen(L, 2);
    if (n > 4096) return luaL_argerror(L, 2, "too many protocols");
    const char **v = (const char **)lua_newuserdata(L, sizeof(char *) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (int)i + 1); /* the table keeps the string alive */
        size_t len;
        v[i] = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!v[i] || len == 0 || len > 255 || strlen(v[i]) != len)
            return luaL_argerror(L, 2, "protocols must be strings of 1 to 255 bytes");
        lua_pop(L, 1);
    }
    return push_result(L, aiol_tls_context_set_alpn(ctx, v, n));
}

/* ctx:set_min_version("TLSv1.2" | "TLSv1.3" | 0x0303 | 0x0304) */
static int l_tls_set_min_version(lua_State *L) {
    aiol_tls_context *ctx = check_tls(L, 1);
    int version;
    if (lua_type(L, 2) == LUA_TSTRING) {
        static const char *const names[] = {"TLSv1.2", "TLSv1.3", NULL};
        version = luaL_checkoption(L, 2, NULL, names) == 0 ? 0x0303 : 0x0304;
    } else {
        version = check_int_range(L, 2, INT32_MIN, INT32_MAX);
    }
    return push_result(L, aiol_tls_context_set_min_version(ctx, version));
}

static int l_tls_gc(lua_State *L) {
    aiol_tls_context **box = (aiol_tls_context **)luaL_checkudata(L, 1, MT_TLS);
    if (*box) aiol_tls_context_free(*box); /* servers and connections hold their own */
    *box = NULL;
    return 0;
}

static int l_tls_tostring(lua_State *L) {
    aiol_tls_context **box = (aiol_tls_context **)luaL_checkudata(L, 1, MT_TLS);
    lua_pushfstring(L, "aioloop.tls_context: %p", (void *)*box);
    return 1;
}

/* The TLS options shared by create_server and connect; the context stays on the stack. */
static aiol_tls_context *opt_tls(lua_State *L, int opts, uint64_t *hs_ns, uint64_t *sd_ns) {
    static const char *const names[] = {"tls_handshake_timeout", "tls_shutdown_timeout"};
    uint64_t *out[] = {hs_ns, sd_ns};
    lua_getfield(L, opts, "tls");
    aiol_tls_context *ctx = NULL;
    if (!lua_isnil(L, -1)) {
        aiol_tls_context **box = (aiol_tls_context **)test_udata(L, -1, MT_TLS);
        if (!box || !*box)
            luaL_error(L, "bad option 'tls' (aioloop.tls_context expected, got %s)", luaL_typename(L, -1));
        ctx = *box;
    }
    for (int i = 0; i < 2; i++) {
        /* asyncio: ValueError unless positive, and only meaningful with ssl */
        lua_getfield(L, opts, names[i]);
        int absent = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (absent) continue;
        if (!ctx) luaL_error(L, "bad option '%s' (only meaningful with tls)", names[i]);
        lua_Number sec = opt_number(L, opts, names[i], 0, 0, 1.8e10, 0);
        if (!(sec > 0)) luaL_error(L, "bad option '%s' (must be positive)", names[i]);
        *out[i] = (uint64_t)(sec * 1e9);
        if (*out[i] == 0) *out[i] = 1;
    }
    return ctx;
}

/* ---- loop methods ----------------------------------------------------------------------- */

static int l_loop_run(lua_State *L) {
    static const char *const modes[] = {"default", "once", "nowait", NULL};
    lloop *lp = check_loop(L, 1);
    int mode = luaL_checkoption(L, 2, "default", modes);
    lua_State *prev = lp->L;
    lp->L = L;
    int rc = aiol_loop_run(lp->loop, mode);
    lp->L = prev;
    if (rc < 0) return push_fail(L, rc);
    lua_pushboolean(L, rc);
    return 1;
}

static int l_loop_stop(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    return push_result(L, aiol_loop_stop(lp->loop));
}

static int l_loop_now(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    lua_pushnumber(L, (lua_Number)aiol_loop_now(lp->loop) / 1e9);
    return 1;
}

static lcb *new_lcb(lua_State *L, lloop *lp, int fn_idx, int arg, const char *what) {
    lcb *c = (lcb *)calloc(1, sizeof *c);
    if (!c) return NULL;
    c->lp = lp;
    c->arg = arg;
    c->what = what;
    lua_pushvalue(L, fn_idx);
    c->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lp->refs++;
    return c;
}

/* a failed registration: we keep user_data */
static void drop_lcb(lua_State *L, lcb *c) {
    luaL_unref(L, LUA_REGISTRYINDEX, c->fn_ref);
    lloop_unref(c->lp);
    free(c);
}

static int schedule(lua_State *L, int later, int at) {
    lloop *lp = check_loop(L, 1);
    uint64_t t = 0;
    int fn = 2;
    if (later) {
        if (at) {
            lua_Number s = luaL_checknumber(L, 2);
            t = s <= 0 ? 0 : (s >= 1.8e10 ? UINT64_MAX : (uint64_t)(s * 1e9));
        } else {
            t = seconds_to_ns(L, 2);
        }
        fn = 3;
    }
    check_callable(L, fn);
    aiol_handle **box = (aiol_handle **)new_box(L, MT_HANDLE);
    lcb *c = new_lcb(L, lp, fn, 0, later ? "timer callback" : "call_soon callback");
    if (!c) return push_fail(L, AIOL_ENOMEM);
    int rc;
    if (!later) rc = aiol_loop_call_soon(lp->loop, cb_handle, c, cb_destroy, box);
    else if (at) rc = aiol_loop_call_at(lp->loop, t, cb_handle, c, cb_destroy, box);
    else rc = aiol_loop_call_later(lp->loop, t, cb_handle, c, cb_destroy, box);
    if (rc < 0) {
        *box = NULL;
        drop_lcb(L, c);
        return push_fail(L, rc);
    }
    return 1;
}

static int l_loop_call_soon(lua_State *L) { return schedule(L, 0, 0); }
static int l_loop_call_later(lua_State *L) { return schedule(L, 1, 0); }
static int l_loop_call_at(lua_State *L) { return schedule(L, 1, 1); }

static int add_watcher(lua_State *L, int writer) {
    lloop *lp = check_loop(L, 1);
    int fd = check_int_range(L, 2, 0, INT32_MAX);
    check_callable(L, 3);
    lcb *c = new_lcb(L, lp, 3, fd, writer ? "writer callback" : "reader callback");
    if (!c) return push_fail(L, AIOL_ENOMEM);
    int rc = writer ? aiol_loop_add_writer(lp->loop, fd, cb_fd, c, cb_destroy)
                    : aiol_loop_add_reader(lp->loop, fd, cb_fd, c, cb_destroy);
    if (rc < 0) drop_lcb(L, c);
    return push_result(L, rc);
}

static int remove_watcher(lua_State *L, int writer) {
    lloop *lp = check_loop(L, 1);
    int fd = check_int_range(L, 2, 0, INT32_MAX);
    int rc = writer ? aiol_loop_remove_writer(lp->loop, fd) : aiol_loop_remove_reader(lp->loop, fd);
    if (rc < 0) return push_fail(L, rc);
    lua_pushboolean(L, rc > 0);
    return 1;
}

static int l_loop_add_reader(lua_State *L) { return add_watcher(L, 0); }
static int l_loop_add_writer(lua_State *L) { return add_watcher(L, 1); }
static int l_loop_remove_reader(lua_State *L) { return remove_watcher(L, 0); }
static int l_loop_remove_writer(lua_State *L) { return remove_watcher(L, 1); }

static int l_loop_add_signal_handler(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    int signum = check_int_range(L, 2, 1, 1024);
    check_callable(L, 3);
    lcb *c = new_lcb(L, lp, 3, signum, "signal handler");
    if (!c) return push_fail(L, AIOL_ENOMEM);
    int rc = aiol_loop_add_signal_handler(lp->loop, signum, cb_signal, c, cb_destroy);
    if (rc < 0) drop_lcb(L, c);
    return push_result(L, rc);
}

static int l_loop_remove_signal_handler(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    int signum = check_int_range(L, 2, 1, 1024);
    int rc = aiol_loop_remove_signal_handler(lp->loop, signum);
    if (rc < 0) return push_fail(L, rc);
    lua_pushboolean(L, rc > 0);
    return 1;
}

static int l_loop_set_exception_handler(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    if (!lua_isnoneornil(L, 2)) check_callable(L, 2);
    int rc;
    if (lua_isnoneornil(L, 2)) {
        rc = aiol_loop_set_exception_handler(lp->loop, NULL, NULL, NULL);
        if (rc == 0 && lp->exc_ref != LUA_NOREF) {
            luaL_unref(L, LUA_REGISTRYINDEX, lp->exc_ref);
            lp->exc_ref = LUA_NOREF;
        }
        return push_result(L, rc);
    }
    rc = aiol_loop_set_exception_handler(lp->loop, on_exception, lp, NULL);
    if (rc < 0) return push_fail(L, rc);
    if (lp->exc_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, lp->exc_ref);
    lua_pushvalue(L, 2);
    lp->exc_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_loop_set_debug(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    return push_result(L, aiol_loop_set_debug(lp->loop, lua_toboolean(L, 2)));
}

static int l_loop_get_debug(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    lua_pushboolean(L, aiol_loop_get_debug(lp->loop) > 0);
    return 1;
}

static int l_loop_is_closed(lua_State *L) {
    lloop **box = (lloop **)luaL_checkudata(L, 1, MT_LOOP);
    lua_pushboolean(L, !*box || (*box)->closed);
    return 1;
}

/* After aiol_loop_close: no callback runs any more, so the binding's own refs can go. */
static void loop_release(lua_State *L, lloop *lp) {
    lp->closed = 1;
    if (lp->loop && aiol_loop_free(lp->loop) == 0) lp->loop = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, lp->exc_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, lp->msgh_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, lp->invoke_ref);
    lp->exc_ref = lp->msgh_ref = lp->invoke_ref = LUA_NOREF;
    lp->L = NULL;
}

static int l_loop_close(lua_State *L) {
    lloop **box = (lloop **)luaL_checkudata(L, 1, MT_LOOP);
    lloop *lp = *box;
    if (!lp || lp->closed) {
        lua_pushboolean(L, 1); /* idempotent */
        return 1;
    }
    if (lp->closing) return push_fail(L, AIOL_ESTATE); /* from a callback of the close */
    lua_State *prev = lp->L;
    lp->L = L;
    lp->closing = 1;
    int rc = aiol_loop_close(lp->loop);
    lp->closing = 0;
    if (rc < 0) {
        lp->L = prev;
        return push_fail(L, rc);
    }
    loop_release(L, lp);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_loop_gc(lua_State *L) {
    lloop **box = (lloop **)luaL_checkudata(L, 1, MT_LOOP);
    lloop *lp = *box;
    if (!lp) return 0;
    *box = NULL;
    if (!lp->closed) {
        lp->quiet = 1;
        lp->L = L;
        lp->closing = 1;
        aiol_loop_close(lp->loop);
        lp->closing = 0;
        loop_release(L, lp);
    } else if (lp->loop && aiol_loop_free(lp->loop) == 0) {
        lp->loop = NULL;
    }
    if (lp->loop) fprintf(stderr, "aioloop: a collected loop could not be freed (a hold remains)\n");
    lloop_unref(lp);
    return 0;
}

static int l_loop_tostring(lua_State *L) {
    lloop **box = (lloop **)luaL_checkudata(L, 1, MT_LOOP);
    lua_pushfstring(L, "aioloop.loop: %p%s", (void *)*box, (!*box || (*box)->closed) ? " (closed)" : "");
    return 1;
}

/* create_server{host=, port=, unix_path=, backlog=, reuse_port=, protocol=, tls=,
   tls_handshake_timeout=, tls_shutdown_timeout=} */
static int l_loop_create_server(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    aiol_server_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = opt_string(L, 2, "host");           /* 3 */
    cfg.unix_path = opt_string(L, 2, "unix_path"); /* 4 */
    cfg.port = (uint16_t)opt_number(L, 2, "port", 0, 0, 65535, 1);
    cfg.backlog = (int)opt_number(L, 2, "backlog", 0, 0, INT32_MAX, 1);
    cfg.reuse_port = opt_bool(L, 2, "reuse_port");
    lua_getfield(L, 2, "protocol"); /* 5 */
    if (!lua_istable(L, 5) && !lua_isfunction(L, 5))
        return luaL_error(L, "bad option 'protocol' (function or table expected, got %s)",
                          luaL_typename(L, 5));
    lserver **box = (lserver **)new_box(L, MT_SERVER); /* 6 */
    cfg.tls = opt_tls(L, 2, &cfg.tls_handshake_timeout_ns, &cfg.tls_shutdown_timeout_ns); /* 7 */
    lserver *ls = (lserver *)calloc(1, sizeof *ls);
    if (!ls) return push_fail(L, AIOL_ENOMEM);
    ls->lp = lp;
    ls->anchor_ref = LUA_NOREF;
    lua_pushvalue(L, 5);
    ls->factory_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 6);
    ls->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    int rc = aiol_server_start(lp->loop, &cfg, &lua_protocol, server_factory, ls,
                               server_factory_destroy, &ls->s);
    if (rc < 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, ls->factory_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, ls->anchor_ref);
        free(ls);
        return push_fail(L, rc);
    }
    lp->refs++;
    ls->refs = 2; /* the box and the library's factory_data */
    *box = ls;
    lua_settop(L, 6);
    return 1;
}

/* connect{host=, port=, unix_path=, timeout=, protocol=, done=, tls=, server_hostname=,
   tls_handshake_timeout=, tls_shutdown_timeout=} -> handle (cancel) */
static int l_loop_connect(lua_State *L) {
    lloop *lp = check_loop(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    aiol_connect_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.host = opt_string(L, 2, "host");           /* 3 */
    cfg.unix_path = opt_string(L, 2, "unix_path"); /* 4 */
    cfg.port = (uint16_t)opt_number(L, 2, "port", 0, 0, 65535, 1);
    lua_Number timeout = opt_number(L, 2, "timeout", 0, 0, 1.8e10, 0);
    cfg.timeout_ns = (uint64_t)(timeout * 1e9);
    if (timeout > 0 && cfg.timeout_ns == 0) cfg.timeout_ns = 1;
    lua_getfield(L, 2, "protocol"); /* 5 */
    if (lua_isfunction(L, 5)) { /* a factory: called now */
        lua_call(L, 0, 1);
    }
    if (!lua_istable(L, 5))
        return luaL_error(L, "bad option 'protocol' (table or function returning one expected, got %s)",
                          luaL_typename(L, 5));
    lua_getfield(L, 2, "done"); /* 6 */
    if (!lua_isnil(L, 6) && !lua_isfunction(L, 6))
        return luaL_error(L, "bad option 'done' (function expected, got %s)", luaL_typename(L, 6));
    aiol_handle **box = (aiol_handle **)new_box(L, MT_HANDLE); /* 7 */
    cfg.tls = opt_tls(L, 2, &cfg.tls_handshake_timeout_ns, &cfg.tls_shutdown_timeout_ns); /* 8 */
    cfg.server_hostname = opt_string(L, 2, "server_hostname"); /* 9 */
    if (cfg.server_hostname && !cfg.tls)
        return luaL_error(L, "bad option 'server_hostname' (only meaningful with tls)");
    lconn *c = (lconn *)calloc(1, sizeof *c);
    if (!c) return push_fail(L, AIOL_ENOMEM);
    c->lp = lp;
    c->box_ref = LUA_NOREF;
    c->done_ref = LUA_NOREF;
    c->buf_ref = LUA_NOREF;
    lua_pushvalue(L, 5);
    c->proto_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!lua_isnil(L, 6)) {
        lua_pushvalue(L, 6);
        c->done_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    int rc = aiol_loop_connect(lp->loop, &cfg, &lua_protocol, c, connect_done, c, box);
    if (rc < 0) {
        *box = NULL;
        luaL_unref(L, LUA_REGISTRYINDEX, c->proto_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, c->done_ref);
        free(c);
        return push_fail(L, rc);
    }
    lp->refs++;
    lua_settop(L, 7);
    return 1;
}

/* ---- handle methods ------------------------------------------------------------------- */

static int l_handle_cancel(lua_State *L) {
    int rc = aiol_handle_cancel(check_handle(L, 1));
    if (rc < 0) return push_fail(L, rc);
    lua_pushboolean(L, rc > 0);
    return 1;
}

static int l_handle_cancelled(lua_State *L) {
    lua_pushboolean(L, aiol_handle_cancelled(check_handle(L, 1)));
    return 1;
}

static int l_handle_when(lua_State *L) {
    lua_pushnumber(L, (lua_Number)aiol_handle_when(check_handle(L, 1)) / 1e9);
    return 1;
}

static int l_handle_gc(lua_State *L) {
    aiol_handle **box = (aiol_handle **)luaL_checkudata(L, 1, MT_HANDLE);
    if (*box) aiol_handle_release(*box);
    *box = NULL;
    return 0;
}

static int l_handle_tostring(lua_State *L) {
    aiol_handle **box = (aiol_handle **)luaL_checkudata(L, 1, MT_HANDLE);
    lua_pushfstring(L, "aioloop.handle: %p", (void *)*box);
    return 1;
}

/* ---- server methods ------------------------------------------------------------------- */

static int l_server_close(lua_State *L) {
    lserver *ls = check_server(L, 1);
    int rc = aiol_server_close(ls->s);
    if (rc == 0 && ls->anchor_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, ls->anchor_ref);
        ls->anchor_ref = LUA_NOREF;
    }
    return push_result(L, rc);
}

static int l_server_close_clients(lua_State *L) {
    return push_result(L, aiol_server_close_clients(check_server(L, 1)->s));
}

static int l_server_abort_clients(lua_State *L) {
    return push_result(L, aiol_server_abort_clients(check_server(L, 1)->s));
}

static int l_server_wait_closed(lua_State *L) {
    lserver *ls = check_server(L, 1);
    check_callable(L, 2);
    if (ls->lp->closed) return push_fail(L, AIOL_ECLOSED);
    lcb *c = new_lcb(L, ls->lp, 2, 0, "wait_closed callback");
    if (!c) return push_fail(L, AIOL_ENOMEM);
    int rc = aiol_server_wait_closed(ls->s, cb_wait_closed, c);
    if (rc < 0) drop_lcb(L, c);
    return push_result(L, rc);
}

static int l_server_is_serving(lua_State *L) {
    lua_pushboolean(L, aiol_server_is_serving(check_server(L, 1)->s));
    return 1;
}

static int l_server_socket_count(lua_State *L) {
    lua_pushinteger(L, aiol_server_socket_count(check_server(L, 1)->s));
    return 1;
}

/* sockname([i]) -> host, port (or path); i is 1-based, default 1 */
static int l_server_sockname(lua_State *L) {
    lserver *ls = check_server(L, 1);
    int i = lua_isnoneornil(L, 2) ? 1 : check_int_range(L, 2, INT32_MIN, INT32_MAX);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = aiol_server_sockname(ls->s, i - 1, &ss, &len);
    if (rc < 0) return push_fail(L, rc);
    return push_sockaddr(L, &ss, len);
}

static int l_server_gc(lua_State *L) {
    lserver **box = (lserver **)luaL_checkudata(L, 1, MT_SERVER);
    lserver *ls = *box;
    if (!ls) return 0;
    *box = NULL;
    aiol_server_free(ls->s);
    ls->s = NULL;
    lserver_unref(ls);
    return 0;
}

static int l_server_tostring(lua_State *L) {
    lserver **box = (lserver **)luaL_checkudata(L, 1, MT_SERVER);
    lua_pushfstring(L, "aioloop.server: %p", *box ? (void *)(*box)->s : NULL);
    return 1;
}

/* ---- transport methods ---------------------------------------------------------------- */

/* write(s, ...) — several strings go out in one writev */
static int l_transport_write(lua_State *L) {
    aiol_transport *t = check_transport(L, 1);
    int n = lua_gettop(L) - 1;
    if (n <= 1) {
        size_t len;
        const char *s = luaL_checklstring(L, 2, &len);
        return push_result(L, aiol_transport_write(t, s, len));
    }
    aiol_buf bufs[16];
    aiol_buf *v = n <= 16 ? bufs : (aiol_buf *)lua_newuserdata(L, sizeof(aiol_buf) * (size_t)n);
    for (int i = 0; i < n; i++) v[i].base = luaL_checklstring(L, i + 2, &v[i].len);
    return push_result(L, aiol_transport_writev(t, v, (size_t)n));
}

static int l_transport_write_eof(lua_State *L) {
    return push_result(L, aiol_transport_write_eof(check_transport(L, 1)));
}

static int l_transport_can_write_eof(lua_State *L) {
    lua_pushboolean(L, aiol_transport_can_write_eof(check_transport(L, 1)));
    return 1;
}

static int l_transport_close(lua_State *L) {
    return push_result(L, aiol_transport_close(check_transport(L, 1)));
}

static int l_transport_abort(lua_State *L) {
    return push_result(L, aiol_transport_abort(check_transport(L, 1)));
}

static int l_transport_is_closing(lua_State *L) {
    lua_pushboolean(L, aiol_transport_is_closing(check_transport(L, 1)));
    return 1;
}

static int l_transport_pause_reading(lua_State *L) {
    return push_result(L, aiol_transport_pause_reading(check_transport(L, 1)));
}

static int l_transport_resume_reading(lua_State *L) {
    return push_result(L, aiol_transport_resume_reading(check_transport(L, 1)));
}

static int l_transport_is_reading(lua_State *L) {
    lua_pushboolean(L, aiol_transport_is_reading(check_transport(L, 1)));
    return 1;
}

static size_t opt_limit(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) return AIOL_WBUF_DEFAULT;
    lua_Number n = luaL_checknumber(L, idx);
    if (n != n || n < 0 || n > 9007199254740992.0) luaL_argerror(L, idx, "limit out of range");
    return (size_t)n;
}

static int l_transport_set_write_buffer_limits(lua_State *L) {
    aiol_transport *t = check_transport(L, 1);
    size_t high = opt_limit(L, 2), low = opt_limit(L, 3);
    return push_result(L, aiol_transport_set_write_buffer_limits(t, high, low));
}

static int l_transport_get_write_buffer_limits(lua_State *L) {
    size_t high = 0, low = 0;
    int rc = aiol_transport_get_write_buffer_limits(check_transport(L, 1), &high, &low);
    if (rc < 0) return push_fail(L, rc);
    lua_pushinteger(L, (lua_Integer)high);
    lua_pushinteger(L, (lua_Integer)low);
    return 2;
}

static int l_transport_get_write_buffer_size(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)aiol_transport_get_write_buffer_size(check_transport(L, 1)));
    return 1;
}

static int l_transport_peername(lua_State *L) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = aiol_transport_peername(check_transport(L, 1), &ss, &len);
    if (rc < 0) return push_fail(L, rc);
    return push_sockaddr(L, &ss, len);
}

static int l_transport_sockname(lua_State *L) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = aiol_transport_sockname(check_transport(L, 1), &ss, &len);
    if (rc < 0) return push_fail(L, rc);
    return push_sockaddr(L, &ss, len);
}

static int l_transport_fileno(lua_State *L) {
    int rc = aiol_transport_fileno(check_transport(L, 1));
    if (rc < 0) return push_fail(L, rc);
    lua_pushinteger(L, rc);
    return 1;
}

/* TLS (asyncio get_extra_info("ssl_object") ...): nil, "EINVAL: ..." for a plain transport */
static int l_transport_tls_alpn(lua_State *L) {
    const char *p;
    size_t len;
    int rc = aiol_transport_tls_alpn(check_transport(L, 1), &p, &len);
    if (rc < 0) return push_fail(L, rc);
    if (p) lua_pushlstring(L, p, len);
    else lua_pushnil(L);
    return 1;
}

static int l_transport_tls_server_name(lua_State *L) {
    const char *name = aiol_transport_tls_server_name(check_transport(L, 1));
    if (name) lua_pushstring(L, name);
    else lua_pushnil(L);
    return 1;
}

/* the peer's certificate in DER (asyncio get_extra_info("peercert", binary_form)) */
static int l_transport_tls_peer_cert(lua_State *L) {
    const void *der;
    size_t len;
    int rc = aiol_transport_tls_peer_cert_der(check_transport(L, 1), &der, &len);
    if (rc < 0) return push_fail(L, rc);
    if (der) lua_pushlstring(L, (const char *)der, len);
    else lua_pushnil(L);
    return 1;
}

static int l_transport_gc(lua_State *L) {
    aiol_transport **box = (aiol_transport **)luaL_checkudata(L, 1, MT_TRANSPORT);
    if (*box) aiol_transport_unref(*box);
    *box = NULL;
    return 0;
}

static int l_transport_tostring(lua_State *L) {
    aiol_transport **box = (aiol_transport **)luaL_checkudata(L, 1, MT_TRANSPORT);
    lua_pushfstring(L, "aioloop.transport: %p", (void *)*box);
    return 1;
}

/* ---- registration ----------------------------------------------------------------------- */

static const luaL_Reg loop_methods[] = {
    {"run", l_loop_run},
    {"stop", l_loop_stop},
    {"now", l_loop_now},
    {"call_soon", l_loop_call_soon},
    {"call_later", l_loop_call_later},
    {"call_at", l_loop_call_at},
    {"add_reader", l_loop_add_reader},
    {"remove_reader", l_loop_remove_reader},
    {"add_writer", l_loop_add_writer},
    {"remove_writer", l_loop_remove_writer},
    {"add_signal_handler", l_loop_add_signal_handler},
    {"remove_signal_handler", l_loop_remove_signal_handler},
    {"create_server", l_loop_create_server},
    {"connect", l_loop_connect},
    {"set_exception_handler", l_loop_set_exception_handler},
    {"set_debug", l_loop_set_debug},
    {"get_debug", l_loop_get_debug},
    {"is_closed", l_loop_is_closed},
    {"close", l_loop_close},
    {NULL, NULL},
};

static const luaL_Reg handle_methods[] = {
    {"cancel", l_handle_cancel},
    {"cancelled", l_handle_cancelled},
    {"when", l_handle_when},
    {NULL, NULL},
};

static const luaL_Reg server_methods[] = {
    {"close", l_server_close},
    {"close_clients", l_server_close_clients},
    {"abort_clients", l_server_abort_clients},
    {"wait_closed", l_server_wait_closed},
    {"is_serving", l_server_is_serving},
    {"socket_count", l_server_socket_count},
    {"sockname", l_server_sockname},
    {NULL, NULL},
};

static const luaL_Reg transport_methods[] = {
    {"write", l_transport_write},
    {"write_eof", l_transport_write_eof},
    {"can_write_eof", l_transport_can_write_eof},
    {"close", l_transport_close},
    {"abort", l_transport_abort},
    {"is_closing", l_transport_is_closing},
    {"pause_reading", l_transport_pause_reading},
    {"resume_reading", l_transport_resume_reading},
    {"is_reading", l_transport_is_reading},
    {"set_write_buffer_limits", l_transport_set_write_buffer_limits},
    {"get_write_buffer_limits", l_transport_get_write_buffer_limits},
    {"get_write_buffer_size", l_transport_get_write_buffer_size},
    {"peername", l_transport_peername},
    {"sockname", l_transport_sockname},
    {"fileno", l_transport_fileno},
    {"tls_alpn", l_transport_tls_alpn},
    {"tls_server_name", l_transport_tls_server_name},
    {"tls_peer_cert", l_transport_tls_peer_cert},
    {NULL, NULL},
};

static const luaL_Reg module_functions[] = {
    {"new_loop", l_new_loop},
    {"strerror", l_strerror},
    {"err_name", l_err_name},
    {"has_feature", l_has_feature},
    {"version", l_version},
    {"pipe", l_pipe},
    {"fd_write", l_fd_write},
    {"fd_read", l_fd_read},
    {"fd_close", l_fd_close},
    {"buffer", l_buffer},
    {"tls_server", l_tls_server},
    {"tls_server_pem", l_tls_server_pem},
    {"tls_client", l_tls_client},
    {NULL, NULL},
};

static const luaL_Reg buffer_methods[] = {
    {"len", l_buffer_len},
    {"tostring", l_buffer_tostring_range},
    {"byte", l_buffer_byte},
    {NULL, NULL},
};

static const luaL_Reg tls_methods[] = {
    {"set_alpn", l_tls_set_alpn},
    {"set_min_version", l_tls_set_min_version},
    {NULL, NULL},
};

static void new_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                          lua_CFunction gc, lua_CFunction tostring, lua_CFunction close) {
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    if (gc) { /* none for a buffer: its bytes are the userdata's own */
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
#if LUA_VERSION_NUM >= 504
    if (close) {
        lua_pushcfunction(L, close);
        lua_setfield(L, -2, "__close");
    }
#else
    (void)close;
#endif
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

#if LUA_VERSION_NUM >= 504
static int l_loop_close_tbc(lua_State *L) {
    lua_settop(L, 1);
    l_loop_close(L);
    return 0;
}
static int l_server_close_tbc(lua_State *L) {
    lserver **box = (lserver **)luaL_checkudata(L, 1, MT_SERVER);
    if (*box && (*box)->s) {
        lua_settop(L, 1);
        l_server_close(L);
    }
    return 0;
}
#else
#define l_loop_close_tbc NULL
#define l_server_close_tbc NULL
#endif

AIOL_LUA_EXPORT int luaopen_aioloop(lua_State *L) {
    new_metatable(L, MT_LOOP, loop_methods, l_loop_gc, l_loop_tostring, l_loop_close_tbc);
    new_metatable(L, MT_HANDLE, handle_methods, l_handle_gc, l_handle_tostring, NULL);
    new_metatable(L, MT_SERVER, server_methods, l_server_gc, l_server_tostring, l_server_close_tbc);
    new_metatable(L, MT_TRANSPORT, transport_methods, l_transport_gc, l_transport_tostring, NULL);
    new_metatable(L, MT_TLS, tls_methods, l_tls_gc, l_tls_tostring, NULL);
    new_metatable(L, MT_BUFFER, buffer_methods, NULL, l_buffer_tostring, NULL);
    luaL_getmetatable(L, MT_BUFFER);
    lua_pushcfunction(L, l_buffer_len);
    lua_setfield(L, -2, "__len");
    lua_pop(L, 1);

    lua_newtable(L);
    luaL_setfuncs(L, module_functions, 0);
    static const struct {
        const char *name;
        int value;
    } constants[] = {
        {"SIGHUP", SIGHUP},     {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
        {"SIGUSR1", SIGUSR1},   {"SIGUSR2", SIGUSR2},   {"SIGPIPE", SIGPIPE},
        {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM},   {"SIGCHLD", SIGCHLD},
        {"SIGWINCH", SIGWINCH}, {"SIGCONT", SIGCONT},   {"SIGTSTP", SIGTSTP},
        {"ECLOSED", AIOL_ECLOSED}, {"ESTATE", AIOL_ESTATE}, {"ETHREAD", AIOL_ETHREAD},
        {"ECANCELED", AIOL_ECANCELED}, {"ETIMEDOUT", AIOL_ETIMEDOUT},
        {"EADDRINUSE", AIOL_EADDRINUSE}, {"ECONNREFUSED", AIOL_ECONNREFUSED},
        {"ECONNRESET", AIOL_ECONNRESET}, {"EINVAL", AIOL_EINVAL}, {"EBUSY", AIOL_EBUSY},
        {"ETLS", AIOL_ETLS}, {"ENOTSUP", AIOL_ENOTSUP},
        {"TLS1_2", 0x0303}, {"TLS1_3", 0x0304},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        lua_pushinteger(L, constants[i].value);
        lua_setfield(L, -2, constants[i].name);
    }
    lua_pushstring(L, aiol_version_string());
    lua_setfield(L, -2, "VERSION");
    return 1;
}
