/**
 * The shared limiter's Lua scripts. One lane (one limiter, or one key of a keyed limiter) owns a gate
 * key and the keys of its budgets, all under one hash tag, and every script receives all of them in
 * KEYS. Time inside a script is the server's `TIME` and nothing else; callers pass only durations.
 *
 * KEYS[1] is the lane's gate (STRING: the instant it opens; TTL until then) and KEYS[2] its epoch (STRING: a
 * random id, TTL one day renewed on every acquisition). An epoch that differs from the one a process saw
 * last means Redis lost the lane's state (a restart without persistence, a failover, a flush): the
 * budget then looks whole while the provider still counts recent requests, so the gate closes for one
 * quarantine period (the longest window, or a full refill of a bucket).
 *
 * Budget specs travel in ARGV[1] as `kind:param:param|…`, keys in the same order in KEYS[3..]:
 *
 * - `sw:limit:window` (sliding window) — keys `held` (ZSET of permits in flight, score = lease end +
 *   window), `ret` (ZSET of settled permits, score = the instant the permit returns) and `ext` (HASH
 *   `cost`, `until`: requests the server counted that we did not send);
 * - `tb:perMillis:burst` (token bucket) — key `bucket` (HASH `tokens`, `last`; absent means full);
 * - `fw:limit:window:offset` (fixed window) — keys `state` (HASH `idx`, `count`, `offset`) and `held`
 *   (ZSET of permits in flight, score = lease end).
 *
 * A permit of cost `c` is `c` members: `id`, `id#2` … `id#c`. Every key gets a TTL on every write.
 */
import * as RedisConnection from "../RedisConnection.js"
import { prelude } from "./limiterLua.js"

/**
 * Takes a permit if the gate is open, this request heads the fleet's queue, and every budget (configured
 * and learned) can admit it now; otherwise answers the earliest instant it might (exact for settled
 * permits, refills and the gate; a lower bound when it depends on permits still in flight).
 *
 * ARGV: spec, permit id, cost, lease (ms), ahead (cost queued before this one, for predictions), take
 * ("1" to take, "0" to only predict), the epoch this process saw last ("" for none), a fresh epoch id,
 * the epoch's TTL (ms), the quarantine (ms); then, each optional: 11 the request's place (server ms),
 * 12 this process's queue ticket, 13 the place of its next request ("" for none), 14 the instant past
 * which this command is stale (the caller gave up on it: a command run late takes nothing), 15 the
 * queue entry's TTL (ms), 16 the learning spec `replace:probe:window`. KEYS: gate, epoch, the budgets'
 * keys, then the queue's two keys, then the learning keys (every script lays its keys out the same way;
 * the queue's and the learning keys may be left out when ARGV says no queue and no learning).
 *
 * Reply: `{"1", now, gate, fixedWindowIndexes, epoch, viaConfigured, capacity}` when granted,
 * `{"0", now, gate, earliest, epoch, "", capacity}` otherwise.
 */
