-- GCRA decision on one key, on the Redis server's clock. The Go function gcra
-- in counters.go is the same algorithm; keep the two together.
-- KEYS[1]  the key; its value is the TAT, microseconds since the Unix epoch
-- ARGV[1]  T, the emission interval, µs
-- ARGV[2]  L = Burst × T, µs
-- ARGV[3]  Burst
-- ARGV[4]  n, the cost
-- ARGV[5]  now, µs (only tests pass it, to check this script against gcra)
-- Returns {allowed (0 or 1), remaining, retry-after µs (-1: never), reset-after µs}.
local now
if ARGV[5] then
  now = tonumber(ARGV[5])
else
  -- Redis before 5 replicates a script's commands only when asked, and a
  -- script that reads TIME must not be replicated verbatim.
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local T = tonumber(ARGV[1])
local L = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end

local function remaining(s)
  local r = math.floor((L - (s - now)) / T)
  if r < 0 then r = 0 end
  return r
end

if n > burst then
  return {0, remaining(tat), -1, tat - now}
end
local nxt = tat + n * T
if nxt - now > L then
  return {0, remaining(tat), nxt - L - now, tat - now}
end
if n > 0 then
  -- Expire when the key is back to a full burst: an idle key costs nothing.
  redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', string.format('%d', math.ceil((nxt - now) / 1000)))
end
return {1, remaining(nxt), 0, nxt - now}
