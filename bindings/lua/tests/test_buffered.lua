-- BufferedProtocol (asyncio's get_buffer / buffer_updated) and aioloop.buffer: tiny and
-- large buffers, reading into a range of one big buffer, EOF and half-close, pausing
-- inside get_buffer, and the error paths (empty buffer, wrong return, errors).
local aioloop = require "aioloop"
local H = require "helpers"
local tests, test = H.suite()

local function pattern(n)
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char((i * 7 + 3) % 256) end
    return table.concat(t):rep(math.floor(n / 256) + 1):sub(1, n)
end

-- A server whose connections are BufferedProtocols reading into `size`-byte buffers and
-- echoing what they get; rec collects what the server saw.
local function buffered_echo_server(loop, size, rec)
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        local buf = aioloop.buffer(size)
        return {
            get_buffer = function(_, t, hint)
                rec.hints[#rec.hints + 1] = hint
                return buf
            end,
            buffer_updated = function(_, t, n)
                rec.updates = rec.updates + 1
                rec.max = math.max(rec.max, n)
                rec.total = rec.total + n
                t:write(buf:tostring(1, n))
            end,
            eof_received = function() rec.eof = true end,
            connection_lost = function(_, t, err) rec.lost, rec.err = true, err end,
            pause_writing = function(_, t) t:pause_reading() end,
            resume_writing = function(_, t) t:resume_reading() end,
        }
    end})
    local _, port = server:sockname()
    return server, port
end

local function echo_through(size, nbytes)
    local loop, errors = H.loop()
    local rec = {hints = {}, updates = 0, max = 0, total = 0}
    local server, port = buffered_echo_server(loop, size, rec)
    local want = pattern(nbytes)
    local got, n = {}, 0
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:write(want) t:write_eof() end,
        data_received = function(_, t, d) got[#got + 1] = d n = n + #d end,
    })
    H.run_until(loop, function() return c.lost end, 20, "the echo of " .. nbytes .. " bytes")
    H.eq(n, nbytes, "bytes echoed")
    H.eq(table.concat(got) == want, true, "the echo is the same bytes")
    H.eq(rec.total, nbytes, "bytes through buffer_updated")
    H.ok(rec.max <= size, "no update larger than the buffer")
    H.ok(rec.updates >= nbytes / size, "at least one update per buffer-full")
    H.eq(rec.hints[1], -1, "size hint: -1, any size (as asyncio)")
    H.eq(rec.eof, true, "eof_received")
    H.eq(c.err, nil, "client closed cleanly")
    H.run_until(loop, function() return rec.lost end)
    H.eq(rec.err, nil, "server side closed cleanly")
    server:close()
    H.eq(#errors, 0, "no reports")
    loop:close()
    return rec
end

test("a 1-byte buffer echoes 2000 bytes, one byte per buffer_updated", function()
    local rec = echo_through(1, 2000)
    H.eq(rec.updates, 2000)
end)

test("a 16-byte buffer echoes 64 KiB", function()
    echo_through(16, 65536)
end)

test("a 64 KiB buffer echoes 8 MiB (large data, flow control on the echo)", function()
    echo_through(65536, 8 * 1024 * 1024)
end)

test("get_buffer returning buf, i: a client reads 4 MiB straight into one big buffer", function()
    local loop, errors = H.loop()
    local server, _, port = H.echo_server(loop)
    local size = 4 * 1024 * 1024
    local want = pattern(size)
    local big = aioloop.buffer(size + 1) -- one spare byte: the last get_buffer still has room
    local pos, calls, eof, lost, err = 1, 0, false, false, nil
    assert(loop:connect{host = "127.0.0.1", port = port, protocol = {
        connection_made = function(_, t) t:write(want) end,
        get_buffer = function(_, t) calls = calls + 1 return big, pos end,
        buffer_updated = function(_, t, n)
            pos = pos + n
            if pos > size then t:close() end
        end,
        eof_received = function() eof = true end,
        connection_lost = function(_, t, e) lost, err = true, e end,
    }})
    H.run_until(loop, function() return lost end, 20, "4 MiB back")
    H.eq(err, nil)
    H.eq(pos - 1, size, "bytes read")
    H.eq(big:tostring(1, size) == want, true, "the bytes landed in order in the big buffer")
    H.eq(big:byte(size + 1), 0, "the spare byte is untouched")
    H.ok(calls >= 2, "several reads")
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

test("get_buffer's range: buf, i, j reads into buf[i..j] only", function()
    local loop, errors = H.loop()
    local server, _, port = H.echo_server(loop)
    local buf = aioloop.buffer(10)
    local got = {}
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:write("abcdefghijkl") end,
        get_buffer = function() return buf, 4, 6 end, -- 3 bytes at offset 3
        buffer_updated = function(_, t, n)
            got[#got + 1] = buf:tostring(4, 3 + n)
            if #table.concat(got) >= 12 then t:close() end
        end,
    })
    H.run_until(loop, function() return c.lost end)
    H.eq(table.concat(got), "abcdefghijkl")
    H.eq(buf:tostring(1, 3), "\0\0\0", "bytes before the range untouched")
    H.eq(buf:tostring(7), "\0\0\0\0", "bytes after the range untouched")
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

test("EOF: a buffered protocol's eof_received keeps the transport open for writing", function()
    local loop, errors = H.loop()
    local srv = {}
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        local buf, got = aioloop.buffer(7), {}
        return {
            get_buffer = function() return buf end,
            buffer_updated = function(_, t, n) got[#got + 1] = buf:tostring(1, n) end,
            eof_received = function(_, t)
                srv.eof = true
                loop:call_later(0.05, function()
                    t:write("got " .. table.concat(got))
                    t:close()
                end)
                return true
            end,
            connection_lost = function(_, t, err) srv.lost, srv.err = true, err end,
        }
    end})
    local _, port = server:sockname()
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:write("hello buffered world") t:write_eof() end,
    })
    H.run_until(loop, function() return c.lost and srv.lost end)
    H.eq(srv.eof, true)
    H.eq(c.text(), "got hello buffered world", "written after the peer's EOF")
    H.eq(c.eof, true, "then EOF to the client")
    H.eq(srv.err, nil)
    H.eq(c.err, nil)
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

