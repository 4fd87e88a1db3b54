-- wrk script for scripts/load.sh: sends the requests of $LOAD_REQUESTS, in a loop.
--
-- The file holds one request per line: path, `name: value` headers, body, tab-separated. Each
-- wrk thread takes every n-th line. Once a thread has sent all of its lines it starts again:
-- the server's replay guard then answers each repeat `200` with an empty body without running
-- the handler, which is counted apart ("replays").

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_usec; } load_timeval;
  int gettimeofday(load_timeval *tv, void *tz);
]]
local tv = ffi.new("load_timeval")
local function now_us()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1e6 + tonumber(tv.tv_usec)
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[1]) or 1
  requests = {}
  local line_no = 0
  for line in io.lines(os.getenv("LOAD_REQUESTS")) do
    if line_no % nthreads == id then
      local fields = {}
      for field in string.gmatch(line, "[^\t]+") do
        fields[#fields + 1] = field
      end
      local headers = { ["Content-Type"] = "application/json" }
      for k = 2, #fields - 1 do
        local name, value = string.match(fields[k], "^([^:]+): (.*)$")
        headers[name] = value
      end
      requests[#requests + 1] = wrk.format("POST", fields[1], headers, fields[#fields])
    end
    line_no = line_no + 1
  end
  loaded = #requests
  sent = 0
  received = 0
  non2xx = 0
  replays = 0
end

-- wrk itself always reports the full duration; the span from the first request to the last
-- answer is measured here, so that a run that runs out of requests is not undercounted.
function request()
  if sent == 0 then
    first_us = now_us()
  end
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  received = received + 1
  last_us = now_us()
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif status == 200 and (body == nil or #body == 0) then
    replays = replays + 1
  end
end

function done(summary, latency, requests)
  local received, non2xx, loaded, replays = 0, 0, 0, 0
  local first, last = math.huge, 0
  for _, thread in ipairs(threads) do
    first = math.min(first, thread:get("first_us") or math.huge)
    last = math.max(last, thread:get("last_us") or 0)
    received = received + thread:get("received")
    non2xx = non2xx + thread:get("non2xx")
    loaded = loaded + thread:get("loaded")
    replays = replays + thread:get("replays")
  end
  local seconds = math.max(last - first, 1) / 1e6
  io.write(string.format("requests        %d answered in %.2f s (%d distinct signed requests loaded)\n",
    received, seconds, loaded))
  io.write(string.format("throughput      %.0f requests/s\n", received / seconds))
  io.write(string.format("latency         p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("non-2xx         %d\n", non2xx))
  io.write(string.format("replays         %d (repeats of the loaded requests, answered without the handler)\n", replays))
  io.write(string.format("socket errors   connect %d, read %d, write %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
end
