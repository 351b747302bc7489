-- Incr with a fixed window: the key expires ARGV[2] ms after its creation.
-- KEYS[1]  the counter
-- ARGV[1]  delta
-- ARGV[2]  window, ms (> 0)
redis.call('SET', KEYS[1], 0, 'NX', 'PX', ARGV[2])
return redis.call('INCRBY', KEYS[1], ARGV[1])
