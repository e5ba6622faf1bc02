-- Clear a user's typing indicator and say whether it was set.
-- KEYS[1] typing:{c}:{u}
-- KEYS[2] typing:index:{c}
-- ARGV: user id, optionally a channel and a message to PUBLISH when it was set
-- Returns 1 when the user was typing (and the message was published), else 0.
local was = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if was == 1 and ARGV[2] and ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return was
