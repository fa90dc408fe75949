/**
 * The shared token cache's Lua scripts. One identity owns five keys under one hash tag (a digest of
 * `TokenSource.identityKey`):
 *
 * - `token` (HASH): `v` the sealed token (AES-256-GCM when a key is configured), `fp` its fingerprint,
 *   `obt` and `exp` when it was obtained and expires (server time, ms; `exp` empty when the provider gave
 *   no expiry), `fence` the fence of the fetch that wrote it. TTL: until `exp`, or `noExpiryTtl`.
 * - `lock` (STRING): the fence of the one process fetching now. TTL: the lock TTL, renewed while the
 *   fetch runs, so a crashed holder's lock lapses.
 * - `fence` (STRING): a counter incremented for every lock taken, seeded from the server clock so it
 *   keeps growing even if the key ever expires. A token is written only by the holder of the current
 *   fence. TTL: 7 days, renewed on each lock.
 * - `fail` (HASH): `until` (server ms), `n` consecutive failures, `err` the failure (no secrets: core's
 *   errors never carry them). No one starts a fetch before `until`. TTL: past `until`, so `n` can double
 *   the next cooldown.
 * - `users` (ZSET): processes using the token, score = the end of their membership lease; for the
 *   "last user revokes" rule. TTL: twice the lease.
 *
 * Instants inside scripts come from `TIME` only; callers send durations relative to their own clock.
 */
import * as RedisConnection from "../RedisConnection.js"
import { timeHelpers } from "./lua.js"

const prelude = timeHelpers

/**
 * Reads the token and, when a new one is needed, either takes the fetch lock or says who has it.
 *
 * KEYS: token, lock, fence, fail, users. ARGV: refreshBefore (ms), safetyMargin (ms), mode ("get":
 * a usable token is enough; "refresh": the token must not be due for refresh), member ("" for none),
 * member lease (ms), lock TTL (ms), take lock ("1"/"0"), fence TTL (ms).
 *
 * Reply: `{status, detail, err, sealed, fp, obtainedIn, expiresIn, usable}` where status is `token`,
 * `lock` (detail = the fence), `wait` (detail = the lock's remaining ms), `cooldown` (detail = ms left,
 * err = the failure) or `free`; times are relative to the server's now.
 */
export const read = RedisConnection.script(
  "token read",
  `${prelude}
local now = clock()
if ARGV[4] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', num(now))
  redis.call('ZADD', KEYS[5], num(now + tonumber(ARGV[5])), ARGV[4])
  redis.call('PEXPIRE', KEYS[5], ms(tonumber(ARGV[5]) * 2))
end
local t = redis.call('HMGET', KEYS[1], 'v', 'fp', 'obt', 'exp')
local have = t[1] ~= false and t[3] ~= false
local usable, due = false, true
local sealed, fp, obtIn, expIn = '', '', '', ''
if have then
  sealed = t[1]; fp = t[2] or ''
  local obt = tonumber(t[3])
  local exp = tonumber(t[4] or '')
  obtIn = num(obt - now)
  if exp == nil then
    usable = true
    due = false
  else
    expIn = num(exp - now)
    local lifetime = math.max(0, exp - obt)
    local rb = math.min(tonumber(ARGV[1]), lifetime / 2)
    local margin = math.min(tonumber(ARGV[2]), lifetime / 10, rb)
    usable = now < exp - margin
    due = now >= exp - rb
  end
end
local function reply(status, detail, err)
  local u = '0'
  if usable then u = '1' end
  return {status, detail, err, sealed, fp, obtIn, expIn, u}
end
if usable and (ARGV[3] == 'get' or not due) then return reply('token', '', '') end
local f = redis.call('HMGET', KEYS[4], 'until', 'err')
local funtil = tonumber(f[1] or '')
if funtil ~= nil and funtil > now then return reply('cooldown', num(funtil - now), f[2] or '') end
local pttl = redis.call('PTTL', KEYS[2])
if pttl == -1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  pttl = tonumber(ARGV[6])
end
if pttl > 0 then return reply('wait', string.format('%d', pttl), '') end
if ARGV[7] ~= '1' then return reply('free', '', '') end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], string.format('%d', math.floor(now)))
end
local fence = string.format('%d', redis.call('INCR', KEYS[3]))
redis.call('PEXPIRE', KEYS[3], ARGV[8])
redis.call('SET', KEYS[2], fence, 'PX', ARGV[6])
return reply('lock', fence, '')
`
)

