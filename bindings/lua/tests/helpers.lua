-- Shared test helpers: a tiny assertion set, loops that record reported errors, and
-- bounded runs (a test never hangs: every wait has a deadline).
local aioloop = require "aioloop"
local H = {}

function H.suite()
    local list = {}
    return list, function(name, fn) list[#list + 1] = {name, fn} end
end

local function fmt(v)
    if type(v) == "string" then return ("%q"):format(v) end
    return tostring(v)
end

function H.eq(got, want, what)
    if got ~= want then
        error(("%s: expected %s, got %s"):format(what or "value", fmt(want), fmt(got)), 2)
    end
end

function H.ok(cond, what)
    if not cond then error(what or "assertion failed", 2) end
    return cond
end

function H.match(s, pat, what)
    if type(s) ~= "string" or not s:find(pat) then
        error(("%s: %s does not match %q"):format(what or "string", fmt(s), pat), 2)
    end
end

-- fn must raise an error matching pat
function H.raises(pat, fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then error("expected an error matching " .. fmt(pat), 2) end
    if pat and not tostring(err):find(pat) then
        error(("error %s does not match %q"):format(fmt(tostring(err)), pat), 2)
    end
    return err
end

-- A loop whose exception reports go to a list (the second result).
function H.loop()
    local loop = aioloop.new_loop()
    local errors = {}
    loop:set_exception_handler(function(ctx) errors[#errors + 1] = ctx end)
    return loop, errors
end

-- Runs iterations until cond() is true; fails after `timeout` seconds (default 5).
function H.run_until(loop, cond, timeout, what)
    timeout = timeout or 5
    local deadline = loop:now() + timeout
    local wake = loop:call_later(timeout, function() end)
    while not cond() do
        if loop:now() >= deadline then
            wake:cancel()
            error("timed out waiting for " .. (what or "a condition"), 2)
        end
        local ok, err = loop:run("once")
        assert(ok ~= nil, err)
    end
    wake:cancel()
end

-- An echo server on 127.0.0.1 (or opts.unix_path); returns server, host, port.
function H.echo_server(loop, opts)
    opts = opts or {}
    local server = assert(loop:create_server{
        host = not opts.unix_path and "127.0.0.1" or nil,
        port = 0,
        unix_path = opts.unix_path,
        protocol = function()
            return {
                data_received = function(_, t, data) t:write(data) end,
                pause_writing = function(_, t) t:pause_reading() end,
                resume_writing = function(_, t) t:resume_reading() end,
            }
        end,
    })
    local host, port = server:sockname(1)
    return server, host, port
end

-- A client that records everything: returns the record (rec.t, rec.data, rec.lost,
-- rec.err, rec.eof, rec.done_err); extra handlers run after the recording ones.
function H.client(loop, target, extra)
    local rec = {data = {}, lost = false}
    local proto = {
        connection_made = function(_, t) rec.t = t end,
        data_received = function(_, t, d) rec.data[#rec.data + 1] = d end,
        eof_received = function() rec.eof = true end,
        connection_lost = function(_, t, err) rec.lost = true; rec.err = err end,
    }
    for k, v in pairs(extra or {}) do
        local rec_fn = proto[k]
        if rec_fn then
            proto[k] = function(...) rec_fn(...) return v(...) end
        else
            proto[k] = v
        end
    end
    local opts = {protocol = proto, done = function(t, err, name)
        rec.done = true
        rec.done_t = t
        rec.done_err = err
        rec.done_name = name
    end}
    for k, v in pairs(target) do opts[k] = v end
    rec.req = assert(loop:connect(opts))
    function rec.text() return table.concat(rec.data) end
    return rec
end

function H.tmp_socket_path(tag)
    local p = os.tmpname()
    os.remove(p)
    return p .. "." .. (tag or "sock")
end

function H.pid()
    local f = io.open("/proc/self/stat")
    if not f then return nil end
    local pid = f:read("*n")
    f:close()
    return pid
end

local function sh(cmd)
    local r = os.execute(cmd .. " >/dev/null 2>&1")
    return r == true or r == 0 -- Lua 5.4 / Lua 5.1
end

local function slurp_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- Throwaway TLS certificates made with the openssl command, once per process, in a
-- temporary directory removed when the state closes: ca.pem signs server.pem (SAN
-- localhost and 127.0.0.1; key server.key); other-ca.pem is an unrelated CA; der is
-- server.pem in DER. Returns false if they could not be made.
local certs
function H.certs()
    if certs ~= nil then return certs end
    certs = false
    local p = io.popen("mktemp -d /tmp/aiol-lua-tls-XXXXXX")
    local dir = p:read("*l")
    p:close()
    if not dir or dir == "" then return false end
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
    local f = assert(io.open(dir .. "/ext.cnf", "w"))
    f:write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
            "extendedKeyUsage=serverAuth\n")
    f:close()
    local ok = sh(("cd %s && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 " ..
                   "-subj /CN=aioloop-lua-test-ca"):format(dir, ec))
        and sh(("cd %s && openssl req -x509 %s -keyout other-ca.key -out other-ca.pem " ..
                "-days 2 -subj /CN=aioloop-lua-other-ca"):format(dir, ec))
        and sh(("cd %s && openssl req %s -keyout server.key -out server.csr -subj /CN=localhost")
                :format(dir, ec))
        and sh(("cd %s && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key " ..
                "-CAcreateserial -out server.pem -days 2 -extfile ext.cnf"):format(dir))
        and sh(("cd %s && openssl x509 -in server.pem -outform DER -out server.der"):format(dir))
    local function remove() os.execute("rm -rf '" .. dir .. "'") end
    if not ok then
        remove()
        return false
    end
    -- removed when this module is collected, at lua_close at the latest
    if newproxy then -- LuaJIT: tables have no __gc
        H._certs_anchor = newproxy(true)
        getmetatable(H._certs_anchor).__gc = remove
    else
        H._certs_anchor = setmetatable({}, {__gc = remove})
    end
    certs = {dir = dir, ca = dir .. "/ca.pem", other_ca = dir .. "/other-ca.pem",
             cert = dir .. "/server.pem", key = dir .. "/server.key",
             der = slurp_file(dir .. "/server.der")}
    return certs
end

return H
