-- Read the newest `limit` entries of a cached list, or report a miss.
-- KEYS[1] order zset (conversation:messages:{c} or conversations:user:{u})
-- KEYS[2] bodies hash with the '@loaded' and '@complete' markers
-- ARGV: limit, order ('asc': oldest first | 'desc': highest score first)
-- Returns the JSON bodies, or false (a miss) unless the list was loaded and either holds at
-- least `limit` entries or was loaded complete.
local limit = tonumber(ARGV[1])
local flags = redis.call('HMGET', KEYS[2], '@loaded', '@complete')
if flags[1] ~= '1' then
  return false
end
if redis.call('ZCARD', KEYS[1]) < limit and flags[2] ~= '1' then
  return false
end
local ids
if ARGV[2] == 'asc' then
  ids = redis.call('ZRANGE', KEYS[1], -limit, -1)
else
  ids = redis.call('ZRANGE', KEYS[1], 0, limit - 1, 'REV')
end
if #ids == 0 then
  return {}
end
return redis.call('HMGET', KEYS[2], unpack(ids))
