-- Sum the unread counts of a user's cached conversations.
-- KEYS[1] conversations:user:data:{u}   hash conversation id -> JSON; '@loaded', '@complete'
-- ARGV: none
-- Returns the total, or false (a miss) unless the list was loaded complete.
local flags = redis.call('HMGET', KEYS[1], '@loaded', '@complete')
if flags[1] ~= '1' or flags[2] ~= '1' then
  return false
end
local total = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 1) ~= '@' then
    total = total + (tonumber(cjson.decode(all[i + 1]).unread_count) or 0)
  end
end
return total
