-- notebook_pair.lua — wrk script: alternates the notebook's forward and backward
-- (spec/api.md §7) on one session created beforehand. The session id comes from the
-- environment variable SID (bench/http.sh creates it with curl).
local sid = os.getenv("SID") or error("set SID to a session id")
local headers = { ["Content-Type"] = "application/json" }
local fwd = '{"session":"' .. sid .. '","x":[[[[1,2,3,4],[5,6,7,8],[9,10,11,12],[13,14,15,16]]]]}'
local bwd = '{"session":"' .. sid .. '","delta":[[[-4,-4],[10,11]],[[1,-7],[1,-11]]]}'
local n = 0

request = function()
    n = n + 1
    if n % 2 == 1 then
        return wrk.format("POST", "/forward", headers, fwd)
    end
    return wrk.format("POST", "/backward", headers, bwd)
end

local bad = 0
response = function(status, hdrs, body)
    if status ~= 200 then
        bad = bad + 1
        if bad <= 3 then
            io.stderr:write("notebook_pair: HTTP " .. status .. " " .. body .. "\n")
        end
    end
end
