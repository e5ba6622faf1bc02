-- Move a cached message's status forward (never back), keeping its TTL.
-- KEYS[1] message:{m} (a string holding JSON) or conversation:messages:bodies:{c} (a hash)
-- ARGV: hash field ('' for the string key), new status, new status rank
-- Returns 1 when the status changed, 0 when the message is not cached or already further on.
local RANKS = {sending = 0, sent = 1, delivered = 2, read = 3}
local field, status, rank = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw
if field == '' then
  raw = redis.call('GET', KEYS[1])
else
  raw = redis.call('HGET', KEYS[1], field)
end
if not raw then
  return 0
end
local current = string.match(raw, '"status":"(%a+)"')
if (RANKS[current] or 0) >= rank then
  return 0
end
local updated = string.gsub(raw, '"status":"%a+"', '"status":"' .. status .. '"', 1)
if field == '' then
  redis.call('SET', KEYS[1], updated, 'KEEPTTL')
else
  redis.call('HSET', KEYS[1], field, updated)
end
return 1
