-- proxy_set_shared_data in Redis: proxy-wasm-cpp-host's SharedData::set, on
-- one namespace's hash. Get is HMGET of the two fields and needs no script.
-- KEYS[1]  the namespace's hash: fields "v:"..key (the value), "c:"..key (its
--          cas, decimal) and "#" (the counter new cas values come from)
-- ARGV[1]  the key (any bytes)
-- ARGV[2]  the value (any bytes, maybe none)
-- ARGV[3]  the caller's cas, decimal; 0 sets unconditionally
-- Returns the key's new cas (1 to 2^32-1), or 0 when the key exists with
-- another cas, in which case nothing changed.
local cf = 'c:' .. ARGV[1]
local want = tonumber(ARGV[3])
if want ~= 0 then
  local cur = redis.call('HGET', KEYS[1], cf)
  if cur and tonumber(cur) ~= want then
    return 0
  end
end
local n = redis.call('HINCRBY', KEYS[1], '#', 1)
if n == 1 then
  -- A new hash, or one lost (a restart without persistence, a flush, an eviction):
  -- start from the clock rather than from 1, so that a cas a replica read before the
  -- loss is not handed out again at once.
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  n = (tonumber(t[1]) * 1000000 + tonumber(t[2])) % 4294967295 + 1
  redis.call('HSET', KEYS[1], '#', string.format('%d', n))
end
-- 0 means "no cas" in the ABI, so the 2^32-1 values after 0 go round.
local cas = (n - 1) % 4294967295 + 1
if n > 4294967295 then
  -- Keep the counter below 2^32, far from 2^53, past which Lua's doubles
  -- (and so the modulo above) would no longer be exact.
  redis.call('HSET', KEYS[1], '#', string.format('%d', cas))
end
redis.call('HSET', KEYS[1], 'v:' .. ARGV[1], ARGV[2], cf, string.format('%d', cas))
return cas
