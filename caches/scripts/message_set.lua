-- Store a message's JSON with its TTL (a part of a composed write; alone, a plain SET).
-- KEYS[1] message:{id}
-- ARGV: JSON, ttl ms
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
