-- Flow control: small write-buffer limits and a slow reader make the server's transport
-- ask for pause_writing; the echo pauses reading until resume_writing. Every byte arrives.
local aioloop = require "aioloop"
local H = require "helpers"
local tests, test = H.suite()

local function payload(kib)
    local parts = {}
    for i = 1, kib do parts[i] = ("%07d|"):format(i):rep(128) end
    return table.concat(parts)
end

test("pause_writing / resume_writing with small limits and a slow reader", function()
    local loop, errors = H.loop()
    local events = {}
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        return {
            connection_made = function(_, t)
                assert(t:set_write_buffer_limits(16384, 4096))
                local high, low = t:get_write_buffer_limits()
                H.eq(high, 16384)
                H.eq(low, 4096)
            end,
            data_received = function(_, t, d) assert(t:write(d)) end,
            pause_writing = function(_, t)
                events[#events + 1] = "pause"
                H.ok(t:get_write_buffer_size() > 16384, "paused above the high mark")
                t:pause_reading()
                H.eq(t:is_reading(), false)
            end,
            resume_writing = function(_, t)
                events[#events + 1] = "resume"
                H.ok(t:get_write_buffer_size() <= 4096, "resumed at or below the low mark")
                t:resume_reading()
            end,
        }
    end})
    local _, port = server:sockname()
    local t0 = loop:now()
    -- more than the kernel buffers hold (the server's send buffer autotunes up to
    -- tcp_wmem's 4 MiB; the paused client's receive window stays small)
    local data = payload(8 * 1024)
    local client_pauses = 0
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t)
            t:pause_reading() -- the slow reader: nothing read until the server pauses
            assert(t:write(data))
            local function check()
                if #events > 0 or loop:now() > t0 + 5 then t:resume_reading()
                else loop:call_later(0.01, check) end
            end
            check()
        end,
        pause_writing = function() client_pauses = client_pauses + 1 end,
    })
    local total = 0
    H.run_until(loop, function()
        total = 0
        for _, d in ipairs(c.data) do total = total + #d end
        return total >= #data
    end, 20, "the whole payload echoed")
    H.eq(total, #data)
    H.ok(c.text() == data, "echoed bytes are identical")
    H.ok(#events >= 2, "the server paused and resumed: " .. table.concat(events, ","))
    for i, e in ipairs(events) do
        H.eq(e, i % 2 == 1 and "pause" or "resume", "strict alternation, event " .. i)
    end
    H.ok(client_pauses >= 1, "the client's 8 MiB write crossed its default high mark")
    c.t:close()
    H.run_until(loop, function() return c.lost end)
    server:close()
    H.eq(#errors, 0)
    loop:close()
end)

test("a reader that pauses after every chunk still gets everything", function()
    local loop, errors = H.loop()
    local server, host, port = H.echo_server(loop)
    local data = payload(256)
    local got, n = {}, 0
    local c
    c = H.client(loop, {host = host, port = port}, {
        connection_made = function(_, t) t:set_write_buffer_limits(4096) t:write(data) end,
        data_received = function(_, t, d)
            n = n + 1
            H.eq(t:pause_reading(), true)
            loop:call_later(0.001, function() t:resume_reading() end)
        end,
    })
    H.run_until(loop, function() return #c.text() >= #data end, 20, "the payload")
    H.ok(c.text() == data)
    H.ok(n > 1, "several chunks")
    c.t:close()
    server:close()
    H.run_until(loop, function() return c.lost end)
    H.eq(#errors, 0)
    loop:close()
end)

test("an error in pause_writing aborts the connection", function()
    local loop, errors = H.loop()
    local lost
    local server = assert(loop:create_server{host = "127.0.0.1", port = 0, protocol = function()
        return {
            connection_made = function(_, t) t:set_write_buffer_limits(1024, 0) end,
            data_received = function(_, t, d) t:write(d) end,
            pause_writing = function() error("cannot pause") end,
            connection_lost = function(_, t, err) lost = err end,
        }
    end})
    local _, port = server:sockname()
    local c = H.client(loop, {host = "127.0.0.1", port = port}, {
        connection_made = function(_, t) t:pause_reading() t:write(payload(8 * 1024)) end,
    })
    H.run_until(loop, function() return lost end, 10, "the server side to be aborted")
    H.match(lost, "^ECANCELED")
    H.match(errors[1].message, "pause_writing")
    c.t:resume_reading()
    H.run_until(loop, function() return c.lost end, 10, "the client to see the abort")
    server:close()
    loop:close()
end)

return tests