test("pause_reading inside get_buffer: nothing is read until resume_reading", function()
    local loop, errors = H.loop()
    local server, _, port = H.echo_server(loop)
    local buf, got, paused_reads = aioloop.buffer(4096), {}, 0
    local paused, did_pause = false, false
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:write("ping") end,
        get_buffer = function(_, t)
            if not did_pause then
                paused, did_pause = true, true
                t:pause_reading()
                loop:call_later(0.05, function() paused = false t:resume_reading() end)
            end
            return buf
        end,
        buffer_updated = function(_, t, n)
            if paused then paused_reads = paused_reads + 1 end
            got[#got + 1] = buf:tostring(1, n)
            t:close()
        end,
    })
    H.run_until(loop, function() return c.lost end)
    H.eq(table.concat(got), "ping")
    H.eq(did_pause, true)
    H.eq(paused_reads, 0, "no buffer_updated while paused")
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

-- A client whose get_buffer does `fn`; returns the record and the reports.
local function failing_client(get_buffer, extra)
    local loop, errors = H.loop()
    local server, _, port = H.echo_server(loop)
    local proto = {
        connection_made = function(_, t) t:write("x") end,
        get_buffer = get_buffer,
        buffer_updated = function() error("buffer_updated must not run") end,
    }
    for k, v in pairs(extra or {}) do proto[k] = v end
    local c = H.client(loop, {host = "127.0.0.1", port = port}, proto)
    H.run_until(loop, function() return c.lost end)
    H.run_until(loop, function() return #errors > 0 end)
    server:close()
    loop:close()
    return c, errors
end

test("a zero-size buffer aborts the connection with EINVAL and a report (asyncio's empty buffer)", function()
    local c, errors = failing_client(function() return aioloop.buffer(0) end)
    H.match(c.err, "^EINVAL: ", "connection_lost gets EINVAL")
    H.eq(#errors, 1)
    H.match(errors[1].message, "get_buffer%(%) returned an empty buffer")
    H.eq(errors[1].object, "transport")
end)

test("an empty range (buf, 5, 4) is an empty buffer too", function()
    local buf = aioloop.buffer(8)
    local c, errors = failing_client(function() return buf, 5, 4 end)
    H.match(c.err, "^EINVAL: ")
    H.match(errors[1].message, "empty buffer")
end)

test("get_buffer returning a string is an error: reported, connection aborted", function()
    local c, errors = failing_client(function() return "not a buffer" end)
    H.match(c.err, "^ECANCELED: ")
    H.eq(#errors, 1)
    H.match(errors[1].message, "error in Lua protocol callback get_buffer")
    H.match(errors[1].detail, "get_buffer must return an aioloop.buffer %(got string%)")
end)

test("an error raised in get_buffer is reported and aborts the connection", function()
    local c, errors = failing_client(function() error("no buffer today") end)
    H.match(c.err, "^ECANCELED: ")
    H.match(errors[1].detail, "no buffer today")
end)

test("an error raised in buffer_updated is reported and aborts the connection", function()
    local buf = aioloop.buffer(16)
    local c, errors = failing_client(function() return buf end,
        {buffer_updated = function() error("bad update") end})
    H.match(c.err, "^ECANCELED: ")
    H.match(errors[1].message, "protocol callback buffer_updated")
    H.match(errors[1].detail, "bad update")
end)

test("get_buffer without buffer_updated is refused at connection_made", function()
    local loop, errors = H.loop()
    local server, _, port = H.echo_server(loop)
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        get_buffer = function() return aioloop.buffer(4) end,
    })
    H.run_until(loop, function() return c.lost end)
    H.match(c.err, "^ECANCELED: ")
    H.run_until(loop, function() return #errors > 0 end)
    H.match(errors[1].detail, "get_buffer needs buffer_updated")
    server:close()
    loop:close()
end)

test("aioloop.buffer: length, tostring and byte with string.sub's indices", function()
    local b = aioloop.buffer(5)
    H.eq(#b, 5)
    H.eq(b:len(), 5)
    H.eq(b:tostring(), "\0\0\0\0\0", "zero-filled")
    H.eq(b:tostring(2, 3), "\0\0")
    H.eq(b:tostring(-2), "\0\0")
    H.eq(b:tostring(4, 2), "")
    H.eq(b:tostring(10), "")
    H.eq(b:byte(1), 0)
    H.eq(select("#", b:byte(1, -1)), 5)
    H.eq(select("#", b:byte(9)), 0)
    H.match(tostring(b), "^aioloop%.buffer %(5 bytes%): ")
    H.eq(#aioloop.buffer(0), 0)
    H.raises("size out of range", aioloop.buffer, -1)
    H.raises("size out of range", aioloop.buffer, 1.5)
    H.raises("aioloop.buffer expected", b.tostring, "string")
end)

return tests
