package sheenredis

import "github.com/redis/go-redis/v9"

// The limiter's state lives in three keys of one hash slot:
//
//	KEYS[1] a hash: the worker's window (known, has, limit, rem, reset,
//	        unit), the 429 pause (paused), whether any answer came
//	        (answered), when the last probe left (psent), and the pace's
//	        theoretical arrival time (tat);
//	KEYS[2] a sorted set of the requests in flight, scored by when their
//	        lease ends (a replica that dies with requests in flight frees
//	        them then);
//	KEYS[3] the same for the probes in flight.
//
// Times are milliseconds (with fractions: Redis keeps 14 significant
// digits of a number a script stores) on the replicas' clocks; waits come
// back in whole microseconds, rounded up. The rules are those of
// the client's own limiter (ratelimit.go), applied to every replica's
// requests and answers at once.

// acquireScript decides whether one request may leave now.
//
// ARGV: now, member, lease, pace interval, burst, probe hold, idle expiry
// (ms). It returns {1, probe} when the request leaves (counted in flight),
// else {0, 0, wait (µs), kind, limit, remaining, window end (ms)}: kind 1 is a wait
// sure to last (a pause, an exhausted window), 2 the pace, 0 a wait that
// another replica's answer may end early.
var acquireScript = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local inflight = redis.call('ZCARD', KEYS[2])
local probing = redis.call('ZCARD', KEYS[3])
local f = redis.call('HMGET', KEYS[1], 'known', 'has', 'limit', 'rem', 'reset', 'unit', 'paused', 'answered', 'psent', 'tat')
local known, has = f[1] == '1', f[2] == '1'
local limit, rem = tonumber(f[3]) or -1, tonumber(f[4]) or 0
local reset, unit = tonumber(f[5]) or 0, tonumber(f[6]) or 0
local paused, answered = tonumber(f[7]) or 0, f[8] == '1'
local psent, tat = tonumber(f[9]) or 0, tonumber(f[10]) or 0
local wend = reset + unit
local function refuse(wait, kind)
  if not (known and now < wend) then limit, rem, wend = -1, -1, 0 end
  if not has then limit = -1 end
  return {0, 0, math.ceil(wait * 1000), kind, limit, rem, wend}
end
if now < paused then return refuse(paused - now, 1) end
local probe = 0
if known and now < wend then
  if rem <= 0 then return refuse(wend - now, 1) end
  if has and inflight >= rem then return refuse(wend - now, 0) end
elseif (not answered) or (known and has) then
  if probing > 0 then
    local hold = psent + tonumber(ARGV[6])
    if now < hold then return refuse(hold - now, 0) end
  end
  probe = 1
end
local interval, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local t = math.max(tat, now)
if t - now > (burst - 1) * interval then
  return refuse(t - (burst - 1) * interval - now, 2)
end
redis.call('HSET', KEYS[1], 'tat', t + interval)
local lease = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], lease, ARGV[2])
if probe == 1 then
  redis.call('ZADD', KEYS[3], lease, ARGV[2])
  redis.call('HSET', KEYS[1], 'psent', now)
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
return {1, probe}
`)

// releaseScript ends one request's flight and learns from its answer.
//
// ARGV: member, now, answered (0/1), limit, remaining (-1: the answer
// described no current window), reset, reset precision, pause until (0:
// none), idle expiry (ms).
var releaseScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local now = tonumber(ARGV[2])
local f = redis.call('HMGET', KEYS[1], 'known', 'has', 'limit', 'rem', 'reset', 'unit', 'paused')
local known, has = f[1] == '1', f[2] == '1'
local limit, rem = tonumber(f[3]) or -1, tonumber(f[4]) or 0
local reset, unit = tonumber(f[5]) or 0, tonumber(f[6]) or 0
local paused = tonumber(f[7]) or 0
local wend = reset + unit
if ARGV[3] ~= '1' then
  -- No answer: the worker may have counted the request all the same.
  if known and has and now < wend and rem > 0 then redis.call('HSET', KEYS[1], 'rem', rem - 1) end
  return 0
end
redis.call('HSET', KEYS[1], 'answered', '1')
local alimit, arem = tonumber(ARGV[4]), tonumber(ARGV[5])
local areset, aunit = tonumber(ARGV[6]), tonumber(ARGV[7])
local ahas = alimit >= 0
local function fresh()
  redis.call('HSET', KEYS[1], 'known', '1', 'has', ahas and '1' or '0', 'limit', alimit, 'rem', arem, 'reset', areset, 'unit', aunit)
end
if arem >= 0 then
  local tol = math.min(math.max((areset - now) / 4, 10), 2000)
  if not known then
    fresh()
  elseif now >= wend then
    -- The window ended: an answer clearly after it describes the next one;
    -- one from before is late, and says nothing.
    if not (has and areset <= reset + tol) then fresh() end
  elseif has and not ahas and arem > 0 then
    -- Fixed headers of a route that is not limited: nothing to learn.
  elseif ahas and not has then
    fresh()
  elseif areset < reset - tol then
    -- A late answer from the window before.
  else
    if ahas and alimit > limit then
      limit, rem = alimit, arem
    else
      rem = math.min(rem, arem)
      if ahas then limit = alimit end
    end
    if areset < reset then reset = areset end
    redis.call('HSET', KEYS[1], 'limit', limit, 'rem', rem, 'reset', reset, 'unit', math.max(unit, aunit))
  end
elseif known and now >= wend then
  -- The window ended and this answer says nothing of the next: the route
  -- is not limited. Stop probing.
  redis.call('HSET', KEYS[1], 'known', '0', 'has', '0')
end
local pause = tonumber(ARGV[8])
if pause > paused then redis.call('HSET', KEYS[1], 'paused', pause) end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[9]) end
return 1
`)
