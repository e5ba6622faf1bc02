-- A message with `seq` for some members: each cached unread counter filled as of an earlier
-- seq counts it; a counter not cached stays a miss (nothing partial is created).
-- KEYS[1] unread:state:{c}   hash '@v' version, user -> seq the counter was filled as of
-- KEYS[2..] unread:{c}:{u}    one per member, in ARGV's order
-- ARGV: seq, state ttl ms, then the members' ids
-- Counters filled as of this seq or later already count it, so a message written through after
-- a fill that read it from the store is never counted twice.
local seq = tonumber(ARGV[1])
redis.call('HINCRBY', KEYS[1], '@v', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local as_of = tonumber(redis.call('HGET', KEYS[1], ARGV[i + 1])) or 0
    if seq > as_of then
      redis.call('INCR', KEYS[i])
    end
  end
end
return 1
