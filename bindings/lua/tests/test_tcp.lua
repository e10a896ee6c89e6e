-- Echo over TCP and Unix sockets, half-close, closing from callbacks, errors in protocol
-- callbacks, transports past connection_lost, server close / wait_closed.
local aioloop = require "aioloop"
local H = require "helpers"
local tests, test = H.suite()

local function echo_roundtrip(loop, target, server)
    local msgs = {"hello", ", ", "world", ("x"):rep(100000)}
    local want = table.concat(msgs)
    local c = H.client(loop, target, {
        connection_made = function(self, t)
            self.t = t
            for _, m in ipairs(msgs) do assert(t:write(m)) end
        end,
    })
    H.run_until(loop, function() return #c.text() >= #want end, 5, "the echo")
    H.eq(c.text(), want, "echoed bytes")
    H.eq(c.done_t ~= nil, true, "done got the transport")
    H.eq(c.done_err, nil)
    return c
end

test("echo over TCP on 127.0.0.1, port 0", function()
    local loop, errors = H.loop()
    local server, host, port = H.echo_server(loop)
    H.eq(host, "127.0.0.1")
    H.ok(port > 0, "ephemeral port read back")
    H.eq(server:socket_count(), 1)
    H.eq(server:is_serving(), true)
    local c = echo_roundtrip(loop, {host = host, port = port}, server)
    local t = c.done_t
    local phost, pport = t:peername()
    H.eq(phost, "127.0.0.1")
    H.eq(pport, port)
    local shost, sport = t:sockname()
    H.eq(shost, "127.0.0.1")
    H.ok(sport > 0 and sport ~= port)
    H.eq(t:is_reading(), true)
    H.eq(t:is_closing(), false)
    H.eq(t:get_write_buffer_size(), 0)
    H.eq(t:close(), true)
    H.eq(t:is_closing(), true)
    H.run_until(loop, function() return c.lost end)
    H.eq(c.err, nil, "clean close")
    server:close()
    H.eq(server:is_serving(), false)
    H.eq(loop:run(), false, "nothing alive after the server closed and clients left")
    H.eq(#errors, 0)
    loop:close()
end)

test("echo over a Unix socket, several writes in one writev", function()
    local loop, errors = H.loop()
    local path = H.tmp_socket_path()
    local server, spath = H.echo_server(loop, {unix_path = path})
    H.eq(spath, path, "sockname is the path")
    local c = H.client(loop, {unix_path = path}, {
        connection_made = function(self, t) assert(t:write("a", "bb", "ccc")) end,
    })
    H.run_until(loop, function() return #c.text() >= 6 end)
    H.eq(c.text(), "abbccc")
    H.eq(c.t:peername(), path)
    c.t:close()
    server:close()
    H.run_until(loop, function() return c.lost end)
    H.eq(io.open(path) == nil, true, "the socket file is unlinked on close")
    H.eq(#errors, 0)
    loop:close()
end)

test("half-close: eof_received keeps the transport open for writing", function()
    local loop, errors = H.loop()
    local server_side = {}
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        local got = {}
        return {
            data_received = function(_, t, d) got[#got + 1] = d end,
            eof_received = function(_, t)
                server_side.eof = true
                -- reply after the peer's EOF, then close
                t:write("got:" .. table.concat(got))
                t:close()
                return true
            end,
            connection_lost = function(_, t, err) server_side.lost = true; server_side.err = err end,
        }
    end})
    local _, port = server:sockname()
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(self, t)
            t:write("ping")
            H.eq(t:can_write_eof(), true)
            H.eq(t:write_eof(), true)
            local ok, msg, name = t:write("more")
            H.eq(name, "AIOL_ESTATE", "write after write_eof")
        end,
        eof_received = function() return false end,
    })
    H.run_until(loop, function() return c.lost and server_side.lost end)
    H.eq(server_side.eof, true)
    H.eq(c.text(), "got:ping")
    H.eq(c.err, nil)
    H.eq(server_side.err, nil)
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

test("close and abort from inside callbacks", function()
    local loop, errors = H.loop()
    local lost = {}
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        return {
            connection_made = function(_, t) t:write("bye") t:close() end,
            connection_lost = function(_, t, err) lost.server_made = err or "clean" end,
        }
    end})
    local _, port = server:sockname()
    local c1 = H.client(loop, {host = "127.0.0.1", port = port})
    H.run_until(loop, function() return c1.lost and lost.server_made end)
    H.eq(c1.text(), "bye", "close flushes what was written")
    H.eq(lost.server_made, "clean")
    server:close()

    -- abort from data_received: connection_lost gets ECANCELED
    local server2 = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        return {
            data_received = function(_, t, d)
                H.eq(t:abort(), true)
                H.eq(t:is_closing(), true)
                local _, _, name = t:write("x")
                lost.write_after_abort = name
            end,
            connection_lost = function(_, t, err) lost.server_abort = err end,
        }
    end})
    local _, port2 = server2:sockname()
    local c2 = H.client(loop, {host = "127.0.0.1", port = port2}, {
        connection_made = function(_, t) t:write("hi") end,
    })
    H.run_until(loop, function() return c2.lost and lost.server_abort end)
    H.match(lost.server_abort, "^ECANCELED: ")
    H.eq(lost.write_after_abort, "AIOL_ECLOSED")

    -- the client closes the server from its callback; wait_closed fires after
    local closed = false
    local c3 = H.client(loop, {host = "127.0.0.1", port = port2 + 0}, {})
    H.run_until(loop, function() return c3.done end)
    H.eq(server2:wait_closed(function() closed = true end), true)
    loop:call_soon(function()
        server2:close()
        server2:close_clients()
    end)
    H.run_until(loop, function() return closed and c3.lost end)
    H.eq(server2:is_serving(), false)
    H.eq(#errors, 0)
    loop:close()
end)

