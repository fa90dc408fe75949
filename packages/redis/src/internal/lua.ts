/**
 * Lua helpers every script of this package starts with: the server's clock (`TIME`, in milliseconds with
 * a fraction) as the only source of instants, and number formatting that survives the trip back through
 * RESP (`num` keeps full precision; `ms` is a whole, positive TTL for `PEXPIRE`).
 */
export const timeHelpers = `
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function num(x) return string.format('%.17g', x) end
local function ms(x)
  local v = math.ceil(x)
  if v < 1 then v = 1 end
  return string.format('%d', v)
end
`
