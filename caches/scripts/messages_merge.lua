-- Merge messages into a conversation's cached list, keep the newest `cap`, refresh the TTL.
-- KEYS[1] conversation:messages:{c}          zset message id -> created_at ms
-- KEYS[2] conversation:messages:bodies:{c}   hash message id -> JSON; '@loaded', '@complete'
-- ARGV: mode ('add' | 'load'), cap, ttl ms, complete ('1' | '0', load only),
--       then per message: id, created_at ms, status rank, JSON
-- Returns the number of messages held.
-- An add to a list that was never loaded is kept, but the list stays unloaded (reads miss), so a
-- load running concurrently merges with it instead of losing it. A body already held with a
-- further status (delivered, read) is kept: receipts never move backwards.
local RANKS = {sending = 0, sent = 1, delivered = 2, read = 3}
local mode, cap, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 5, #ARGV, 4 do
  local id, rank = ARGV[i], tonumber(ARGV[i + 2])
  local old = redis.call('HGET', KEYS[2], id)
  if (not old) or (RANKS[string.match(old, '"status":"(%a+)"')] or 0) < rank then
    redis.call('HSET', KEYS[2], id, ARGV[i + 3])
  end
  redis.call('ZADD', KEYS[1], ARGV[i + 1], id)
end
if mode == 'load' then
  redis.call('HSET', KEYS[2], '@loaded', '1', '@complete', ARGV[4])
end
local n = redis.call('ZCARD', KEYS[1])
if n > cap then
  local dropped = redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
  redis.call('HDEL', KEYS[2], unpack(dropped))
  redis.call('HSET', KEYS[2], '@complete', '0')
  n = cap
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return n
