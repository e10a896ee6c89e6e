-- Timers, ordering, run modes, watchers, signals, exception reports, loop close.
local aioloop = require "aioloop"
local H = require "helpers"
local tests, test = H.suite()

test("call_soon runs in FIFO order, a nested call_soon in the next iteration", function()
    local loop = H.loop()
    local order = {}
    loop:call_soon(function()
        order[#order + 1] = "a"
        loop:call_soon(function() order[#order + 1] = "nested" end)
    end)
    loop:call_soon(function() order[#order + 1] = "b" end)
    H.eq(loop:run("once"), true, "alive after the first iteration")
    H.eq(table.concat(order, ","), "a,b")
    H.eq(loop:run(), false, "run returns false once nothing is alive")
    H.eq(table.concat(order, ","), "a,b,nested")
    loop:close()
end)

test("call_later orders by deadline, ties by scheduling order, never early", function()
    local loop = H.loop()
    local order, t0 = {}, loop:now()
    local fired_at
    loop:call_later(0.03, function() order[#order + 1] = "30ms"; fired_at = loop:now() end)
    loop:call_later(0.01, function() order[#order + 1] = "10ms-1" end)
    loop:call_later(0.01, function() order[#order + 1] = "10ms-2" end)
    loop:call_later(0, function() order[#order + 1] = "0" end)
    loop:call_soon(function() order[#order + 1] = "soon" end)
    H.eq(loop:run(), false)
    H.eq(table.concat(order, ","), "soon,0,10ms-1,10ms-2,30ms")
    H.ok(fired_at - t0 >= 0.03, "the 30 ms timer fired early: " .. (fired_at - t0))
    loop:close()
end)

test("call_at and handle:when use loop:now() seconds", function()
    local loop = H.loop()
    local ran = false
    local at = loop:now() + 0.01
    local h = loop:call_at(at, function() ran = true end)
    H.ok(math.abs(h:when() - at) < 1e-6, "when() matches the deadline")
    H.eq(loop:call_soon(function() end):when(), 0, "call_soon handle when")
    H.eq(loop:run(), false)
    H.ok(ran and loop:now() >= at, "call_at ran at its deadline")
    loop:close()
end)

test("handle:cancel prevents the run, once; cancel after the run returns false", function()
    local loop = H.loop()
    local ran = {}
    local h1 = loop:call_later(0.01, function() ran.h1 = true end)
    local h2 = loop:call_soon(function() ran.h2 = true end)
    H.eq(h1:cancel(), true)
    H.eq(h1:cancel(), false, "second cancel")
    H.eq(h1:cancelled(), true)
    H.eq(loop:run(), false, "a cancelled timer does not keep the loop alive")
    H.eq(ran.h1, nil)
    H.eq(ran.h2, true)
    H.eq(h2:cancel(), false, "cancel after it ran")
    H.eq(h2:cancelled(), false)
    loop:close()
end)

test("a dropped handle is not cancelled by the garbage collector", function()
    local loop = H.loop()
    local ran = false
    loop:call_later(0.01, function() ran = true end)
    collectgarbage("collect")
    collectgarbage("collect")
    H.eq(loop:run(), false)
    H.eq(ran, true)
    loop:close()
end)

test("a timer can cancel itself and others from its callback", function()
    local loop = H.loop()
    local ran = {}
    local other
    local self_h
    self_h = loop:call_later(0.005, function()
        ran.first = true
        H.eq(self_h:cancel(), false, "cancelling the running handle")
        H.eq(other:cancel(), true, "cancelling a pending one")
    end)
    other = loop:call_later(0.05, function() ran.other = true end)
    H.eq(loop:run(), false)
    H.eq(ran.first, true)
    H.eq(ran.other, nil)
    loop:close()
end)

test("run modes: nowait, once, and stop from a callback", function()
    local loop = H.loop()
    local count = 0
    loop:call_later(10, function() end) -- keeps the loop alive
    local tick
    tick = function()
        count = count + 1
        if count == 3 then loop:stop() else loop:call_soon(tick) end
    end
    loop:call_soon(tick)
    H.eq(loop:run("nowait"), true)
    H.eq(count, 1)
    H.eq(loop:run(), true, "alive when stopped")
    H.eq(count, 3)
    H.raises("invalid option", loop.run, loop, "sometimes")
    loop:close()
end)

test("now() is a monotonic float in seconds", function()
    local loop = H.loop()
    local a = loop:now()
    H.eq(type(a), "number")
    H.ok(a > 0)
    local b = loop:now()
    H.ok(b >= a)
    loop:close()
end)

test("add_reader / add_writer on a pipe, remove returns true then false", function()
    local loop = H.loop()
    local r, w = aioloop.pipe()
    H.ok(r and w, "pipe")
    local got = {}
    H.eq(loop:add_reader(r, function(fd)
        H.eq(fd, r, "reader gets its fd")
        got[#got + 1] = aioloop.fd_read(fd, 100)
        if table.concat(got) == "hello" then loop:remove_reader(r) end
    end), true)
    local writes = 0
    H.eq(loop:add_writer(w, function(fd)
        writes = writes + 1
        aioloop.fd_write(fd, "hello")
        H.eq(loop:remove_writer(w), true)
    end), true)
    H.eq(loop:run(), false, "nothing alive once both watchers are removed")
    H.eq(table.concat(got), "hello")
    H.eq(writes, 1)
    H.eq(loop:remove_reader(r), false, "removing twice")
    H.eq(loop:remove_writer(w), false)
    aioloop.fd_close(r)
    aioloop.fd_close(w)
    loop:close()
end)

test("add_reader replaces the previous reader", function()
    local loop = H.loop()
    local r, w = aioloop.pipe()
    local which
    loop:add_reader(r, function() which = "first" end)
    loop:add_reader(r, function() which = "second"; aioloop.fd_read(r, 10); loop:remove_reader(r) end)
    aioloop.fd_write(w, "x")
    H.eq(loop:run(), false)
    H.eq(which, "second")
    aioloop.fd_close(r)
    aioloop.fd_close(w)
    loop:close()
end)

test("signal handler runs on the loop (SIGUSR1)", function()
    local pid = H.pid()
    if not pid then return "skip" end
    local loop = H.loop()
    local got
    H.eq(loop:add_signal_handler(aioloop.SIGUSR1, function(signum) got = signum end), true)
    loop:call_soon(function() os.execute("kill -USR1 " .. pid) end)
    H.run_until(loop, function() return got end, 5, "SIGUSR1")
    H.eq(got, aioloop.SIGUSR1)
    H.eq(loop:remove_signal_handler(aioloop.SIGUSR1), true)
    H.eq(loop:remove_signal_handler(aioloop.SIGUSR1), false)
    loop:close()
end)

test("an error in a callback is reported with a traceback and the loop goes on", function()
    local loop, errors = H.loop()
    local after = false
    loop:call_soon(function() error("kaboom") end)
    loop:call_later(0.005, function() after = true end)
    H.eq(loop:run(), false)
    H.eq(after, true, "later callbacks still ran")
    H.eq(#errors, 1)
    H.match(errors[1].message, "call_soon callback")
    H.match(errors[1].detail, "kaboom")
    H.match(errors[1].detail, "traceback")
    -- non-string error objects
    loop:call_soon(function() error({}) end)
    loop:call_soon(function() error(setmetatable({}, {__tostring = function() return "custom" end})) end)
    H.eq(loop:run(), false)
    H.eq(#errors, 3)
    H.match(errors[2].detail, "error object is a table value")
    H.match(errors[3].detail, "custom")
    loop:close()
end)

test("an error inside the exception handler is contained", function()
    local loop = aioloop.new_loop()
    loop:set_exception_handler(function() error("handler broke") end)
    local after = false
    loop:call_soon(function() error("first") end)
    loop:call_soon(function() after = true end)
    H.eq(loop:run(), false)
    H.eq(after, true)
    H.eq(loop:set_exception_handler(nil), true, "restoring the default handler")
    loop:close()
end)

test("run and close from inside a callback fail with AIOL_ESTATE", function()
    local loop = H.loop()
    local r1, r2
    loop:call_soon(function()
        r1 = {loop:run()}
        r2 = {loop:close()}
    end)
    H.eq(loop:run(), false)
    H.eq(r1[1], nil)
    H.eq(r1[3], "AIOL_ESTATE")
    H.match(r1[2], "^AIOL_ESTATE: ")
    H.eq(r2[3], "AIOL_ESTATE")
    H.eq(loop:is_closed(), false)
    loop:close()
end)

test("close runs pending callbacks' cleanup; a closed loop raises on use", function()
    local loop = H.loop()
    local ran = false
    loop:call_later(10, function() ran = true end)
    H.eq(loop:close(), true)
    H.eq(loop:close(), true, "close is idempotent")
    H.eq(loop:is_closed(), true)
    H.eq(ran, false)
    H.raises("loop is closed", loop.run, loop)
    H.raises("loop is closed", loop.call_soon, loop, function() end)
    H.raises("loop is closed", loop.now, loop)
    H.match(tostring(loop), "closed")
end)

test("callbacks run on the coroutine that calls run()", function()
    local loop = H.loop()
    local co_seen
    local co = coroutine.create(function()
        loop:call_soon(function() co_seen = coroutine.running() end)
        loop:call_soon(function() coroutine.yield() end) -- cannot yield across run()
        return loop:run()
    end)
    local ok, res = coroutine.resume(co)
    H.eq(ok, true)
    H.eq(res, false)
    H.eq(co_seen, co)
    loop:close()
end)

if _VERSION == "Lua 5.4" and not jit then
    test("a to-be-closed loop closes at scope exit (Lua 5.4)", function()
        local chunk = load([[
            local aioloop = ...
            local ran = false
            local outer
            do
                local loop <close> = aioloop.new_loop()
                outer = loop
                loop:call_later(10, function() ran = true end)
            end
            return outer:is_closed(), ran
        ]])
        local closed, ran = chunk(aioloop)
        H.eq(closed, true)
        H.eq(ran, false)
    end)
end

return tests
