-- server.lua: the conformance scenario server on the Lua binding (Lua 5.4 and LuaJIT).
--
--   LUA_CPATH='BUILD/bindings/lua/5.4/?.so' lua5.4 server.lua BEHAVIOUR ADDR [key=value ...]
--
-- The Lua twin of server_asyncio.py (the oracle): same behaviour menu, same trace lines.
-- "buffered" uses a BufferedProtocol reading into a bufsize-byte aioloop.buffer;
-- tls_cert=PATH tls_key=PATH (and handshake_timeout_ms=N) serve TLS with that certificate
-- and key; a library without TLS answers "unsupported tls" and exit status 77.
local aioloop = require "aioloop"

local behaviour, addr = arg[1], arg[2]
local P = {}
for i = 3, #arg do
    local k, v = arg[i]:match("^([^=]+)=(.*)$")
    P[k] = tonumber(v) or v
end

local block
local function gen(n)
    if not block then
        local t = {}
        for i = 0, 131071 do t[#t + 1] = string.char((i * 131 + math.floor(i / 512)) % 256) end
        block = table.concat(t)
    end
    return string.rep(block, math.floor(n / 131072) + 1):sub(1, n)
end

local function out(line)
    io.stdout:write(line, "\n")
    io.stdout:flush()
end

local loop = aioloop.new_loop()
local server
local conns_left = P.conns or 1
local server_closing = false

local function close_server()
    if server_closing then return end
    server_closing = true
    server:close()
    server:wait_closed(function()
        out("wait_closed")
        loop:stop()
    end)
end

local echoing = {echo = true, flow_echo = true, buffered = true, pause_reading = true,
                 write_eof_after_eof = true, keep_open_write_later = true}

local Conn = {}
Conn.__index = Conn

function Conn:flush()
    if self.pending > 0 then
        out("data " .. self.pending)
        self.pending = 0
    end
end

function Conn:event(line)
    self:flush()
    out(line)
end

function Conn:connection_made(t)
    self.t = t
    self:event("made")
    if P.high then t:set_write_buffer_limits(P.high, P.low or math.floor(P.high / 4)) end
    if P.close_server and P.close_server ~= 0 then close_server() end
    if behaviour == "write_on_connect" then
        t:write(gen(P.size or 0))
        local th = P["then"] or "none"
        if th == "close" then t:close()
        elseif th == "write_eof" then t:write_eof()
        elseif th == "abort" then self.aborted = true; t:abort() end
    end
end

function Conn:data_received(t, data)
    if self.paused_reading then self:event("violation data_while_paused") end
    self.pending = self.pending + #data
    self.total = self.total + #data
    if echoing[behaviour] then
        t:write(data)
        if behaviour == "pause_reading" and not self.did_pause and self.total >= (P.after or 0) then
            self.did_pause, self.paused_reading = true, true
            t:pause_reading()
            loop:call_later((P.delay or 50) / 1000, function()
                self.paused_reading = false
                if not t:is_closing() then t:resume_reading() end
            end)
        end
    elseif behaviour == "close_on_data" then
        if (P.queue or 0) > 0 then t:write(gen(P.queue)) end
        t:close()
    elseif behaviour == "abort_on_data" then
        if (P.queue or 0) > 0 then t:write(gen(P.queue)) end
        self.aborted = true
        t:abort()
    end
end

function Conn:eof_received(t)
    if self.paused_reading then self:event("violation eof_while_paused") end
    local keep
    if behaviour == "write_eof_after_eof" or behaviour == "keep_open_write_later" then
        keep = true
    else
        keep = (P.keep_open or 0) ~= 0
    end
    self:event(keep and "eof keep" or "eof close")
    local delay = (P.delay or 50) / 1000
    if behaviour == "write_eof_after_eof" then
        t:write(gen(P.tail or 0))
        t:write_eof()
        loop:call_later(delay, function() t:close() end)
    elseif behaviour == "keep_open_write_later" then
        loop:call_later(delay, function()
            t:write(gen(P.tail or 0))
            t:close()
        end)
    elseif keep then
        loop:call_later(delay, function() t:close() end)
    end
    return keep
end

function Conn:pause_writing(t)
    self:event("pause")
    if behaviour == "flow_echo" then t:pause_reading() end
end

function Conn:resume_writing(t)
    self:event("resume")
    if behaviour == "flow_echo" and not t:is_closing() then t:resume_reading() end
end

function Conn:connection_lost(t, err)
    local cls
    if err == nil then cls = "clean"
    else
        local name = err:match("^([%w_]+):") or err
        if name == "ECONNRESET" or name == "EPIPE" then cls = "reset"
        elseif name == "ECANCELED" and self.aborted then cls = "aborted"
        else cls = "error:" .. name end
    end
    if self.aborted and cls == "clean" then cls = "aborted" end
    self:event("lost " .. cls)
    if conns_left <= 0 then close_server() end
end

-- asyncio.BufferedProtocol: one buffer per connection, what lands in it goes through
-- data_received's logic
local Buffered = setmetatable({}, {__index = Conn})
Buffered.__index = Buffered

function Buffered:get_buffer(t, sizehint)
    if not self.buf then self.buf = aioloop.buffer(P.bufsize or 16) end
    return self.buf
end

function Buffered:buffer_updated(t, n)
    self:data_received(t, self.buf:tostring(1, n))
end

local cfg = {protocol = function()
    conns_left = conns_left - 1
    return setmetatable({pending = 0, total = 0}, behaviour == "buffered" and Buffered or Conn)
end}
if P.tls_cert then
    if not aioloop.has_feature("tls") then  -- the runner's "not applicable" answer
        io.stdout:write("unsupported tls\n")
        io.stdout:flush()
        os.exit(77)
    end
    local ctx, terr = aioloop.tls_server(P.tls_cert, P.tls_key)
    if not ctx then
        io.stderr:write("server.lua: " .. tostring(terr) .. "\n")
        os.exit(1)
    end
    cfg.tls = ctx
    if P.handshake_timeout_ms then
        cfg.tls_handshake_timeout = tonumber(P.handshake_timeout_ms) / 1000
    end
end
if addr:sub(1, 5) == "unix:" then
    cfg.unix_path = addr:sub(6)
else
    cfg.host, cfg.port = "127.0.0.1", tonumber(addr)
end
local err
server, err = loop:create_server(cfg)
if not server then
    io.stderr:write("server.lua: " .. tostring(err) .. "\n")
    os.exit(1)
end
if cfg.unix_path then
    out("listening unix")
else
    local _, port = server:sockname()
    out("listening " .. port)
end
if behaviour == "close_now" or conns_left <= 0 then close_server() end
local wd = loop:call_later(30, function() out("watchdog") os.exit(3) end)
loop:run()
wd:cancel()
loop:close()
