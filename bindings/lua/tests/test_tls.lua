-- TLS (asyncio's SSL transports): contexts from files and PEM strings, echo, verification
-- failures, ALPN, SNI, the peer certificate, the handshake timeout of a silent peer,
-- BufferedProtocol over TLS, and option checking. Throwaway certificates come from
-- H.certs() (the openssl command, a temporary directory, never committed).
local aioloop = require "aioloop"
local H = require "helpers"
local tests, test = H.suite()

local HAVE_TLS = aioloop.has_feature("tls")

local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- Runs fn(c) with the certificates, or checks the no-TLS build's answer instead.
local function tls_test(name, fn)
    test(name, function()
        if not HAVE_TLS then
            local ctx, err, ename = aioloop.tls_client()
            H.eq(ctx, nil, "no context without TLS built in")
            H.eq(ename, aioloop.err_name(aioloop.ENOTSUP), "EOPNOTSUPP: TLS is not built in")
            return "skip"
        end
        local c = H.certs()
        if not c then
            io.stderr:write("test_tls: the openssl command could not make certificates\n")
            return "skip"
        end
        return fn(c)
    end)
end

local function client_ctx(c, opts)
    return assert(aioloop.tls_client(opts or {ca = c.ca}))
end

-- A TLS echo server; on_conn(t) runs at each connection_made.
local function tls_echo_server(loop, ctx, opts, on_conn)
    local cfg = {host = "127.0.0.1", port = 0, tls = ctx, protocol = function()
        return {
            connection_made = function(_, t) if on_conn then on_conn(t) end end,
            data_received = function(_, t, d) t:write(d) end,
        }
    end}
    for k, v in pairs(opts or {}) do cfg[k] = v end
    local server = assert(loop:create_server(cfg))
    local _, port = server:sockname()
    return server, port
end

tls_test("TLS echo: 256 KiB through a server from PEM files, SNI, peer certificate", function(c)
    local loop, errors = H.loop()
    local sctx = assert(aioloop.tls_server(c.cert, c.key))
    H.match(tostring(sctx), "^aioloop%.tls_context: ")
    local st
    local server, port = tls_echo_server(loop, sctx, nil, function(t) st = t end)
    local want = ("0123456789abcdef"):rep(16384)
    local cl = H.client(loop, {host = "127.0.0.1", port = port, tls = client_ctx(c),
                               server_hostname = "localhost"}, {
        connection_made = function(_, t) t:write(want) end,
    })
    H.run_until(loop, function() return #cl.text() >= #want end, 10, "the TLS echo")
    H.eq(cl.text() == want, true, "echoed bytes")
    local t = cl.done_t
    H.ok(t, "done got the transport")
    H.eq(t:tls_server_name(), "localhost", "client: the SNI it asked for")
    H.eq(st:tls_server_name(), "localhost", "server: the SNI the client sent")
    H.eq(t:tls_peer_cert() == c.der, true, "client: the server's certificate in DER")
    H.eq(st:tls_peer_cert(), nil, "server: the client sent no certificate")
    H.eq(t:tls_alpn(), nil, "no ALPN configured")
    H.eq(t:can_write_eof(), false, "no half-close over TLS")
    t:close() -- close_notify, then the server's echo protocol closes on EOF
    H.run_until(loop, function() return cl.lost end)
    H.eq(cl.err, nil, "clean close")
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

tls_test("TLS echo with a server context from PEM strings, verified by IP address", function(c)
    local loop, errors = H.loop()
    local sctx = assert(aioloop.tls_server_pem(slurp(c.cert), slurp(c.key)))
    local server, port = tls_echo_server(loop, sctx)
    local cl = H.client(loop, {host = "127.0.0.1", port = port, tls = client_ctx(c)}, {
        connection_made = function(_, t) t:write("over tls") end,
    })
    H.run_until(loop, function() return #cl.text() >= 8 end)
    H.eq(cl.text(), "over tls")
    H.eq(cl.done_t:tls_server_name(), nil, "no SNI for an IP address")
    cl.done_t:close()
    H.run_until(loop, function() return cl.lost end)
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

tls_test("plain transports answer the TLS getters with nil", function(c)
    local loop, errors = H.loop()
    local server, _, port = H.echo_server(loop)
    local cl = H.client(loop, {host = "127.0.0.1", port = port})
    H.run_until(loop, function() return cl.done end)
    local alpn, err, ename = cl.done_t:tls_alpn()
    H.eq(alpn, nil)
    H.eq(ename, "EINVAL")
    H.eq(cl.done_t:tls_peer_cert(), nil)
    H.eq(cl.done_t:tls_server_name(), nil)
    cl.done_t:close()
    server:close()
    H.run_until(loop, function() return cl.lost end)
    H.eq(#errors, 0)
    loop:close()
end)

-- connect with ctx to a fresh TLS server; returns the client record once done ran
local function handshake(c, ctx, connect_opts, server_ctx)
    local loop, errors = H.loop()
    local server, port = tls_echo_server(loop, server_ctx or assert(aioloop.tls_server(c.cert, c.key)))
    local target = {host = "127.0.0.1", port = port, tls = ctx}
    for k, v in pairs(connect_opts or {}) do target[k] = v end
    local cl = H.client(loop, target)
    H.run_until(loop, function() return cl.done end, 10, "the handshake")
    if cl.done_t then
        cl.done_t:close()
        H.run_until(loop, function() return cl.lost end)
    end
    server:close()
    H.eq(#errors, 0, "server handshake failures are reported only in debug mode")
    loop:close()
    return cl
end

tls_test("verification fails against another CA: done(nil, AIOL_ETLS)", function(c)
    local cl = handshake(c, client_ctx(c, {ca = c.other_ca}), {server_hostname = "localhost"})
    H.eq(cl.done_t, nil)
    H.match(cl.done_err, "^AIOL_ETLS: TLS error")
    H.eq(cl.done_name, "AIOL_ETLS")
    H.eq(cl.lost, false, "no connection_made, no connection_lost")
end)

tls_test("verification fails for the wrong host name, and against the system store", function(c)
    local cl = handshake(c, client_ctx(c), {server_hostname = "wrong.example"})
    H.eq(cl.done_name, "AIOL_ETLS")
    cl = handshake(c, client_ctx(c, {}), {server_hostname = "localhost"})
    H.eq(cl.done_name, "AIOL_ETLS", "the test CA is not in the system store")
end)

tls_test("verify = false accepts any certificate", function(c)
    local cl = handshake(c, client_ctx(c, {ca = c.other_ca, verify = false}),
                         {server_hostname = "wrong.example"})
    H.ok(cl.done_t, "connected")
    H.eq(cl.done_err, nil)
    H.eq(cl.done_t:tls_peer_cert() == c.der, true, "the certificate is still there to see")
end)

tls_test("ALPN: the server's preference among the client's, none without overlap", function(c)
    local function alpn_pair(server_list, client_list)
        local sctx = assert(aioloop.tls_server(c.cert, c.key))
        assert(sctx:set_alpn(server_list))
        local cctx = client_ctx(c)
        assert(cctx:set_alpn(client_list))
        local loop, errors = H.loop()
        local st
        local server, port = tls_echo_server(loop, sctx, nil, function(t) st = t end)
        local cl = H.client(loop, {host = "127.0.0.1", port = port, tls = cctx,
                                   server_hostname = "localhost"})
        H.run_until(loop, function() return cl.done and st end)
        local a, b = cl.done_t:tls_alpn(), st:tls_alpn()
        H.eq(select(2, cctx:set_alpn{"h2"}), "AIOL_ESTATE: operation not allowed in this state",
             "ALPN is fixed once the context is used")
        cl.done_t:close()
        H.run_until(loop, function() return cl.lost end)
        server:close()
        H.eq(#errors, 0)
        loop:close()
        return a, b
    end
    local a, b = alpn_pair({"h2", "http/1.1"}, {"foo", "http/1.1", "h2"})
    H.eq(a, "h2", "client: the server's first choice the client offers")
    H.eq(b, "h2", "server")
    a, b = alpn_pair({"h2", "http/1.1"}, {"http/1.1"})
    H.eq(a, "http/1.1")
    H.eq(b, "http/1.1")
    a, b = alpn_pair({"h2"}, {"spdy/3"})
    H.eq(a, nil, "no overlap: no ALPN")
    H.eq(b, nil)
    local ctx = client_ctx(c)
    H.raises("1 to 255 bytes", ctx.set_alpn, ctx, {""})
    H.raises("1 to 255 bytes", ctx.set_alpn, ctx, {("x"):rep(256)})
    H.raises("1 to 255 bytes", ctx.set_alpn, ctx, {1})
    H.raises("table expected", ctx.set_alpn, ctx, "h2")
end)

tls_test("set_min_version: TLS 1.3 on both sides connects; other values are refused", function(c)
    local sctx = assert(aioloop.tls_server(c.cert, c.key))
    H.eq(sctx:set_min_version("TLSv1.3"), true)
    local cctx = client_ctx(c)
    H.eq(cctx:set_min_version(aioloop.TLS1_3), true)
    local cl = handshake(c, cctx, {server_hostname = "localhost"}, sctx)
    H.ok(cl.done_t, "connected over TLS 1.3")
    H.eq(cctx:set_min_version(aioloop.TLS1_2), true)
    H.eq(cctx:set_min_version(0), true, "0: the default (TLS 1.2)")
    local ok, _, ename = cctx:set_min_version(0x0301)
    H.eq(ok, nil)
    H.eq(ename, "EINVAL", "TLS 1.0 is refused")
    H.raises("invalid option", cctx.set_min_version, cctx, "SSLv3")
end)

tls_test("contexts that cannot load give nil, AIOL_ETLS", function(c)
    local ctx, err, ename = aioloop.tls_server(c.dir .. "/missing.pem", c.key)
    H.eq(ctx, nil)
    H.eq(ename, "AIOL_ETLS")
    ctx, err, ename = aioloop.tls_server(c.cert, c.dir .. "/other-ca.key")
    H.eq(ename, "AIOL_ETLS", "the key does not match the certificate")
    ctx, err, ename = aioloop.tls_server_pem("not pem", "not pem")
    H.eq(ename, "AIOL_ETLS")
    ctx, err, ename = aioloop.tls_client{ca = c.dir .. "/missing.pem"}
    H.eq(ename, "AIOL_ETLS")
end)

tls_test("client handshake timeout: a silent plain server gives done(nil, ETIMEDOUT)", function(c)
    local loop, errors = H.loop()
    local accepted, server_lost = false, false
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        accepted = true
        return {connection_lost = function() server_lost = true end} -- says nothing
    end})
    local _, port = server:sockname()
    local t0 = loop:now()
    local cl = H.client(loop, {host = "127.0.0.1", port = port, tls = client_ctx(c),
                               server_hostname = "localhost", tls_handshake_timeout = 0.3})
    H.run_until(loop, function() return cl.done end, 5, "the handshake timeout")
    local took = loop:now() - t0
    H.eq(accepted, true)
    H.eq(cl.done_name, "ETIMEDOUT")
    H.ok(took >= 0.3 and took < 2, ("timed out after %.3f s (0.3 s asked)"):format(took))
    H.run_until(loop, function() return server_lost end, 5, "the socket closed")
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

tls_test("server handshake timeout: a silent plain client is disconnected", function(c)
    local loop, errors = H.loop()
    local made = false
    local server = assert(loop:create_server{
        host = "127.0.0.1", port = 0, tls = assert(aioloop.tls_server(c.cert, c.key)),
        tls_handshake_timeout = 0.3, tls_shutdown_timeout = 1,
        protocol = {connection_made = function() made = true end},
    })
    local _, port = server:sockname()
    local t0 = loop:now()
    local cl = H.client(loop, {host = "127.0.0.1", port = port}) -- plain, silent
    H.run_until(loop, function() return cl.lost end, 5, "the server to give up")
    local took = loop:now() - t0
    H.ok(took >= 0.3 and took < 2, ("closed after %.3f s (0.3 s asked)"):format(took))
    H.eq(made, false, "connection_made never ran on the server")
    H.eq(#cl.data, 0, "nothing was sent")
    local waited = false
    server:close()
    server:wait_closed(function() waited = true end)
    H.run_until(loop, function() return waited end)
    H.eq(#errors, 0, "handshake failures are reported only in debug mode")
    loop:close()
end)

tls_test("BufferedProtocol over TLS: a 16-byte buffer echoes 64 KiB", function(c)
    local loop, errors = H.loop()
    local sctx = assert(aioloop.tls_server(c.cert, c.key))
    local updates, biggest = 0, 0
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, tls = sctx,
                                             protocol = function()
        local buf = aioloop.buffer(16)
        return {
            get_buffer = function() return buf end,
            buffer_updated = function(_, t, n)
                updates, biggest = updates + 1, math.max(biggest, n)
                t:write(buf:tostring(1, n))
            end,
        }
    end})
    local _, port = server:sockname()
    local want = ("abcdefghijklmnop"):rep(4096)
    local cl = H.client(loop, {host = "127.0.0.1", port = port, tls = client_ctx(c),
                               server_hostname = "localhost"}, {
        connection_made = function(_, t) t:write(want) end,
    })
    H.run_until(loop, function() return #cl.text() >= #want end, 10, "the echo")
    H.eq(cl.text() == want, true)
    H.ok(updates >= #want / 16, "16 bytes at most per update")
    H.eq(biggest, 16)
    cl.done_t:close()
    H.run_until(loop, function() return cl.lost end)
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

test("TLS options are checked (asyncio's ValueErrors)", function()
    local loop = aioloop.new_loop()
    local p = {}
    H.raises("only meaningful with tls", loop.connect, loop,
             {host = "127.0.0.1", port = 1, protocol = p, server_hostname = "x"})
    H.raises("only meaningful with tls", loop.connect, loop,
             {host = "127.0.0.1", port = 1, protocol = p, tls_handshake_timeout = 1})
    H.raises("only meaningful with tls", loop.create_server, loop,
             {host = "127.0.0.1", port = 0, protocol = p, tls_shutdown_timeout = 1})
    H.raises("aioloop.tls_context expected, got string", loop.create_server, loop,
             {host = "127.0.0.1", port = 0, protocol = p, tls = "yes"})
    if HAVE_TLS then
        local ctx = assert(aioloop.tls_client{verify = false})
        H.raises("must be positive", loop.connect, loop,
                 {host = "127.0.0.1", port = 1, protocol = p, tls = ctx, tls_handshake_timeout = 0})
        H.raises("out of range", loop.connect, loop,
                 {host = "127.0.0.1", port = 1, protocol = p, tls = ctx, tls_shutdown_timeout = -1})
    end
    H.raises("table expected", aioloop.tls_client, "ca.pem")
    H.raises("string expected", aioloop.tls_server, nil, "key")
    loop:close()
end)

return tests
