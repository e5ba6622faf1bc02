-- Record session activity: rewrite last_activity, keeping the TTL.
-- KEYS[1] session:{s}
-- ARGV: now RFC 3339
-- Returns 1 when the session exists, else 0.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local updated = string.gsub(raw, '"last_activity":"[^"]*"', '"last_activity":"' .. ARGV[1] .. '"', 1)
redis.call('SET', KEYS[1], updated, 'KEEPTTL')
return 1