/**
 * Writes a fetched token if `fence` is still the current fence (nobody took the lock since), then
 * releases the lock and clears the failure record.
 *
 * KEYS: token, lock, fence, fail. ARGV: fence, sealed, fingerprint, obtained (ms relative to the
 * caller's now, ≤ 0), expires (ms relative, "" for none), TTL for tokens without expiry (ms).
 * Reply: `{"stored"}`, `{"fenced"}` or `{"expired"}`.
 */
export const store = RedisConnection.script(
  "token store",
  `${prelude}
local now = clock()
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'fenced'} end
local exp = ''
local ttl = tonumber(ARGV[6])
if ARGV[5] ~= '' then
  local rel = tonumber(ARGV[5])
  if rel <= 0 then
    if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
    return {'expired'}
  end
  exp = num(now + rel)
  ttl = rel
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'fp', ARGV[3], 'obt', num(now + tonumber(ARGV[4])), 'exp', exp,
  'fence', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ms(ttl))
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[4])
return {'stored'}
`
)

/**
 * Records a failed fetch (when `fence` is current) so that no process starts another before the
 * cooldown ends, and releases the lock. The cooldown doubles with each consecutive failure.
 *
 * KEYS: lock, fence, fail. ARGV: fence, cooldown base (ms), cooldown max (ms), the failure, the
 * provider's own retry delay (ms, "" for none), a random number in [0, 1) for jitter.
 * Reply: `{cooldownMillis}` ("0" when fenced out).
 */
export const fail = RedisConnection.script(
  "token failure",
  `${prelude}
local now = clock()
local cooldown = 0
if redis.call('GET', KEYS[2]) == ARGV[1] then
  local n = (tonumber(redis.call('HGET', KEYS[3], 'n') or '') or 0) + 1
  local base, max = tonumber(ARGV[2]), tonumber(ARGV[3])
  cooldown = math.min(max, base * 2 ^ (n - 1))
  cooldown = cooldown / 2 + cooldown / 2 * tonumber(ARGV[6])
  if ARGV[5] ~= '' then cooldown = math.max(cooldown, tonumber(ARGV[5])) end
  redis.call('HSET', KEYS[3], 'n', n, 'until', num(now + cooldown), 'err', ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ms(cooldown + max * 2))
end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return {num(cooldown)}
`
)

/** Releases the lock if `fence` still holds it. KEYS: lock. ARGV: fence. Reply: 1 or 0. */
export const release = RedisConnection.script(
  "token lock release",
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`
)

/** Extends the lock if `fence` still holds it. KEYS: lock. ARGV: fence, TTL (ms). Reply: 1 or 0. */
export const renewLock = RedisConnection.script(
  "token lock renewal",
  `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`
)

/**
 * Compare-and-set invalidation: deletes the token only if its fingerprint is `fp`, so a 401 for an
 * old token never drops a newer one. KEYS: token. ARGV: fingerprint. Reply: 1 when deleted.
 */
export const invalidate = RedisConnection.script(
  "token invalidation",
  `
if redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`
)

/** Renews this process's membership. KEYS: users. ARGV: member, lease (ms). */
export const heartbeat = RedisConnection.script(
  "token membership",
  `${prelude}
local now = clock()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
redis.call('ZADD', KEYS[1], num(now + tonumber(ARGV[2])), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ms(tonumber(ARGV[2]) * 2))
return 1
`
)

/**
 * Leaves the set of users. When `revoke` is "1", no other live user remains and the stored token is
 * the one with fingerprint `fp`, deletes it and answers 1: the caller then revokes it at the provider.
 * KEYS: users, token. ARGV: member, fingerprint ("" for none), revoke ("1"/"0").
 */
export const leave = RedisConnection.script(
  "token leave",
  `${prelude}
local now = clock()
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', num(now))
local last = redis.call('ZCARD', KEYS[1]) == 0
if last then redis.call('DEL', KEYS[1]) end
if ARGV[3] == '1' and last and ARGV[2] ~= '' and redis.call('HGET', KEYS[2], 'fp') == ARGV[2] then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`
)
