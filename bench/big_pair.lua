-- big_pair.lua — wrk script: sends one request body read from a file, over and over, to
-- one path. Env: BODY (file with the JSON body), PATH_ (e.g. /forward). bench/http.sh
-- uses it for the forward and the backward of the c_resnet_mid layer (base64 tensors).
local f = assert(io.open(os.getenv("BODY") or error("set BODY"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = os.getenv("PATH_") or error("set PATH_")
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local bad = 0
response = function(status, hdrs, resp)
    if status ~= 200 then
        bad = bad + 1
        if bad <= 3 then
            io.stderr:write("big_pair: HTTP " .. status .. " " .. resp:sub(1, 300) .. "\n")
        end
    end
end
