-- Mark a user typing in a conversation and say whether to announce it.
-- KEYS[1] typing:{c}:{u}     value: ms of the last announcement, TTL = typing TTL
-- KEYS[2] typing:index:{c}   zset user -> typing expiry ms
-- KEYS[3] optionally, a channel of the same slot to publish ARGV[5] on when announcing
-- ARGV: user id, now ms, ttl ms, throttle ms (-1: announce only when not typing before),
--       optionally the message and "1" to SPUBLISH it (sharded pub/sub), "0" to PUBLISH
-- Returns 1 when it is announced (newly typing, or the throttle window passed), else 0.
--
-- Each redis.call costs the server about as much as the command itself, so the common case
-- (an announcement) takes four or five: the stamp is swapped in one SET ... GET and put back
-- only when the throttle says no. The index is not pruned here: it holds at most one entry
-- per member (ZADD updates a typist's own entry), readers skip expired entries by score, and
-- it expires as a whole once nobody has typed for a TTL.
local user, now, ttl, throttle = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local last = tonumber(redis.call('SET', KEYS[1], now, 'PX', ttl, 'GET') or '-1')
local announce = last < 0 or (throttle >= 0 and now - last >= throttle)
if not announce then
  redis.call('SET', KEYS[1], last, 'PX', ttl)
end
redis.call('ZADD', KEYS[2], now + ttl, user)
if redis.call('PTTL', KEYS[2]) < ttl then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if announce then
  if KEYS[3] then
    redis.call(ARGV[6] == '1' and 'SPUBLISH' or 'PUBLISH', KEYS[3], ARGV[5])
  end
  return 1
end
return 0
