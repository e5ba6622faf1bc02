-- Renew an instance's liveness record.
-- KEYS[1] gateway:alive:{i}   ARGV[1] TTL ms
-- Returns 1 when the record was there (renewed in time), 0 when it was missing.
local was = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return was
