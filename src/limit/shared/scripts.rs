//! The Lua scripts Redis runs for moat: each check, reservation and settlement is one
//! script, atomic on Redis and evaluated on its clock.

/// KEYS: the GCRA buckets, then the quota counter if there is one.
/// ARGV: the number of buckets; per bucket its emission interval and burst tolerance in µs
/// (a request passes while `tat - now <= tolerance`); the quota's limit (0: none) and when
/// the counter expires (Unix seconds: a minute after its window ends).
/// Returns {0, 0, used} admitted, {1, wait µs, used} over a bucket, {2, 0, used} quota spent.
pub(super) const CHECK: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local buckets = tonumber(ARGV[1])
local tats = {}
local wait = 0
for i = 1, buckets do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  if tat - now > tolerance then
    wait = math.max(wait, tat - now - tolerance)
  end
  tats[i] = tat + interval
end
local limit = tonumber(ARGV[2 * buckets + 2])
local used = 0
if limit > 0 then
  used = tonumber(redis.call('GET', KEYS[buckets + 1]) or '0')
  if used >= limit then return {2, 0, used} end
end
if wait > 0 then return {1, wait, used} end
for i = 1, buckets do
  redis.call('SET', KEYS[i], string.format('%d', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1000)
end
if limit > 0 then
  used = redis.call('INCR', KEYS[buckets + 1])
  if used == 1 then redis.call('EXPIREAT', KEYS[buckets + 1], ARGV[2 * buckets + 3]) end
end
return {0, 0, used}
";

/// KEYS: a key's token counters, one per budget. ARGV: the tokens wanted, the fewest that
/// will do, then per counter its budget and when it expires (Unix seconds).
/// Returns {granted, 0}, or {0, i} when counter i has fewer than the fewest left.
pub(super) const RESERVE: &str = r"
local room = tonumber(ARGV[1])
local at_least = tonumber(ARGV[2])
for i = 1, #KEYS do
  local left = tonumber(ARGV[1 + 2 * i]) - tonumber(redis.call('GET', KEYS[i]) or '0')
  if left < at_least then return {0, i} end
  if left < room then room = left end
end
for i = 1, #KEYS do
  if redis.call('INCRBY', KEYS[i], room) == room then
    redis.call('EXPIREAT', KEYS[i], ARGV[2 + 2 * i])
  end
end
return {room, 0}
";

/// KEYS: the counters a reservation was taken from. ARGV: what to add (negative: returned).
/// A counter that has expired (its window ended) is not brought back.
pub(super) const SETTLE: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
end
return 0
";
