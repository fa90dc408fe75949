/**
 * The Lua the limiter's scripts share: the budgets (sliding window, token bucket, fixed window), the
 * learned quotas, and the gate. See `limiterScripts.ts` for the key layout and the scripts themselves.
 */
import { timeHelpers } from "./lua.js"

export const prelude = `${timeHelpers}
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
-- The server's Remaining leaves room for our requests in flight it has not seen yet (inflight: the one
-- reporting excepted): what is left beyond them is what we may send. Moves the external cost of a budget
-- or a learned quota; returns whether it changed.
local function reconcile(x, now, remaining, resetAt, inflight)
  if remaining == nil then return false end
  local ours = x.limit - x.used
  local theirs = remaining - math.max(0, inflight)
  if theirs < ours then
    x.ecost = x.ecost + (ours - theirs)
    local untilT = now + x.window
    if resetAt ~= nil and resetAt > now then untilT = resetAt end
    x.euntil = math.max(x.euntil, untilT)
    return true
  elseif theirs > ours and x.ecost > 0 then
    x.ecost = math.max(0, x.ecost - (theirs - ours))
    return true
  end
  return false
end
local function sw_observe(b, now, remaining, resetAt, cost)
  if not reconcile(b, now, remaining, resetAt, b.nheld - cost) then return end
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
    last = now
  elseif now > last then
    tokens = math.min(b.burst, tokens + (now - last) * b.rate)
    last = now
  end
  -- A clock that stepped back keeps the later instant: refilling from the earlier one would count the
  -- same stretch twice.
  b.tokens = tokens
  b.last = last
end
local function tb_save(b, now)
  if b.tokens + EPS >= b.burst then
    redis.call('DEL', b.key)
    return
  end
  redis.call('HSET', b.key, 'tokens', num(b.tokens), 'last', num(b.last or now))
  redis.call('PEXPIRE', b.key, ms(math.max((b.last or now) - now, 0) + (b.burst - b.tokens) / b.rate + 1000))
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
-- opened, and per slot i: li limit, wi window, si source, ti last seen; p3 pressed, r3 relax instant),
-- then per slot ret and ext, then la (ZSET of the permits of admitted responses, score = answered at).
-- Slots 1 and 2 hold announced limits; slot 3 the limit learned from bare 429s (source 'refused').
local RELAX_WINDOWS = 10
local function learning(spec, k)
  if spec == nil or spec == '' then return nil end
  local f = {}
  for x in string.gmatch(spec, '[^:]+') do f[#f + 1] = x end
  return { replace = f[1] == '1', probe = tonumber(f[2]), window = tonumber(f[3]), held = KEYS[k],
    state = KEYS[k + 1], slots = { { ret = KEYS[k + 2], ext = KEYS[k + 3] }, { ret = KEYS[k + 4], ext = KEYS[k + 5] },
      { ret = KEYS[k + 6], ext = KEYS[k + 7] } }, admitted = KEYS[k + 8] }
end
local function learn_load(L, now, hasBudgets)
  redis.call('ZREMRANGEBYSCORE', L.held, '-inf', num(now))
  L.active = redis.call('ZCARD', L.held)
  local s = redis.call('HMGET', L.state, 'silent', 'opened', 'l1', 'w1', 's1', 't1', 'l2', 'w2', 's2', 't2',
    'l3', 'w3', 's3', 't3', 'p3', 'r3')
  L.silent = tonumber(s[1]) or 0
  L.opened = s[2] == '1'
  L.pressed = s[15] == '1'
  L.relaxAt = tonumber(s[16]) or 0
  L.quotas = {}
  L.announced = 0
  for i = 1, 3 do
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
      if i < 3 then L.announced = L.announced + 1 end
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
local function quota_reconcile(L, q, now, remaining, resetAt, cost)
  if reconcile(q, now, remaining, resetAt, L.active - cost) then quota_save(q, now) end
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
  for _, x in ipairs(L.quotas) do if x.limit == limit and x.slot < 3 then q = x end end
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
-- A bare 429: what the fleet was admitted in the trailing window, with its requests still in flight
-- (the server may have counted them), is at least the server's limit; a later one only lowers it (core's
-- internal/learned.ts says why).
local function learn_refused(L, now, cost)
  local W = math.max(1, math.ceil(L.window))
  redis.call('ZREMRANGEBYSCORE', L.admitted, '-inf', num(now - W))
  local count = redis.call('ZCARD', L.admitted)
  local flying = math.max(0, L.active - cost)
  if count + flying == 0 then return end
  local limit = count + flying
  local q = L.slots[3]
  if q.limit == nil then
    -- The answers in the window hold their permits as if the quota had existed all along.
    redis.call('DEL', q.ret, q.ext)
    local items = redis.call('ZRANGE', L.admitted, 0, -1, 'WITHSCORES')
    for i = 1, #items, 2 do redis.call('ZADD', q.ret, num(tonumber(items[i + 1]) + W), items[i]) end
    zttl(q.ret, now)
    q.limit = limit
    q.window = W
  elseif limit < q.limit then
    q.limit = limit
  end
  redis.call('HSET', L.state, 'l3', num(q.limit), 'w3', num(W), 's3', 'refused', 't3', num(now), 'p3', '0',
    'r3', num(now + RELAX_WINDOWS * W))
  redis.call('PEXPIRE', L.state, 24 * 3600 * 1000)
  L.pressed = false
  L.relaxAt = now + RELAX_WINDOWS * W
end
local function learn_admitted(L, now, id, cost)
  local W = math.max(1, math.ceil(L.window))
  redis.call('ZREMRANGEBYSCORE', L.admitted, '-inf', num(now - W))
  for k = 1, cost do redis.call('ZADD', L.admitted, num(now), member(id, k)) end
  redis.call('PEXPIRE', L.admitted, ms(W + 1000))
end
-- Another stretch without a refusal: one more request per window, if the quota held any back.
local function learn_relax(L, now, ceiling)
  local q = L.slots[3]
  if q.limit == nil or now < L.relaxAt then return end
  if L.pressed and q.limit < ceiling then q.limit = q.limit + 1 end
  redis.call('HSET', L.state, 'l3', num(q.limit), 'p3', '0', 'r3', num(now + RELAX_WINDOWS * q.window))
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