export const acquire = RedisConnection.script(
  "limiter acquire",
  `${prelude}
local now = clock()
local bs, k = budgets(ARGV[1])
local id, cost, lease = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local ahead, take = tonumber(ARGV[5]), ARGV[6] == '1'
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[8]
  redis.call('SET', KEYS[2], epoch, 'PX', ARGV[9])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
local gate = gate_of(now)
if ARGV[14] and ARGV[14] ~= '' and now > tonumber(ARGV[14]) then
  return {'0', num(now), num(gate), num(now), epoch, '', 'inf'}
end
if ARGV[7] ~= '' and ARGV[7] ~= epoch then gate = pause(now, now + tonumber(ARGV[10])) end
local queued = ARGV[12] ~= nil and ARGV[12] ~= ''
local qk, qek = KEYS[k], KEYS[k + 1]
local L = learning(ARGV[16], k + 2)
local at = now
if gate > at then at = gate end
local free = true
local useConfigured = true
local capacity = math.huge
if L then
  learn_load(L, now, #bs > 0)
  if L.replace and L.announced > 0 then useConfigured = false end
  if L.probing then
    capacity = L.probe
    if L.active + cost + ahead > L.probe then free = false; at = math.max(at, now + 100) end
  end
  for _, q in ipairs(L.quotas) do
    capacity = math.min(capacity, q.limit)
    local t = quota_earliest(L, q, now, cost + ahead)
    if t > now then
      free = false
      if q.slot == 3 and take and not L.pressed then redis.call('HSET', L.state, 'p3', '1'); L.pressed = true end
    end
    if t > at then at = t end
  end
end
if useConfigured then
  for _, b in ipairs(bs) do
    load(b, now)
    capacity = math.min(capacity, b.cap)
    local t = earliest(b, now, cost + ahead)
    if t > now then free = false end
    if t > at then at = t end
  end
end
local cap = 'inf'
if capacity < math.huge then cap = num(capacity) end
if take and queued then
  -- The fleet's queue: one entry per process, at the place of its head. A process whose head is not the
  -- first place waits its turn even when the budget is free.
  local dead = redis.call('ZRANGEBYSCORE', qek, '-inf', num(now))
  for _, m in ipairs(dead) do redis.call('ZREM', qk, m); redis.call('ZREM', qek, m) end
  redis.call('ZADD', qk, ARGV[11], ARGV[12])
  redis.call('ZADD', qek, num(now + tonumber(ARGV[15])), ARGV[12])
  redis.call('PEXPIRE', qk, ARGV[15]); redis.call('PEXPIRE', qek, ARGV[15])
  local first = redis.call('ZRANGE', qk, 0, 0, 'WITHSCORES')
  if first[1] ~= ARGV[12] and tonumber(first[2]) < tonumber(ARGV[11]) then
    return {'0', num(now), num(gate), num(math.max(at, now + 20)), epoch, '', cap}
  end
end
if take and free and gate <= now then
  local idxs = {}
  if useConfigured then
    for _, b in ipairs(bs) do
      if b.kind == 'sw' then sw_take(b, now, id, cost, lease)
      elseif b.kind == 'tb' then tb_take(b, now, cost)
      else
        fw_take(b, now, id, cost, lease)
        idxs[#idxs + 1] = num(b.idx)
      end
    end
  end
  if L then learn_take(L, now, id, cost, lease) end
  if queued then
    if ARGV[13] ~= '' then
      redis.call('ZADD', qk, ARGV[13], ARGV[12])
    else
      redis.call('ZREM', qk, ARGV[12]); redis.call('ZREM', qek, ARGV[12])
    end
  end
  local via = '0'
  if useConfigured then via = '1' end
  return {'1', num(now), num(gate), table.concat(idxs, ','), epoch, via, cap}
end
return {'0', num(now), num(gate), num(at), epoch, '', cap}
`
)

/** This process has nobody waiting any more: its place in the fleet's queue goes. KEYS: queue, expiry. */
export const withdraw = RedisConnection.script(
  "limiter withdraw",
  `redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`
)

/**
 * The request that held the permit got its response: sliding-window permits start their window now.
 * ARGV: spec, id, cost, then optionally 4 "0" when the configured budgets did not take it, 5 the
 * learning spec (its keys follow the budgets').
 */
export const settle = RedisConnection.script(
  "limiter settle",
  `${prelude}
local now = clock()
local bs, k = budgets(ARGV[1])
local id, cost = ARGV[2], tonumber(ARGV[3])
if ARGV[4] ~= '0' then
  for _, b in ipairs(bs) do
    if b.kind == 'sw' then sw_settle(b, now, id, cost)
    elseif b.kind == 'fw' then fw_settle(b, now, id, cost) end
  end
end
local L = learning(ARGV[5], k + 2)
if L then
  learn_load(L, now, #bs > 0)
  learn_release(L, now, id, cost, true)
end
return {num(now)}
`
)

/**
 * The permit was taken but its request never sent: give it back. ARGV[4] lists fixed-window indexes;
 * then optionally 5 "0" when the configured budgets did not take it, 6 the learning spec.
 */
export const refund = RedisConnection.script(
  "limiter refund",
  `${prelude}
local now = clock()
local bs, k = budgets(ARGV[1])
local id, cost = ARGV[2], tonumber(ARGV[3])
if ARGV[5] ~= '0' then
  local idxs = {}
  for x in string.gmatch(ARGV[4] or '', '[^,]+') do idxs[#idxs + 1] = tonumber(x) end
  local f = 0
  for _, b in ipairs(bs) do
    if b.kind == 'sw' then sw_refund(b, now, id, cost)
    elseif b.kind == 'tb' then
      tb_load(b, now)
      tb_refund(b, now, cost)
    else
      f = f + 1
      fw_refund(b, now, id, cost, idxs[f])
    end
  end
end
local L = learning(ARGV[6], k + 2)
if L then learn_release(L, now, id, cost, false) end
return {num(now)}
`
)

