/**
 * The Redis token store's Lua scripts. One identity owns five keys under one hash tag (a digest of
 * `TokenSource.identityKey`):
 *
 * - `token` (HASH): `v` the sealed token (AES-256-GCM when a key is configured), `fp` its fingerprint,
 *   `obt` and `exp` when it was obtained and expires (`exp` empty when the provider gave no expiry),
 *   `rat` and `uu` from when it is due for refresh and until when it may be handed out (server time, ms,
 *   as the writing cache scheduled them). TTL: until `exp`, or `noExpiryTtl`.
 * - `lock` (STRING): `<fence>:<owner>` of the one cache fetching now; `owner` is a random id the caller
 *   chose for that read. TTL: the lock TTL, renewed while the fetch runs, so a crashed holder's lock
 *   lapses.
 * - `fence` (STRING): a counter incremented for every lock taken, seeded from the server clock so it
 *   keeps growing even if the key ever expires. A token or a failure is written only by the holder of
 *   the current fence. TTL: 7 days, renewed on each lock.
 * - `fail` (HASH): `until` (server ms), `n` consecutive failures, `err` the failure (Schema-encoded JSON,
 *   never a secret). No one starts a fetch before `until`. TTL: past `until`, so `n` can double the next
 *   cooldown.
 * - `users` (ZSET): caches using the token, score = the end of their membership lease; for the "last
 *   user revokes" rule. TTL: twice the lease.
 *
 * Instants inside scripts come from `TIME` only; callers send durations relative to their own clock.
 *
 * A command can outlive its caller: when Redis stalls (a `SIGSTOP`, a long fork) the client gives up,
 * but the command still runs once Redis resumes. A read that took the lock for a caller that left would
 * hold it for the whole lock TTL, so the caller then sends `releaseOwner` with the owner id it chose;
 * commands of one connection run in order, so the release runs right after the late read.
 */
import * as RedisConnection from "../RedisConnection.js"
import { timeHelpers } from "./lua.js"

const prelude = timeHelpers

/**
 * Reads the token and, when a new one is needed, either takes the fetch lock or says who has it.
 *
 * KEYS: token, lock, fence, fail, users. ARGV: mode ("get": a usable token is enough; "refresh": the
 * token must not be due for refresh), member ("" for none), member lease (ms), lock TTL (ms), owner (a
 * random id), fence TTL (ms).
 *
 * Reply: `{status, detail, err, sealed, fp, obtainedIn, expiresIn, refreshIn, usableIn}` where status is
 * `token`, `lock` (detail = the lease `<fence>:<owner>`), `wait` (detail = the lock's remaining ms) or
 * `cooldown` (detail = ms left, err = the failure); times are relative to the server's now.
 */
export const read = RedisConnection.script(
  "token read",
  `${prelude}
local now = clock()
if ARGV[2] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', num(now))
  redis.call('ZADD', KEYS[5], num(now + tonumber(ARGV[3])), ARGV[2])
  redis.call('PEXPIRE', KEYS[5], ms(tonumber(ARGV[3]) * 2))
end
local t = redis.call('HMGET', KEYS[1], 'v', 'fp', 'obt', 'exp', 'rat', 'uu')
local have = t[1] ~= false and t[3] ~= false
local usable, due = false, true
local sealed, fp, obtIn, expIn, ratIn, uuIn = '', '', '', '', '', ''
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
    local rat = tonumber(t[5] or '')
    local uu = tonumber(t[6] or '')
    -- Written by an older version: a sixth and a twelfth of the lifetime.
    if rat == nil then rat = exp - (exp - obt) / 6 end
    if uu == nil then uu = exp - (exp - obt) / 12 end
    ratIn = num(rat - now)
    uuIn = num(uu - now)
    usable = now < uu
    due = now >= rat
  end
end
local function reply(status, detail, err)
  return {status, detail, err, sealed, fp, obtIn, expIn, ratIn, uuIn}
end
if usable and (ARGV[1] == 'get' or not due) then return reply('token', '', '') end
local f = redis.call('HMGET', KEYS[4], 'until', 'err')
local funtil = tonumber(f[1] or '')
if funtil ~= nil and funtil > now then return reply('cooldown', num(funtil - now), f[2] or '') end
local pttl = redis.call('PTTL', KEYS[2])
if pttl == -1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  pttl = tonumber(ARGV[4])
end
if pttl > 0 then return reply('wait', string.format('%d', pttl), '') end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], string.format('%d', math.floor(now)))
end
local lease = string.format('%d', redis.call('INCR', KEYS[3])) .. ':' .. ARGV[5]
redis.call('PEXPIRE', KEYS[3], ARGV[6])
redis.call('SET', KEYS[2], lease, 'PX', ARGV[4])
return reply('lock', lease, '')
`
)

