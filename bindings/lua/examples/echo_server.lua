-- echo_server.lua: a flow-controlled TCP (or Unix socket) echo server on libaioloop.
--
--   lua5.4 echo_server.lua [--host H] [--port P] [--unix PATH]
--
-- The Lua twin of examples/echo_server.c. Prints "listening on HOST:PORT" per listening
-- socket (the real port when P is 0). Echo with back-pressure: when the transport asks us
-- to pause writing, we pause reading, and resume when it drains (asyncio's flow-control
-- pattern). On EOF we close, which flushes what we still owe the peer. SIGINT/SIGTERM close
-- the server and its clients and exit 0 once wait_closed fires (clients still there after
-- 5 s are aborted).
local aioloop = require "aioloop"

local function usage()
    io.stderr:write(("usage: %s [--host H] [--port P] [--unix PATH]\n"):format(arg[0]))
    os.exit(2)
end

local host, port, unix_path
local i = 1
while i <= #arg do
    local a = arg[i]
    if a == "--host" and arg[i + 1] then host = arg[i + 1]; i = i + 1
    elseif a == "--port" and arg[i + 1] then port = tonumber(arg[i + 1]) or usage(); i = i + 1
    elseif a == "--unix" and arg[i + 1] then unix_path = arg[i + 1]; i = i + 1
    elseif i == #arg and a:sub(1, 1) ~= "-" then port = tonumber(a) or usage()
    else usage() end
    i = i + 1
end

-- One protocol table serves every connection: the callbacks get the transport.
local Echo = {
    data_received = function(_, t, data) t:write(data) end,
    pause_writing = function(_, t) t:pause_reading() end,
    resume_writing = function(_, t) t:resume_reading() end,
}

local loop = aioloop.new_loop()
local server, err = loop:create_server{
    host = host,
    port = port or 0,
    unix_path = unix_path,
    protocol = function() return Echo end,
}
if not server then
    io.stderr:write("echo_server: " .. err .. "\n")
    os.exit(1)
end

for n = 1, server:socket_count() do
    local h, p = server:sockname(n)
    if not p then print("listening on " .. h)
    elseif h:find(":", 1, true) then print(("listening on [%s]:%d"):format(h, p))
    else print(("listening on %s:%d"):format(h, p)) end
end
io.stdout:flush()

local function on_signal()
    loop:remove_signal_handler(aioloop.SIGINT)
    loop:remove_signal_handler(aioloop.SIGTERM)
    server:close()
    server:close_clients()
    server:wait_closed(function() loop:stop() end)
    loop:call_later(5, function() server:abort_clients() end)
end
loop:add_signal_handler(aioloop.SIGINT, on_signal)
loop:add_signal_handler(aioloop.SIGTERM, on_signal)

local ok, run_err = loop:run()
loop:close()
if ok == nil then
    io.stderr:write("echo_server: " .. run_err .. "\n")
    os.exit(1)
end
os.exit(0)
