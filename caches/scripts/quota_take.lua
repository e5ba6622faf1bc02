-- Take up to ARGV[3] tokens from a user's bucket for one kind of operation, fleet-wide.
-- KEYS[1] quota:{u}:kind (a hash: t = tokens, s = stamp in ms)
-- ARGV: rate (tokens per second), burst, tokens wanted
-- Returns {granted, wait}: the tokens taken (at least 1 when one is there, at most wanted), and
-- when none is, the milliseconds until one will be.
-- The server's clock, not the callers': instances on several hosts agree on one bucket.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3] or '1')
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(bucket[1])
local stamp = tonumber(bucket[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate / 1000)
  stamp = now
end
local wait = 0
local granted = 0
if tokens >= 1 then
  granted = math.min(wanted, math.floor(tokens))
  tokens = tokens - granted
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(stamp))
-- Gone once it would be full again: an idle user costs nothing.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {granted, wait}
