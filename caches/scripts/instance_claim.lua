-- Take a lapsed instance's lease list, atomically: only one claimer gets it.
-- KEYS[1] gateway:alive:{i}   KEYS[2] gateway:leases:{i} (set of "user connection")
-- ARGV[1] '1' to take it even when the record is there (an instance's own leftovers at start)
-- Returns the members (taken, the list deleted), or nil while the instance is alive.
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local members = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
return members
