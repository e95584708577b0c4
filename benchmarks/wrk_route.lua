-- wrk script for benchmarks/serve.py: POST /v1/route with the request bodies of the file named by
-- PAIDAN_WRK_BODIES (one JSON document per line), in turn, for as long as wrk's -d says. The run
-- ends with one JSON line of figures, which serve.py reads.
local bodies = {}
for line in io.lines(os.getenv("PAIDAN_WRK_BODIES")) do
  bodies[#bodies + 1] = line
end
local next_body = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, "/v1/route", nil, bodies[next_body])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.6f, "errors": {"non_2xx_3xx": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d}, "p50_ms": %.3f, "p90_ms": %.3f, ' ..
    '"p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
