-- Apply one change to one conversation of a user's cached list.
-- KEYS[1] conversations:user:{u}         zset conversation id -> sort score
-- KEYS[2] conversations:user:data:{u}    hash conversation id -> JSON; '@loaded', '@complete'
-- KEYS[3] conversations:user:version:{u}  bumped here, so fills read before it are refused
-- ARGV: op, conversation id, version ttl ms, pinned weight, then by op:
--   'last' message id, text, at RFC 3339, at ms | 'message' the same, then 1/0 (count it
--   unread), then its seq or '' | 'read' seq | 'incr' | 'reset' | 'pin' 0/1 | 'mute' 0/1
--   | 'remove'
-- A conversation cached with `last_seq` and `read_seq` keeps them as watermarks (each only
-- moves up) and derives unread_count = last_seq - read_seq, so writes applied in any order
-- agree; one without them counts unread by increments, as the spec's calls do.
-- Returns the conversation's unread count after the change, or -1 when the list is not cached
-- (nothing partial is created) or did not hold the conversation (the list is then dropped, since
-- it is no longer complete for that user).
local op, id, weight = ARGV[1], ARGV[2], tonumber(ARGV[4])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
if redis.call('HGET', KEYS[2], '@loaded') ~= '1' then
  return -1
end
if op == 'remove' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  return 0
end
local raw = redis.call('HGET', KEYS[2], id)
if not raw then
  redis.call('DEL', KEYS[1], KEYS[2])
  return -1
end
local conv = cjson.decode(raw)
local score = tonumber(redis.call('ZSCORE', KEYS[1], id))
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
      if ARGV[9] ~= '1' and seq > read then
        conv.read_seq, read = seq, seq
      end
      conv.unread_count = math.max(0, last - read)
    elseif ARGV[9] == '1' then
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
redis.call('ZADD', KEYS[1], pinned + last_ms, id)
redis.call('HSET', KEYS[2], id, cjson.encode(conv))
return tonumber(conv.unread_count) or 0
