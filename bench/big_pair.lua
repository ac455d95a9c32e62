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
-- No `response` function on purpose: with one, wrk copies every 8.6 MB answer into a Lua
-- string, which costs the client ~7 ms a request and shows up as server latency. http.sh
-- checks wrk's "Non-2xx or 3xx responses" and "Socket errors" lines instead.
