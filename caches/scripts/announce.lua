-- Publish a message on a channel: the last part of a composed write-through, so that those
-- who hear of a change find it written, in the same step and round trip as the writes.
-- KEYS[1] the channel (of the written keys' slot on a cluster)
-- ARGV[1] the message; ARGV[2] "1" to SPUBLISH it (sharded pub/sub), "0" to PUBLISH
redis.call(ARGV[2] == '1' and 'SPUBLISH' or 'PUBLISH', KEYS[1], ARGV[1])
return 1
