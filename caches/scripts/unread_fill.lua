-- Cache a member's unread count read from the store, unless a change came in meanwhile.
-- KEYS[1] unread:state:{c}   KEYS[2] unread:{c}:{u}
-- ARGV: user id, count, the conversation's last seq the count was read as of, the version taken
--       before the store read, counter ttl ms, state ttl ms
-- Returns 1 when filled, 0 when refused (a message or a read came in after the version was
-- taken: the count may miss it, so the counter stays a miss).
if (redis.call('HGET', KEYS[1], '@v') or '0') ~= ARGV[4] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
