-- Garbage collection: an abandoned loop with live servers, transports, timers, watchers
-- and signal handlers is torn down by its finalizer without calling back into Lua;
-- boxes that outlive their loop stay safe. run under valgrind by test.sh (lua5.4).
local aioloop = require "aioloop"
local H = require "helpers"
local tests, test = H.suite()

local function full_gc()
    -- LuaJIT's compiled traces may hold the closures they specialised on (and what those
    -- reach) as constants: flush them, or a weak table would keep entries
    if jit then jit.flush() end
    for _ = 1, 4 do collectgarbage("collect") end
end

-- Builds a busy loop and returns only what the test keeps (weakly, or on purpose).
local function busy_loop(track, keep)
    local loop = aioloop.new_loop()
    loop:set_exception_handler(function(ctx) track.reported = ctx end)
    local server_proto = {
        data_received = function(_, t, d) t:write(d) end,
        connection_lost = function() track.called_back = true end,
    }
    track.objects[#track.objects + 1] = server_proto
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0,
        protocol = function() return server_proto end})
    local _, port = server:sockname()
    local clients = {}
    for i = 1, 3 do
        local proto = {
            connection_made = function(self, t) self.t = t t:write("x") end,
            data_received = function(self) self.echoed = true end,
            connection_lost = function() track.called_back = true end,
        }
        track.objects[#track.objects + 1] = proto
        clients[i] = proto
        loop:connect{host = "127.0.0.1", port = port, protocol = proto}
    end
    H.run_until(loop, function()
        for i = 1, 3 do if not clients[i].echoed then return false end end
        return true
    end)
    local timer_fn = function() track.called_back = true end
    track.objects[#track.objects + 1] = timer_fn
    local h = loop:call_later(100, timer_fn)
    local r, w = aioloop.pipe()
    track.fds = {r, w}
    loop:add_reader(r, function() track.called_back = true end)
    assert(loop:add_signal_handler(aioloop.SIGUSR2, function() track.called_back = true end))
    track.port = port
    track.objects[#track.objects + 1] = clients[1].t
    if keep then
        keep.t = clients[1].t
        keep.server = server
        keep.handle = h
    end
    return nil -- the loop, the server and everything else are dropped here
end

local function new_track()
    return {objects = setmetatable({}, {__mode = "v"})}
end

test("an abandoned busy loop is torn down by the collector, without callbacks", function()
    local track = new_track()
    busy_loop(track)
    full_gc()
    H.eq(track.called_back, nil, "no Lua callback ran during the teardown")
    H.eq(next(track.objects), nil, "protocols, callbacks and transports were released")
    -- the listening socket is gone and the signal is free again
    local loop = H.loop()
    local c = H.client(loop, {host = "127.0.0.1", port = track.port})
    H.run_until(loop, function() return c.done end)
    H.eq(c.done_name, "ECONNREFUSED")
    H.eq(loop:add_signal_handler(aioloop.SIGUSR2, function() end), true)
    loop:close()
    aioloop.fd_close(track.fds[1])
    aioloop.fd_close(track.fds[2])
end)

test("transport, server and handle boxes outlive their collected loop safely", function()
    local track, keep = new_track(), {}
    busy_loop(track, keep)
    full_gc()
    H.eq(track.called_back, nil)
    local t = keep.t
    H.eq(t:is_closing(), true)
    H.eq(select(3, t:write("late")), "AIOL_ECLOSED")
    H.eq(t:peername(), "127.0.0.1")
    H.eq(keep.server:is_serving(), false)
    H.eq(keep.server:close(), true)
    H.eq(keep.handle:cancel(), false)
    H.eq(keep.handle:cancelled(), true)
    aioloop.fd_close(track.fds[1])
    aioloop.fd_close(track.fds[2])
    keep = nil
    full_gc()
end)

test("a dropped server keeps serving until it is closed", function()
    local loop, errors = H.loop()
    local port
    do
        local server = H.echo_server(loop)
        port = select(2, server:sockname())
    end
    full_gc()
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:write("still here") end,
    })
    H.run_until(loop, function() return c.text() == "still here" end)
    c.t:close()
    H.run_until(loop, function() return c.lost end)
    loop:close()
    H.eq(#errors, 0)
end)

test("loop:close() calls connection_lost(ECANCELED) and wait_closed", function()
    local loop = H.loop()
    local lost = {}
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        return {connection_lost = function(_, t, err)
            lost.server = err
            lost.nested_close = select(3, loop:close()) -- re-entrant close is refused
            -- accepted, then dropped by the rest of the teardown
            lost.handle = loop:call_soon(function() lost.ran = true end)
        end}
    end})
    local _, port = server:sockname()
    local waited = false
    server:wait_closed(function() waited = true end)
    local c = H.client(loop, {host = "127.0.0.1", port = port})
    H.run_until(loop, function() return c.done end)
    H.eq(loop:close(), true)
    H.match(lost.server, "^ECANCELED")
    H.eq(lost.nested_close, "AIOL_ESTATE")
    H.eq(lost.handle:cancelled(), true, "scheduled during close, cancelled by it")
    H.eq(lost.ran, nil)
    H.match(c.err, "^ECANCELED")
    H.eq(waited, true)
end)

