-- wrk script for bench/hub-ui-load.sh. Arguments (after --): an optional file of host ids, one
-- a line, and a path template with %s where each request puts the next id; each thread starts
-- at its own random place in the list so that the threads do not ask for the same hosts in step.
-- Without arguments every request is wrk's own URL path. done() prints one line:
--   RESULT p50_ms p90_ms p95_ms p99_ms max_ms req_per_s requests non2xx socket_errors
-- wrk counts only statuses >= 400 as errors; 3xx (a redirect to the login page) matters here
-- too, so response() counts everything outside 2xx.
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  paths = {}
  if args[1] ~= nil and args[1] ~= "" then
    local tmpl = args[2]
    for line in io.lines(args[1]) do
      if line ~= "" then table.insert(paths, (string.gsub(tmpl, "%%s", line))) end
    end
  end
  if #paths == 0 then paths = { wrk.path } end
  math.randomseed(os.time() * 100 + tid)
  i = math.random(#paths)
end

function request()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format("RESULT %.2f %.2f %.2f %.2f %.2f %.1f %d %d %d\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests / (summary.duration / 1e6), summary.requests, n,
    e.connect + e.read + e.write + e.timeout))
end
