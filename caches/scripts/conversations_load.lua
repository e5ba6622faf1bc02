-- Install a user's conversation list read from the store, unless a write raced it.
-- KEYS[1] conversations:user:{u}           zset conversation id -> sort score
-- KEYS[2] conversations:user:data:{u}      hash conversation id -> JSON; '@loaded', '@complete'
-- KEYS[3] conversations:user:version:{u}   bumped by every write
-- ARGV: ttl ms, complete ('1' | '0'), expected version ('' = unconditional),
--       then per conversation: id, score, JSON
-- Returns 1 when installed, 0 when refused: the list was written after the version the caller
-- read before its store read, so this list may be older than what the cache holds.
if ARGV[3] ~= '' and (redis.call('GET', KEYS[3]) or '0') ~= ARGV[3] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
for i = 4, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
redis.call('HSET', KEYS[2], '@loaded', '1', '@complete', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
if #ARGV > 3 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