test("an abandoned loop with buffered (and TLS) connections releases buffers and contexts", function()
    local track = new_track()
    local certs = aioloop.has_feature("tls") and H.certs()
    do
        local loop = aioloop.new_loop()
        loop:set_exception_handler(function(ctx) track.reported = ctx end)
        local function buffered(echo)
            local buf = aioloop.buffer(16)
            track.objects[#track.objects + 1] = buf
            local p = {
                get_buffer = function() return buf end,
                buffer_updated = function(self, t, n)
                    if echo then t:write(buf:tostring(1, n)) else self.echoed = true end
                end,
                connection_lost = function() track.called_back = true end,
            }
            track.objects[#track.objects + 1] = p
            return p
        end
        local sctx, cctx
        if certs then
            sctx = assert(aioloop.tls_server(certs.cert, certs.key))
            cctx = assert(aioloop.tls_client{ca = certs.ca})
            track.objects[#track.objects + 1] = sctx
            track.objects[#track.objects + 1] = cctx
        end
        local server = assert(loop:create_server{host = "127.0.0.1", port = 0, tls = sctx,
            protocol = function() return buffered(true) end})
        local _, port = server:sockname()
        local clients = {}
        for i = 1, 3 do
            clients[i] = buffered(false)
            clients[i].connection_made = function(_, t) t:write("abc") end
            loop:connect{host = "127.0.0.1", port = port, protocol = clients[i], tls = cctx,
                         server_hostname = cctx and "localhost" or nil}
        end
        H.run_until(loop, function()
            for i = 1, 3 do if not clients[i].echoed then return false end end
            return true
        end)
    end
    full_gc()
    H.eq(track.called_back, nil, "no Lua callback ran during the teardown")
    H.eq(track.reported, nil)
    H.eq(next(track.objects), nil, "buffers, protocols and TLS contexts were released")
end)

test("many abandoned loops", function()
    for i = 1, 50 do
        local loop = aioloop.new_loop()
        local server = H.echo_server(loop)
        local _, port = server:sockname()
        loop:connect{host = "127.0.0.1", port = port, protocol = {}}
        loop:call_later(10, function() end)
        loop:run("nowait")
        if i % 10 == 0 then full_gc() end
    end
    full_gc()
end)

test("a live loop left at exit is torn down when the state closes", function()
    -- The runner ends with os.exit(status, true): lua_close runs the finalizers with this
    -- loop, its server and connections still alive (valgrind checks nothing leaks).
    local loop = aioloop.new_loop()
    local server = H.echo_server(loop)
    local _, port = server:sockname()
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:write("ping") end,
    })
    H.run_until(loop, function() return c.text() == "ping" end)
    loop:call_later(100, function() end)
    _G.AIOLOOP_LIVE_AT_EXIT = {loop = loop, server = server, client = c}
end)

return tests
