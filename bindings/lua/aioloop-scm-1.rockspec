-- LuaRocks spec for the Lua binding of libaioloop (the C library itself comes from the
-- system or a Meson install: `pkg-config aioloop` must find it).
--
--   cd bindings/lua
--   luarocks make aioloop-scm-1.rockspec \
--       AIOLOOP_INCDIR="$(pkg-config --variable=includedir aioloop)" \
--       AIOLOOP_LIBDIR="$(pkg-config --variable=libdir aioloop)"
--
-- (LuaRocks 3.9+ also asks pkg-config for an external dependency by itself when the
-- variables are not given.)
rockspec_format = "3.0"
package = "aioloop"
version = "scm-1"

source = {
    url = "git+https://example.invalid/libaioloop.git",
    dir = "libaioloop/bindings/lua",
}

description = {
    summary = "asyncio's event loop, TCP server and transports for Lua (libaioloop)",
    detailed = [[
require "aioloop": loops, timers, fd watchers, signal handlers, TCP / Unix servers and
connections with asyncio-style protocol tables, in the luv style (userdata boxes, callbacks
under pcall, nil, "ENAME: message", "ENAME" on failure). Lua 5.1 (LuaJIT 2.1) to 5.4.
]],
    license = "MIT",
    homepage = "https://example.invalid/libaioloop",
}

dependencies = {
    "lua >= 5.1, < 5.5",
}

external_dependencies = {
    AIOLOOP = {
        header = "aioloop.h",
        library = "aioloop",
    },
}

build = {
    type = "builtin",
    modules = {
        aioloop = {
            sources = { "aioloop_lua.c" },
            libraries = { "aioloop" },
            incdirs = { "$(AIOLOOP_INCDIR)" },
            libdirs = { "$(AIOLOOP_LIBDIR)" },
            defines = { "_GNU_SOURCE" },
        },
    },
    copy_directories = { "examples" },
}

test = {
    type = "command",
    command = "lua tests/run.lua",
}
