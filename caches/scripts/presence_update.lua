-- Connection-aware presence steps for one or more users, each atomic (the whole call is).
-- Per user, four keys in this order (KEYS[4i-3 .. 4i] for user i):
--   presence:{u}         the spec's status key (value: online | away, TTL = last lease)
--   presence:leases:{u}  zset connection id -> lease expiry ms ('@grace' = grace lease)
--   presence:conns:{u}   hash connection id -> 'a' | 'w'; '@status' = announced status
--   lastseen:{u}         RFC 3339 time the user was last connected: when the last
--                        connection closed (its grace starts), or when the last lease
--                        lapsed without one (a dead instance)
-- then, when ARGV[7] is '1', two more:
--   presence:online      zset user -> presence expiry ms (the last lease's)
--   presence:deadlines   zset user -> earliest lease expiry ms (scanned by the sweep)
--   They are left out on Redis Cluster (another slot than the user's): the caller then
--   updates them from the returned expiries (and calls once per user).
-- ARGV: op ('renew' | 'disconnect' | 'expire'), now ms, now RFC 3339, lease ms, grace ms,
--       key retention ms (how long the bookkeeping outlives the last lease, for the sweep),
--       indexed ('1' | '0'); then per user: user id, connection id, connection state
--       ('a' active | 'w' away; renew only).
-- Returns, per user in order, {transition, status, earliest lease expiry ms or 0, last seen or
-- '', last lease expiry ms or 0}, flattened; transition is the new status when it changed, ''
-- otherwise; last seen only once offline.
local op, now, iso = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local lease, grace, retention = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local indexed = ARGV[7] == '1'
local GRACE = '@grace'
local users = (#ARGV - 7) / 3
local online_key, deadlines_key = KEYS[users * 4 + 1], KEYS[users * 4 + 2]

local function step(k, user, conn, state)
  local prev = redis.call('HGET', k[3], '@status') or 'offline'

  local expired = redis.call('ZRANGEBYSCORE', k[2], '-inf', now)
  local graced = false
  for _, member in ipairs(expired) do
    if member == GRACE then
      graced = true
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', k[2], '-inf', now)
    redis.call('HDEL', k[3], unpack(expired))
  end

  if op == 'renew' then
    redis.call('ZREM', k[2], GRACE)
    redis.call('ZADD', k[2], now + lease, conn)
    redis.call('HSET', k[3], conn, state)
  elseif op == 'disconnect' then
    if redis.call('ZREM', k[2], conn) == 1 then
      redis.call('HDEL', k[3], conn)
      if grace > 0 and redis.call('ZCARD', k[2]) == 0 then
        redis.call('ZADD', k[2], now + grace, GRACE)
        redis.call('SET', k[4], iso)
      end
    end
  end

  local active, away = false, false
  local states = redis.call('HGETALL', k[3])
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
  elseif redis.call('ZSCORE', k[2], GRACE) then
    status = prev
  end

  local earliest, last = 0, 0
  local seen = ''
  if status == 'offline' then
    redis.call('DEL', k[1], k[2], k[3])
    if indexed then
      redis.call('ZREM', online_key, user)
      redis.call('ZREM', deadlines_key, user)
    end
    if prev ~= 'offline' and not graced then
      redis.call('SET', k[4], iso)
    end
    seen = redis.call('GET', k[4]) or ''
  else
    earliest = tonumber(redis.call('ZRANGE', k[2], 0, 0, 'WITHSCORES')[2])
    last = tonumber(redis.call('ZRANGE', k[2], -1, -1, 'WITHSCORES')[2])
    redis.call('SET', k[1], status, 'PX', math.max(1, last - now))
    redis.call('HSET', k[3], '@status', status)
    redis.call('PEXPIRE', k[2], last - now + retention)
    redis.call('PEXPIRE', k[3], last - now + retention)
    if indexed then
      redis.call('ZADD', online_key, last, user)
      redis.call('ZADD', deadlines_key, earliest, user)
    end
  end

  local transition = ''
  if status ~= prev then
    transition = status
  end
  return {transition, status, earliest, seen, last}
end

local results = {}
for i = 1, users do
  local b = 7 + (i - 1) * 3
  local keys_of = {KEYS[i * 4 - 3], KEYS[i * 4 - 2], KEYS[i * 4 - 1], KEYS[i * 4]}
  local r = step(keys_of, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3])
  for j = 1, 5 do
    results[#results + 1] = r[j]
  end
end
return results
