-- The Lua binding's test runner.
--
--   lua5.4 tests/run.lua [test_file.lua ...] [-f PATTERN]
--   luajit tests/run.lua
--
-- Runs every test of the named files (default: every file in FILES below), prints one
-- line per test ("ok", "FAIL" or "skip") and ends with exactly "N passed, N failed".
-- Exit status is nonzero if any test failed. The module comes from LUA_CPATH (test.sh and
-- `meson test` point it at the build directory).
local here = (arg and arg[0] or ""):match("^(.*)[/\\][^/\\]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local FILES = {
    "test_loop.lua",
    "test_errors.lua",
    "test_tcp.lua",
    "test_flow.lua",
    "test_buffered.lua",
    "test_tls.lua",
    "test_gc.lua",
}

local files, pattern = {}, nil
local i = 1
while arg and arg[i] do
    if arg[i] == "-f" then
        pattern = arg[i + 1]
        i = i + 2
    else
        files[#files + 1] = arg[i]
        i = i + 1
    end
end
if #files == 0 then
    for _, f in ipairs(FILES) do files[#files + 1] = here .. "/" .. f end
end

local passed, failed, skipped = 0, 0, 0
local version = jit and jit.version or _VERSION
print("# " .. version .. ", aioloop " .. require("aioloop").VERSION)

for _, file in ipairs(files) do
    local name = file:match("([^/\\]+)%.lua$") or file
    local chunk, err = loadfile(file)
    local tests
    if chunk then
        local ok, res = xpcall(chunk, debug.traceback)
        if ok then tests = res else err = res end
    end
    if not tests then
        failed = failed + 1
        print(("FAIL %s: cannot load: %s"):format(name, tostring(err)))
    else
        for _, t in ipairs(tests) do
            local tname, fn = t[1], t[2]
            if not pattern or tname:find(pattern) then
                local ok, res = xpcall(fn, debug.traceback)
                collectgarbage("collect")
                collectgarbage("collect")
                if ok and res == "skip" then
                    skipped = skipped + 1
                    print(("skip %s: %s"):format(name, tname))
                elseif ok then
                    passed = passed + 1
                    print(("ok   %s: %s"):format(name, tname))
                else
                    failed = failed + 1
                    print(("FAIL %s: %s\n    %s"):format(name, tname,
                        tostring(res):gsub("\n", "\n    ")))
                end
            end
        end
    end
    io.stdout:flush()
end

print(("%d passed, %d failed"):format(passed, failed))
io.stdout:flush()
-- close the state: whatever a test left alive is torn down by the finalizers (test_gc
-- relies on it; valgrind checks it)
os.exit(failed == 0 and 0 or 1, true)