// The fence number of a lease `<fence>:<owner>`, for comparison with the `fence` key.
const fenceOf = `
local function fenceOf(lease) return string.match(lease, '^(%d+):') or '' end
`

/**
 * Writes a fetched token if the lease's fence is still the current fence (nobody took the lock since),
 * then releases the lock and clears the failure record.
 *
 * KEYS: token, lock, fence, fail. ARGV: lease, sealed, fingerprint, obtained, expires, refresh at,
 * usable until (ms relative to the caller's now; "" for no expiry), TTL for tokens without expiry (ms).
 * Reply: `{"stored"}`, `{"fenced"}` or `{"expired"}`.
 */
export const store = RedisConnection.script(
  "token store",
  `${prelude}${fenceOf}
local now = clock()
if redis.call('GET', KEYS[3]) ~= fenceOf(ARGV[1]) then return {'fenced'} end
local exp, rat, uu = '', '', ''
local ttl = tonumber(ARGV[8])
if ARGV[5] ~= '' then
  local rel = tonumber(ARGV[5])
  if rel <= 0 then
    if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
    return {'expired'}
  end
  exp = num(now + rel)
  rat = num(now + tonumber(ARGV[6]))
  uu = num(now + tonumber(ARGV[7]))
  ttl = rel
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'fp', ARGV[3], 'obt', num(now + tonumber(ARGV[4])), 'exp', exp,
  'rat', rat, 'uu', uu, 'fence', fenceOf(ARGV[1]))
redis.call('PEXPIRE', KEYS[1], ms(ttl))
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[4])
return {'stored'}
`
)

/**
 * Records a failed fetch (when the lease's fence is current) so that no cache starts another before the
 * cooldown ends, and releases the lock. The cooldown doubles with each consecutive failure.
 *
 * KEYS: lock, fence, fail. ARGV: lease, cooldown base (ms), cooldown max (ms), the failure, the
 * provider's own retry delay (ms, "" for none), a random number in [0, 1) for jitter.
 * Reply: `{cooldownMillis}` ("0" when fenced out).
 */
export const fail = RedisConnection.script(
  "token failure",
  `${prelude}${fenceOf}
local now = clock()
local cooldown = 0
if redis.call('GET', KEYS[2]) == fenceOf(ARGV[1]) then
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

/** Releases the lock if the lease still holds it. KEYS: lock. ARGV: lease. Reply: 1 or 0. */
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

/**
 * Releases the lock if a read with this owner id took it: sent after a read whose answer never came.
 * KEYS: lock. ARGV: owner. Reply: 1 or 0.
 */
export const releaseOwner = RedisConnection.script(
  "token lock release by owner",
  `
local lease = redis.call('GET', KEYS[1])
if lease and string.sub(lease, -(string.len(ARGV[1]) + 1)) == ':' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`
)

/** Extends the lock if the lease still holds it. KEYS: lock. ARGV: lease, TTL (ms). Reply: 1 or 0. */
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

/** Renews this cache's membership. KEYS: users. ARGV: member, lease (ms). */
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
