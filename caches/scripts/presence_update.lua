-- One connection-aware presence step for one user, atomically.
-- KEYS[1] presence:{u}         the spec's status key (value: online | away, TTL = last lease)
-- KEYS[2] presence:leases:{u}  zset connection id -> lease expiry ms ('@grace' = grace lease)
-- KEYS[3] presence:conns:{u}   hash connection id -> 'a' | 'w'; '@status' = announced status
-- KEYS[4] lastseen:{u}         RFC 3339 time the user was last connected: when the last
--                              connection closed (its grace starts), or when the last lease
--                              lapsed without one (a dead instance)
-- KEYS[5] presence:online      zset user -> presence expiry ms (the last lease's)
-- KEYS[6] presence:deadlines   zset user -> earliest lease expiry ms (scanned by the sweep)
--         KEYS[5] and KEYS[6] are left out on Redis Cluster (another slot than the user's):
--         the caller then updates them from the returned expiries.
-- ARGV: op ('renew' | 'disconnect' | 'expire'), user id, connection id, now ms, now RFC 3339,
--       lease ms, grace ms, connection state ('a' active | 'w' away; renew only),
--       key retention ms (how long the bookkeeping outlives the last lease, for the sweep)
-- Returns {transition, status, earliest lease expiry ms or 0, last seen or '', last lease
-- expiry ms or 0}; transition is the new status when it changed, '' otherwise; last seen only
-- once offline.
local op, user, conn = ARGV[1], ARGV[2], ARGV[3]
local now, lease, grace = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7])
local retention = tonumber(ARGV[9])
local GRACE = '@grace'
local prev = redis.call('HGET', KEYS[3], '@status') or 'offline'

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local graced = false
for _, member in ipairs(expired) do
  if member == GRACE then
    graced = true
  end
end
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('HDEL', KEYS[3], unpack(expired))
end

if op == 'renew' then
  redis.call('ZREM', KEYS[2], GRACE)
  redis.call('ZADD', KEYS[2], now + lease, conn)
  redis.call('HSET', KEYS[3], conn, ARGV[8])
elseif op == 'disconnect' then
  if redis.call('ZREM', KEYS[2], conn) == 1 then
    redis.call('HDEL', KEYS[3], conn)
    if grace > 0 and redis.call('ZCARD', KEYS[2]) == 0 then
      redis.call('ZADD', KEYS[2], now + grace, GRACE)
      redis.call('SET', KEYS[4], ARGV[5])
    end
  end
end

local active, away = false, false
local states = redis.call('HGETALL', KEYS[3])
for i = 1, #states, 2 do
  if states[i] ~= '@status' then
    if states[i + 1] == 'a' then active = true else away = true end
  end
end
local status = 'offline'
if active then
  status = 'online'
elseif away then
  status = 'away'
elseif redis.call('ZSCORE', KEYS[2], GRACE) then
  status = prev
end

local indexed = #KEYS >= 6
local earliest, last = 0, 0
local seen = ''
if status == 'offline' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  if indexed then
    redis.call('ZREM', KEYS[5], user)
    redis.call('ZREM', KEYS[6], user)
  end
  if prev ~= 'offline' and not graced then
    redis.call('SET', KEYS[4], ARGV[5])
  end
  seen = redis.call('GET', KEYS[4]) or ''
else
  earliest = tonumber(redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2])
  last = tonumber(redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2])
  redis.call('SET', KEYS[1], status, 'PX', math.max(1, last - now))
  redis.call('HSET', KEYS[3], '@status', status)
  redis.call('PEXPIRE', KEYS[2], last - now + retention)
  redis.call('PEXPIRE', KEYS[3], last - now + retention)
  if indexed then
    redis.call('ZADD', KEYS[5], last, user)
    redis.call('ZADD', KEYS[6], earliest, user)
  end
end

local transition = ''
if status ~= prev then
  transition = status
end
return {transition, status, earliest, seen, last}
