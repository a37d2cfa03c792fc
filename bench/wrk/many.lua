-- wrk script for the many-sessions scenario: every request carries the
-- cookie of a session drawn from a file of cookie values (one per line).
--   BENCH_COOKIE_FILE  the file (written by bench/lib/seed-sessions.ts)
--   BENCH_COOKIE_NAME  cookie name (sid; connect.sid for the seed stack; ...)
--   BENCH_ACCESS       uniform (default) or zipf: Zipf with s = 1 over the
--                      line number, the first lines hottest
--   BENCH_PATH         request path (default /protected)
-- No response() callback: it would run Lua per response and slow wrk down.
local file = os.getenv("BENCH_COOKIE_FILE")
local name = os.getenv("BENCH_COOKIE_NAME") or "sid"
local access = os.getenv("BENCH_ACCESS") or "uniform"
local path = os.getenv("BENCH_PATH") or "/protected"

local cookies = {}
for line in io.lines(file) do
  if line ~= "" then cookies[#cookies + 1] = name .. "=" .. line end
end
local n = #cookies
-- A request string per cookie, made once in init (wrk.format needs the Host
-- header, which wrk sets only after the script has loaded): request() then
-- only picks one.
local requests = {}
init = function(args)
  for i = 1, n do
    requests[i] = wrk.format("GET", path, { Cookie = cookies[i] })
  end
  cookies = nil
end

local cdf = nil
if access == "zipf" then
  cdf = {}
  local sum = 0
  for k = 1, n do
    sum = sum + 1 / k
    cdf[k] = sum
  end
  for k = 1, n do cdf[k] = cdf[k] / sum end
end

math.randomseed(os.time())

local function pick()
  if cdf == nil then return math.random(n) end
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

request = function()
  return requests[pick()]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
