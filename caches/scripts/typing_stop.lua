-- Clear a user's typing indicator and say whether it was set.
-- KEYS[1] typing:{c}:{u}
-- KEYS[2] typing:index:{c}
-- KEYS[3] optionally, a channel of the same slot to publish ARGV[2] on when it was set
-- ARGV: user id, optionally the message and "1" to SPUBLISH it (sharded pub/sub), "0" to PUBLISH
-- Returns 1 when the user was typing (and the message was published), else 0.
local was = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if was == 1 and KEYS[3] then
  redis.call(ARGV[3] == '1' and 'SPUBLISH' or 'PUBLISH', KEYS[3], ARGV[2])
end
return was