/**
 * Extends the leases of permits still in flight. ARGV: spec, lease, learning spec ("" for none), then
 * `id:cost` pairs.
 */
export const renew = RedisConnection.script(
  "limiter renew",
  `${prelude}
local now = clock()
local bs, k = budgets(ARGV[1])
local lease = tonumber(ARGV[2])
local L = learning(ARGV[3], k + 2)
for i = 4, #ARGV do
  local sep = string.find(ARGV[i], ':', 1, true)
  local id = string.sub(ARGV[i], 1, sep - 1)
  local cost = tonumber(string.sub(ARGV[i], sep + 1))
  for _, b in ipairs(bs) do
    if b.kind == 'sw' then sw_renew(b, now, id, cost, lease)
    elseif b.kind == 'fw' then fw_renew(b, now, id, cost, lease) end
  end
  if L then
    for j = 1, cost do redis.call('ZADD', L.held, 'XX', 'GT', num(now + lease), member(id, j)) end
  end
end
if L then zttl(L.held, now) end
return {num(now)}
`
)

/**
 * What a response said: fewer `Remaining` than we count tightens the budgets named by the mask, an
 * announced limit teaches (or reshapes) a learned quota, a response that said nothing counts towards
 * giving up probing, and `Remaining: 0` closes the gate until the reset (or one period). ARGV: spec,
 * mask ("1" per budget that learns), remaining ("" when unknown), reset delay in ms ("" when unknown),
 * period (ms); optionally 6 the learning spec, 7 the announced limit, 8 the announced window (ms),
 * 9 the cost of the request that got the response, 10 what the response was ("a" admitted, "b" a bare
 * 429, "r" a 429 that said more; "" unknown), 11 an id for the admitted permits.
 */
export const observe = RedisConnection.script(
  "limiter observe",
  `${prelude}
local now = clock()
local bs, k = budgets(ARGV[1])
local mask = ARGV[2]
local remaining = tonumber(ARGV[3])
local resetAt = nil
if ARGV[4] ~= '' then resetAt = now + tonumber(ARGV[4]) end
local period = tonumber(ARGV[5])
local L = learning(ARGV[6], k + 2)
local limit = tonumber(ARGV[7] or '')
if L then
  learn_load(L, now, #bs > 0)
  local cost = tonumber(ARGV[9] or '1') or 1
  local answer = ARGV[10] or ''
  if answer == 'a' then learn_admitted(L, now, ARGV[11], cost)
  elseif answer == 'b' then learn_refused(L, now, cost) end
  local ceiling = math.huge
  if not (L.replace and L.announced > 0) then for _, b in ipairs(bs) do ceiling = math.min(ceiling, b.cap) end end
  learn_relax(L, now, ceiling)
  learn_observe(L, now, limit, remaining, resetAt, tonumber(ARGV[8] or ''), cost)
end
for i, b in ipairs(bs) do
  if string.sub(mask, i, i) == '1' then
    load(b, now)
    local cost = tonumber(ARGV[9] or '1') or 1
    if b.kind == 'sw' then sw_observe(b, now, remaining, resetAt, cost)
    elseif b.kind == 'tb' then tb_observe(b, now, remaining)
    else fw_observe(b, now, remaining, resetAt, cost) end
  end
end
local gate = gate_of(now)
if remaining == 0 then
  local untilT = now + period
  if resetAt ~= nil and resetAt > now then untilT = resetAt end
  gate = pause(now, untilT)
end
return {num(now), num(gate)}
`
)

/** Closes the gate until now + ARGV[1] ms; it only ever moves later. Reply: `{now, gate}`. */
export const pauseUntil = RedisConnection.script(
  "limiter pause",
  `${prelude}
local now = clock()
local gate = pause(now, now + tonumber(ARGV[1]))
return {num(now), num(gate)}
`
)

/** Reads the gate. Reply: `{now, gate}`. */
export const readGate = RedisConnection.script(
  "limiter gate",
  `${prelude}
local now = clock()
return {num(now), num(gate_of(now))}
`
)
