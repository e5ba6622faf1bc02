-- Apply one change to one conversation of one or more users' cached lists.
-- KEYS, three per user (one user's keys share a slot; several users only on one server):
--   conversations:user:{u}         zset conversation id -> sort score
--   conversations:user:data:{u}    hash conversation id -> JSON; '@loaded', '@complete'
--   conversations:user:version:{u}  bumped here, so fills read before it are refused
-- ARGV: op, conversation id, version ttl ms, pinned weight, then by op:
--   'last' message id, text, at RFC 3339, at ms | 'message' the same, then a 1/0 per user
--   (count it unread for that user: '0111' for four users, the first the sender), then its
--   seq or '' | 'read' seq | 'incr' | 'reset' | 'pin' 0/1 | 'mute' 0/1 | 'remove'
--   | 'drop' (the whole list; the conversation id is not used)
-- A conversation cached with `last_seq` and `read_seq` keeps them as watermarks (each only
-- moves up) and derives unread_count = last_seq - read_seq, so writes applied in any order
-- agree; one without them counts unread by increments, as the spec's calls do.
-- Returns, per user, the conversation's unread count after the change, or -1 when the list is
-- not cached (nothing partial is created) or did not hold the conversation (the list is then
-- dropped, since it is no longer complete for that user); a number for one user.
local op, id, weight = ARGV[1], ARGV[2], tonumber(ARGV[4])

local function apply(list, data, version, unread)
  redis.call('INCR', version)
  redis.call('PEXPIRE', version, ARGV[3])
  if op == 'drop' then
    redis.call('DEL', list, data)
    return -1
  end
  if redis.call('HGET', data, '@loaded') ~= '1' then
    return -1
  end
  if op == 'remove' then
    redis.call('ZREM', list, id)
    redis.call('HDEL', data, id)
    return 0
  end
  local raw = redis.call('HGET', data, id)
  if not raw then
    redis.call('DEL', list, data)
    return -1
  end
  local conv = cjson.decode(raw)
  local score = tonumber(redis.call('ZSCORE', list, id))
  local last_ms = score % weight
  if op == 'last' or op == 'message' then
    local at_ms = tonumber(ARGV[8])
    if at_ms >= last_ms then
      conv.last_message_id = ARGV[5]
      conv.last_message_text = ARGV[6]
      conv.last_message_at = ARGV[7]
      last_ms = at_ms
    end
    if op == 'message' then
      local seq, last = tonumber(ARGV[10]), tonumber(conv.last_seq)
      if seq and last then
        local read = tonumber(conv.read_seq) or 0
        if seq > last then
          conv.last_seq, last = seq, seq
        end
        if not unread and seq > read then
          conv.read_seq, read = seq, seq
        end
        conv.unread_count = math.max(0, last - read)
      elseif unread then
        conv.unread_count = (tonumber(conv.unread_count) or 0) + 1
      end
    end
  elseif op == 'read' then
    local seq, last = tonumber(ARGV[5]), tonumber(conv.last_seq)
    if last then
      local read = tonumber(conv.read_seq) or 0
      if seq > read then
        conv.read_seq, read = seq, seq
      end
      conv.unread_count = math.max(0, last - read)
    else
      conv.unread_count = 0
    end
  elseif op == 'incr' then
    conv.unread_count = (tonumber(conv.unread_count) or 0) + 1
  elseif op == 'reset' then
    conv.unread_count = 0
  elseif op == 'pin' then
    conv.is_pinned = ARGV[5] == '1'
  elseif op == 'mute' then
    conv.is_muted = ARGV[5] == '1'
  end
  local pinned = 0
  if conv.is_pinned then
    pinned = weight
  end
  redis.call('ZADD', list, pinned + last_ms, id)
  redis.call('HSET', data, id, cjson.encode(conv))
  return tonumber(conv.unread_count) or 0
end

local results = {}
for i = 1, #KEYS, 3 do
  local user = (i + 2) / 3
  results[user] = apply(KEYS[i], KEYS[i + 1], KEYS[i + 2], string.sub(ARGV[9] or '', user, user) == '1')
end
if #results == 1 then
  return results[1]
end
return results
