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
import { timeHelpers } from "./lua.js"

const prelude = `${timeHelpers}
local EPS = 1e-9
local function member(id, k)
  if k == 1 then return id end
  return id .. '#' .. k
end

local function budgets(spec)
  local list = {}
  local k = 3
  for part in string.gmatch(spec, '[^|]+') do
    local f = {}
    for x in string.gmatch(part, '[^:]+') do f[#f + 1] = x end
    local b = { kind = f[1] }
    if b.kind == 'sw' then
      b.limit = tonumber(f[2]); b.window = tonumber(f[3]); b.cap = b.limit
      b.held = KEYS[k]; b.ret = KEYS[k + 1]; b.ext = KEYS[k + 2]; k = k + 3
    elseif b.kind == 'tb' then
      b.rate = tonumber(f[2]); b.burst = tonumber(f[3]); b.cap = b.burst
      b.key = KEYS[k]; k = k + 1
    elseif b.kind == 'fw' then
      b.limit = tonumber(f[2]); b.window = tonumber(f[3]); b.offset = tonumber(f[4]); b.cap = b.limit
      b.state = KEYS[k]; b.held = KEYS[k + 1]; k = k + 2
    else
      error('unknown budget kind ' .. tostring(b.kind))
    end
    list[#list + 1] = b
  end
  return list, k
end

local function zttl(key, now)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIRE', key, ms(tonumber(last[2]) - now + 1000)) end
end

-- sliding window
local function sw_load(b, now)
  redis.call('ZREMRANGEBYSCORE', b.held, '-inf', num(now))
  redis.call('ZREMRANGEBYSCORE', b.ret, '-inf', num(now))
  local e = redis.call('HMGET', b.ext, 'cost', 'until')
  b.ecost = tonumber(e[1]) or 0
  b.euntil = tonumber(e[2]) or 0
  if b.euntil <= now then b.ecost = 0 end
  b.nheld = redis.call('ZCARD', b.held)
  b.nret = redis.call('ZCARD', b.ret)
  b.used = b.nheld + b.nret + b.ecost
end
local function sw_earliest(b, now, cost)
  local need = b.used + cost - b.limit
  if need <= 0 then return now end
  local items = redis.call('ZRANGE', b.ret, 0, need - 1, 'WITHSCORES')
  local freed, i, extPending = 0, 1, b.ecost > 0
  local lastKnown = now
  while true do
    local release = math.huge
    if i <= #items then release = tonumber(items[i + 1]) end
    local ext = math.huge
    if extPending then ext = b.euntil end
    if release == math.huge and ext == math.huge then break end
    if ext <= release then
      freed = freed + b.ecost; extPending = false; lastKnown = ext
      if freed >= need then return ext end
    else
      freed = freed + 1; i = i + 2; lastKnown = release
      if freed >= need then return release end
    end
  end
  -- The rest must come from permits in flight: each returns a full window after a response that has
  -- not come yet (or when its lease runs out). A lower bound; the caller asks again then.
  local unscheduled = need - freed
  local at
  if unscheduled <= b.nheld then
    at = now + b.window
    local h = redis.call('ZRANGE', b.held, unscheduled - 1, unscheduled - 1, 'WITHSCORES')
    if h[2] then at = math.min(at, tonumber(h[2])) end
  else
    at = now + math.max(1, math.ceil(unscheduled / b.limit)) * b.window
  end
  return math.max(at, lastKnown)
end
local function sw_take(b, now, id, cost, lease)
  for k = 1, cost do redis.call('ZADD', b.held, num(now + lease + b.window), member(id, k)) end
  zttl(b.held, now)
end
local function sw_settle(b, now, id, cost)
  -- Added to the returns even when no longer held (its lease ran out, or Redis lost it): counting a
  -- permit one window after its response is never wrong, only cautious.
  for k = 1, cost do
    local m = member(id, k)
    redis.call('ZREM', b.held, m)
    redis.call('ZADD', b.ret, num(now + b.window), m)
  end
  zttl(b.ret, now)
end
local function sw_refund(b, now, id, cost)
  for k = 1, cost do redis.call('ZREM', b.held, member(id, k)) end
end
local function sw_renew(b, now, id, cost, lease)
  for k = 1, cost do redis.call('ZADD', b.held, 'XX', 'GT', num(now + lease + b.window), member(id, k)) end
  zttl(b.held, now)
end
-- Our requests in flight other than the one reporting were not counted in the server's Remaining yet.
local function sw_observe(b, now, remaining, resetAt, cost)
  if remaining == nil then return end
  local ours = b.limit - b.used
  local theirs = remaining - math.max(0, b.nheld - cost)
  if theirs < ours then
    b.ecost = b.ecost + (ours - theirs)
    local untilT = now + b.window
    if resetAt ~= nil and resetAt > now then untilT = resetAt end
    b.euntil = math.max(b.euntil, untilT)
  elseif theirs > ours and b.ecost > 0 then
    b.ecost = math.max(0, b.ecost - (theirs - ours))
  else
    return
  end
  b.used = b.nheld + b.nret + b.ecost
  redis.call('HSET', b.ext, 'cost', num(b.ecost), 'until', num(b.euntil))
  redis.call('PEXPIRE', b.ext, ms(math.max(b.euntil - now, 0) + 1))
end

-- token bucket
local function tb_load(b, now)
  local s = redis.call('HMGET', b.key, 'tokens', 'last')
  local tokens, last = tonumber(s[1]), tonumber(s[2])
  if tokens == nil or last == nil then
    tokens = b.burst
  elseif now > last then
    tokens = math.min(b.burst, tokens + (now - last) * b.rate)
  end
  b.tokens = tokens
end
local function tb_save(b, now)
  if b.tokens + EPS >= b.burst then
    redis.call('DEL', b.key)
    return
  end
  redis.call('HSET', b.key, 'tokens', num(b.tokens), 'last', num(now))
  redis.call('PEXPIRE', b.key, ms((b.burst - b.tokens) / b.rate + 1000))
end
local function tb_earliest(b, now, cost)
  if b.tokens + EPS >= cost then return now end
  return now + (cost - b.tokens) / b.rate
end
local function tb_take(b, now, cost)
  b.tokens = math.max(0, b.tokens - cost)
  tb_save(b, now)
end
local function tb_refund(b, now, cost)
  b.tokens = math.min(b.burst, b.tokens + cost)
  tb_save(b, now)
end
local function tb_observe(b, now, remaining)
  if remaining ~= nil and remaining < math.floor(b.tokens) then
    b.tokens = remaining
    tb_save(b, now)
  end
end

-- fixed window
local function fw_load(b, now)
  redis.call('ZREMRANGEBYSCORE', b.held, '-inf', num(now))
  local s = redis.call('HMGET', b.state, 'idx', 'count', 'offset')
  b.offset = tonumber(s[3]) or b.offset
  b.idx = tonumber(s[1])
  b.count = tonumber(s[2]) or 0
  b.active = redis.call('ZCARD', b.held)
  local cur = math.floor((now - b.offset) / b.window)
  -- A clock that steps back stays in the later window: counting there is the cautious choice.
  if b.idx == nil or cur > b.idx then
    b.idx = cur
    b.count = b.active
  end
end
local function fw_end(b) return (b.idx + 1) * b.window + b.offset end
local function fw_save(b, now)
  redis.call('HSET', b.state, 'idx', num(b.idx), 'count', num(b.count), 'offset', num(b.offset))
  redis.call('PEXPIRE', b.state, ms(fw_end(b) - now + b.window))
end
local function fw_earliest(b, now, cost)
  if b.count + cost <= b.limit then return now end
  return fw_end(b)
end
local function fw_take(b, now, id, cost, lease)
  b.count = b.count + cost
  for k = 1, cost do redis.call('ZADD', b.held, num(now + lease), member(id, k)) end
  zttl(b.held, now)
  fw_save(b, now)
end
local function fw_settle(b, now, id, cost)
  -- The window may have turned while this request was in flight: it counts in the new one too.
  fw_load(b, now)
  fw_save(b, now)
  for k = 1, cost do redis.call('ZREM', b.held, member(id, k)) end
end
local function fw_refund(b, now, id, cost, takenIdx)
  for k = 1, cost do redis.call('ZREM', b.held, member(id, k)) end
  fw_load(b, now)
  if takenIdx ~= nil and takenIdx == b.idx then
    b.count = math.max(0, b.count - cost)
    fw_save(b, now)
  end
end
local function fw_renew(b, now, id, cost, lease)
  for k = 1, cost do redis.call('ZADD', b.held, 'XX', 'GT', num(now + lease), member(id, k)) end
  zttl(b.held, now)
end
local function fw_observe(b, now, remaining, resetAt, cost)
  if resetAt ~= nil and resetAt > now and resetAt <= now + b.window and math.abs(resetAt - fw_end(b)) > 0.5 then
    b.offset = resetAt % b.window
    b.idx = math.floor((now - b.offset) / b.window)
  end
  if remaining ~= nil then
    local counted = b.limit - remaining + math.max(0, b.active - cost)
    if counted > b.count then b.count = math.min(counted, b.limit) end
  end
  fw_save(b, now)
end

local function load(b, now)
  if b.kind == 'sw' then sw_load(b, now) elseif b.kind == 'tb' then tb_load(b, now) else fw_load(b, now) end
end
local function earliest(b, now, cost)
  if b.kind == 'sw' then return sw_earliest(b, now, cost) end
  if b.kind == 'tb' then return tb_earliest(b, now, cost) end
  return fw_earliest(b, now, cost)
end
local function gate_of(now)
  local g = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  return g
end

-- learned quotas: what the server announced, beside the configured budgets. Keys (after the budgets'
-- and the queue's): lh (ZSET of this lane's permits in flight, score = lease end), lq (HASH: silent,
-- opened, and per slot i: li limit, wi window, si source, ti last seen), then per slot ret and ext.
local function learning(spec, k)
  if spec == nil or spec == '' then return nil end
  local f = {}
  for x in string.gmatch(spec, '[^:]+') do f[#f + 1] = x end
  return { replace = f[1] == '1', probe = tonumber(f[2]), window = tonumber(f[3]), held = KEYS[k],
    state = KEYS[k + 1], slots = { { ret = KEYS[k + 2], ext = KEYS[k + 3] }, { ret = KEYS[k + 4], ext = KEYS[k + 5] } } }
end
local function learn_load(L, now, hasBudgets)
  redis.call('ZREMRANGEBYSCORE', L.held, '-inf', num(now))
  L.active = redis.call('ZCARD', L.held)
  local s = redis.call('HMGET', L.state, 'silent', 'opened', 'l1', 'w1', 's1', 't1', 'l2', 'w2', 's2', 't2')
  L.silent = tonumber(s[1]) or 0
  L.opened = s[2] == '1'
  L.quotas = {}
  for i = 1, 2 do
    local limit = tonumber(s[3 + (i - 1) * 4])
    local q = L.slots[i]
    q.slot = i
    q.limit = limit
    if limit then
      q.window = tonumber(s[4 + (i - 1) * 4]); q.src = s[5 + (i - 1) * 4]; q.seen = tonumber(s[6 + (i - 1) * 4]) or 0
      redis.call('ZREMRANGEBYSCORE', q.ret, '-inf', num(now))
      local e = redis.call('HMGET', q.ext, 'cost', 'until')
      q.ecost = tonumber(e[1]) or 0
      q.euntil = tonumber(e[2]) or 0
      if q.euntil <= now then q.ecost = 0 end
      q.pending = redis.call('ZCARD', q.ret)
      q.used = L.active + q.pending + q.ecost
      L.quotas[#L.quotas + 1] = q
    end
  end
  L.probing = (not hasBudgets) and #L.quotas == 0 and not L.opened
end
local function quota_earliest(L, q, now, cost)
  return sw_earliest({ limit = q.limit, window = q.window, used = q.used, ret = q.ret, ecost = q.ecost,
    euntil = q.euntil, nheld = L.active, held = L.held }, now, cost)
end
local function quota_save(q, now)
  redis.call('HSET', q.ext, 'cost', num(q.ecost), 'until', num(q.euntil))
  redis.call('PEXPIRE', q.ext, ms(q.euntil - now + 1))
end
local function learn_take(L, now, id, cost, lease)
  for k = 1, cost do redis.call('ZADD', L.held, num(now + lease), member(id, k)) end
  zttl(L.held, now)
end
local function learn_release(L, now, id, cost, settled)
  for k = 1, cost do
    local m = member(id, k)
    redis.call('ZREM', L.held, m)
    if settled then
      for _, q in ipairs(L.quotas) do redis.call('ZADD', q.ret, num(now + q.window), m) end
    end
  end
  if settled then for _, q in ipairs(L.quotas) do zttl(q.ret, now) end end
end
-- The server's Remaining leaves room for our requests it has not seen yet: beyond them is what we may send.
local function quota_reconcile(L, q, now, remaining, resetAt, cost)
  if remaining == nil then return end
  local ours = q.limit - q.used
  local theirs = remaining - math.max(0, L.active - cost)
  if theirs < ours then
    q.ecost = q.ecost + (ours - theirs)
    local untilT = now + q.window
    if resetAt ~= nil and resetAt > now then untilT = resetAt end
    q.euntil = math.max(q.euntil, untilT)
    quota_save(q, now)
  elseif theirs > ours and q.ecost > 0 then
    q.ecost = math.max(0, q.ecost - (theirs - ours))
    quota_save(q, now)
  end
end
local function learn_observe(L, now, limit, remaining, resetAt, window, cost)
  local ttl = 24 * 3600 * 1000
  if limit == nil and remaining == nil and resetAt == nil then
    if L.probing then
      L.silent = L.silent + 1
      redis.call('HSET', L.state, 'silent', L.silent)
      if L.silent >= L.probe then redis.call('HSET', L.state, 'opened', '1') end
      redis.call('PEXPIRE', L.state, ttl)
    end
    return
  end
  if limit == nil or limit < 1 then
    for _, q in ipairs(L.quotas) do quota_reconcile(L, q, now, remaining, resetAt, cost) end
    return
  end
  limit = math.floor(limit)
  local untilReset = nil
  if resetAt ~= nil and resetAt > now then untilReset = resetAt - now end
  local q = nil
  for _, x in ipairs(L.quotas) do if x.limit == limit then q = x end end
  if q == nil then
    q = L.slots[1]
    if L.slots[1].limit ~= nil then
      q = L.slots[2]
      if L.slots[2].limit ~= nil and L.slots[2].seen > L.slots[1].seen then q = L.slots[1] end
    end
    q.limit = limit
    q.window = window or untilReset or L.window
    q.src = 'assumed'
    if window then q.src = 'policy' elseif untilReset then q.src = 'reset' end
    redis.call('DEL', q.ret, q.ext)
    q.ecost = 0; q.euntil = 0; q.pending = 0; q.used = L.active
  elseif window ~= nil then
    q.window = window; q.src = 'policy'
  elseif untilReset ~= nil and q.src ~= 'policy' and (q.src == 'assumed' or untilReset > q.window) then
    q.window = untilReset; q.src = 'reset'
  end
  q.window = math.max(1, math.ceil(q.window))
  q.seen = now
  local i = q.slot
  redis.call('HSET', L.state, 'l' .. i, num(q.limit), 'w' .. i, num(q.window), 's' .. i, q.src, 't' .. i, num(now))
  redis.call('PEXPIRE', L.state, ttl)
  quota_reconcile(L, q, now, remaining, resetAt, cost)
end
local function pause(now, untilT)
  local g = gate_of(now)
  if untilT > g and untilT > now then
    redis.call('SET', KEYS[1], num(untilT), 'PX', ms(untilT - now))
    return untilT
  end
  return g
end
`

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
  if L.replace and #L.quotas > 0 then useConfigured = false end
  if L.probing then
    capacity = L.probe
    if L.active + cost + ahead > L.probe then free = false; at = math.max(at, now + 100) end
  end
  for _, q in ipairs(L.quotas) do
    capacity = math.min(capacity, q.limit)
    local t = quota_earliest(L, q, now, cost + ahead)
    if t > now then free = false end
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
 * 9 the cost of the request that got the response.
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
  learn_observe(L, now, limit, remaining, resetAt, tonumber(ARGV[8] or ''), tonumber(ARGV[9] or '1') or 1)
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