test("an error in data_received aborts that connection only", function()
    local loop, errors = H.loop()
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        return {
            data_received = function(_, t, d)
                if d:find("boom") then error("protocol exploded") end
                t:write(d)
            end,
        }
    end})
    local _, port = server:sockname()
    local bad = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:write("boom") end,
    })
    local good = H.client(loop, {host = "127.0.0.1", port = port})
    H.run_until(loop, function() return bad.lost and good.done end)
    H.eq(#errors, 1)
    H.match(errors[1].message, "protocol callback data_received")
    H.match(errors[1].detail, "protocol exploded")
    H.match(errors[1].detail, "stack traceback")
    H.eq(errors[1].object, "transport")
    H.eq(getmetatable(errors[1].transport), "locked", "the report carries the transport")
    -- the other connection (and new ones) keep working
    good.t:write("still alive")
    H.run_until(loop, function() return good.text() == "still alive" end)
    local again = echo_roundtrip(loop, {host = "127.0.0.1", port = port})
    H.eq(again.text():sub(1, 5), "hello")
    good.t:close()
    again.t:close()
    server:close()
    H.run_until(loop, function() return good.lost and again.lost end)
    loop:close()
end)

test("errors in the factory, connection_made and done are reported", function()
    local loop, errors = H.loop()
    local calls = 0
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        calls = calls + 1
        if calls == 1 then error("factory failed") end
        if calls == 2 then return nil end
        return {connection_made = function() error("made failed") end}
    end})
    local _, port = server:sockname()
    for i = 1, 3 do
        local c = H.client(loop, {host = "127.0.0.1", port = port})
        H.run_until(loop, function() return c.lost end)
    end
    H.eq(#errors, 3)
    H.match(errors[1].message, "protocol factory")
    H.match(errors[1].detail, "factory failed")
    H.match(errors[2].detail, "returned nil")
    H.match(errors[3].message, "connection_made")
    -- done raising aborts the new transport
    local made = false
    local lost
    loop:connect{host = "127.0.0.1", port = port, protocol = {
        connection_made = function() made = true end,
        connection_lost = function(_, t, err) lost = err end,
    }, done = function(t) error("done failed") end}
    H.run_until(loop, function() return lost end)
    H.eq(made, true)
    H.match(errors[#errors].message, "connect done callback")
    H.match(lost, "^ECANCELED")
    server:close()
    loop:close()
end)

test("a transport kept past connection_lost stays safe to use", function()
    local loop = H.loop()
    local server, host, port = H.echo_server(loop)
    local c = H.client(loop, {host = host, port = port})
    H.run_until(loop, function() return c.done end)
    local t = c.t
    t:close()
    H.run_until(loop, function() return c.lost end)
    collectgarbage("collect")
    H.eq(t:is_closing(), true)
    local _, msg, name = t:write("late")
    H.eq(name, "AIOL_ECLOSED")
    H.eq(msg, "AIOL_ECLOSED: object is closed")
    H.eq(select(3, t:pause_reading()), "AIOL_ECLOSED")
    local closed_again, _, cname = t:close()
    H.ok(closed_again or cname == "AIOL_ECLOSED", "close after connection_lost")
    H.eq(t:peername(), host, "addresses stay readable")
    server:close()
    loop:close()
    -- and after the loop is gone
    H.eq(t:is_closing(), true)
    H.eq(select(3, t:write("x")), "AIOL_ECLOSED")
    H.eq(t:peername(), host)
end)

test("server methods after the loop closed return AIOL_ECLOSED", function()
    local loop = H.loop()
    local server = H.echo_server(loop)
    loop:close()
    H.eq(server:is_serving(), false)
    H.eq(select(3, server:sockname()), "AIOL_ECLOSED")
    H.eq(select(3, server:wait_closed(function() end)), "AIOL_ECLOSED")
    H.eq(server:close(), true, "close is idempotent")
end)

test("many connections at once", function()
    local loop, errors = H.loop()
    local server, host, port = H.echo_server(loop)
    local clients = {}
    for i = 1, 50 do
        clients[i] = H.client(loop, {host = host, port = port}, {
            connection_made = function(_, t) t:write("client " .. i) end,
        })
    end
    H.run_until(loop, function()
        for i = 1, 50 do
            if clients[i].text() ~= "client " .. i then return false end
        end
        return true
    end)
    server:close()
    H.eq(server:close_clients(), true)
    H.run_until(loop, function()
        for i = 1, 50 do if not clients[i].lost then return false end end
        return true
    end)
    H.eq(#errors, 0)
    loop:close()
end)

return tests
