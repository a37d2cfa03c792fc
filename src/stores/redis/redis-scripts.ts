import type { Cluster, Redis } from "ioredis";
import { SESSION_FIXED_LENGTH, SESSION_FLAGS, SESSION_LAYOUT } from "./session-codec.js";

/**
 * The Lua scripts behind the Redis store. Each runs atomically on the node
 * that owns its one key, so every read-check-write below is free of lost
 * updates without WATCH loops, and the same code works on Redis Cluster.
 * They are loaded with `defineCommand` (EVALSHA, falling back to EVAL once
 * per connection).
 *
 * One hash per slot tag holds every session of the user(s) with that tag
 * (see `redis-store.ts` for why a hash, not a key per session). Fields:
 *
 * - a session id without its tag (22 characters) → the packed session;
 * - `u` → the snapshot of the user who owns the sessions without an inline
 *   owner id; `u:<id>` → snapshots of other users sharing the tag;
 * - `a` + 6 bytes → a user-agent text, shared by the sessions that name it;
 * - `d` → the Redis time (ms) of the last revocation or role change: a
 *   refill read from the database before it is refused;
 * - `w` → the earliest database read behind anything cached here (tiered
 *   store): older than the last outage flush means stale;
 * - `c` → the cursor of the incremental expiry sweep.
 *
 * Times compared with session expiries inside scripts are Redis's own clock
 * (TIME): the same clock its native TTLs run on.
 */
const L = SESSION_LAYOUT;
/**
 * The session value's offsets as Lua constants, generated from the codec's
 * layout table (Lua strings are 1-based, hence the + 1). The scripts below
 * name these, never a number.
 */
export const LUA_SESSION_LAYOUT = `
local AT_IDLE, AT_ABS, AT_LAST = ${L.idleExpiresAt.offset + 1}, ${L.absoluteExpiresAt.offset + 1}, ${L.lastSeenAt.offset + 1}
local FIXED, VAR = ${SESSION_FIXED_LENGTH}, ${SESSION_FIXED_LENGTH + 1}
local F_OWNER, F_AGENT_REF = ${SESSION_FLAGS.ownerInline}, ${SESSION_FLAGS.agentRef}
`;

const PRELUDE = `${LUA_SESSION_LAYOUT}
local GRACE = 60000
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%.0f', n) end
local function u48(s, i)
  local a, b, c, d, e, f = string.byte(s, i, i + 5)
  return ((((a * 256 + b) * 256 + c) * 256 + d) * 256 + e) * 256 + f
end
local function p48(n)
  local t = {}
  for i = 6, 1, -1 do t[i] = n % 256; n = math.floor(n / 256) end
  return string.char(t[1], t[2], t[3], t[4], t[5], t[6])
end
local function is_session(f) return #f == 22 and not string.find(f, ':', 1, true) end
local function is_agent(f) return #f == 7 and string.sub(f, 1, 1) == 'a' end
local function expires(v)
  local i, a = u48(v, AT_IDLE), u48(v, AT_ABS)
  if i < a then return i end
  return a
end
local function inline_owner(v)
  if bit.band(string.byte(v, 1), F_OWNER) == 0 then return nil end
  return string.sub(v, VAR, VAR + string.byte(v, VAR))
end
local function agent_field(v)
  local flags = string.byte(v, 1)
  if bit.band(flags, F_AGENT_REF) == 0 then return nil end
  local pos = VAR
  if bit.band(flags, F_OWNER) == F_OWNER then pos = pos + 1 + string.byte(v, VAR) end
  return 'a' .. string.sub(v, pos, pos + 5)
end
local function snap_owner(s) return string.sub(s, 2, 2 + string.byte(s, 2)) end
local function snap_field(k, owner)
  local primary = redis.call('HGET', k, 'u')
  if primary and snap_owner(primary) == owner then return 'u', primary end
  local f = 'u:' .. string.sub(owner, 2)
  return f, redis.call('HGET', k, f), primary
end
-- Never shortens a TTL, and every write below ends with one: no key here
-- is ever left without an expiry.
local function extend(k, at)
  if redis.call('PEXPIRETIME', k) < at then redis.call('PEXPIREAT', k, fmt(at)) end
end
local function mark(k, t)
  redis.call('HSET', k, 'd', fmt(t))
  extend(k, t + GRACE)
end
-- Drops everything cached under k except a marker young enough to still
-- refuse racing refills.
local function wipe(k, t)
  local d = redis.call('HGET', k, 'd')
  redis.call('DEL', k)
  if d and tonumber(d) + GRACE > t then
    redis.call('HSET', k, 'd', d)
    redis.call('PEXPIREAT', k, fmt(tonumber(d) + GRACE))
  end
end
local function collapse(k, t)
  if redis.call('HLEN', k) > 32 then return end
  for _, f in ipairs(redis.call('HKEYS', k)) do
    if is_session(f) then return end
  end
  wipe(k, t)
end
local function stale_epoch(k, epoch)
  if epoch <= 0 then return false end
  local w = redis.call('HGET', k, 'w')
  return (not w) or tonumber(w) < epoch
end
-- Bounded work per write: a user with 100,000 sessions must not make each
-- sign-in scan them all. Small (listpack) hashes come back whole.
local function prune_some(k, t)
  local r = redis.call('HSCAN', k, redis.call('HGET', k, 'c') or '0', 'COUNT', 16)
  local items = r[2]
  for i = 1, #items, 2 do
    if is_session(items[i]) and expires(items[i + 1]) <= t then redis.call('HDEL', k, items[i]) end
  end
  if r[1] == '0' then redis.call('HDEL', k, 'c') else redis.call('HSET', k, 'c', r[1]) end
end
-- One pass over HGETALL output: deletes sessions for which drop(f, v)
-- holds, frees agent texts nobody refers to any more, and wipes the key
-- when no session is left. Returns the number dropped and the survivors.
local function pass(k, all, t, drop)
  local dropped, live, used, agents, texts = 0, {}, {}, {}, {}
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    if is_session(f) then
      if drop(f, v) then
        redis.call('HDEL', k, f)
        dropped = dropped + 1
      else
        live[#live + 1] = f
        live[#live + 1] = v
        local a = agent_field(v)
        if a then used[a] = true end
      end
    elseif is_agent(f) then
      agents[#agents + 1] = f
      texts[f] = v
    end
  end
  for _, a in ipairs(agents) do
    if not used[a] then redis.call('HDEL', k, a) end
  end
  if #live == 0 and #all > 0 then wipe(k, t) end
  return dropped, live, texts
end
`;

/** KEYS: hash. ARGV: field, epoch. → {time} on a miss, else {time, value, snapshot|nil, agent|nil}. */
const FIND = `
local k = KEYS[1]
local t = now_ms()
local v = redis.call('HGET', k, ARGV[1])
if not v then return {t} end
if stale_epoch(k, tonumber(ARGV[2])) then
  wipe(k, t)
  return {t}
end
local o = inline_owner(v)
local s
if o then s = redis.call('HGET', k, 'u:' .. string.sub(o, 2)) else s = redis.call('HGET', k, 'u') end
local a = agent_field(v)
local text = false
if a then text = redis.call('HGET', k, a) end
return {t, v, s or false, text or false}
`;

/**
 * KEYS: hash. ARGV: field, value by reference, value inline, agent field,
 * agent text, owner, snapshot or '', readAt or '', expiresAt, epoch, mode
 * ('create' | 'refill'), replaced field or '', stamp ('1' to keep w).
 * → {'ok'} | {'raced'} | {'gone'} | {'user', time}.
 */
const PUT = `
local k, f = KEYS[1], ARGV[1]
local owner, snap, readAt, mode, old = ARGV[6], ARGV[7], tonumber(ARGV[8]), ARGV[11], ARGV[12]
local t = now_ms()
if stale_epoch(k, tonumber(ARGV[10])) and redis.call('EXISTS', k) == 1 then wipe(k, t) end
local d = tonumber(redis.call('HGET', k, 'd') or '0')
if mode == 'refill' then
  -- A copy read from the database before the last revocation (or too long
  -- ago to tell) could bring an ended session back: refuse it.
  if readAt <= d or readAt < t - GRACE then return {'raced'} end
  -- Keep a cached copy at least as recent (a renewal may have reached it
  -- after the database read); replace one that fell behind.
  local cached = redis.call('HGET', k, f)
  if cached and u48(cached, AT_LAST) >= u48(ARGV[3], AT_LAST) then return {'ok'} end
end
if old ~= '' and redis.call('HEXISTS', k, old) == 0 then return {'gone'} end
local sfield, current, primary = snap_field(k, owner)
-- A user is either the key's primary owner or, when another user holds
-- the tag, always stored with an inline id: never both.
local own = sfield == 'u' or (not primary and not current)
if own then sfield = 'u' end
if snap == '' then
  if not current then return {'user', t} end
elseif readAt > d then
  redis.call('HSET', k, sfield, snap)
elseif not current then
  redis.call('HSET', k, sfield, '0' .. string.sub(snap, 2))
end
if old ~= '' then
  redis.call('HDEL', k, old)
  mark(k, t)
end
local v = ARGV[3]
local af = ARGV[4]
if af ~= '' then
  local text = redis.call('HGET', k, af)
  if not text then
    redis.call('HSET', k, af, ARGV[5])
    v = ARGV[2]
  elseif text == ARGV[5] then
    v = ARGV[2]
  end
end
if not own then
  v = string.char(bit.bor(string.byte(v, 1), F_OWNER)) .. string.sub(v, 2, FIXED) .. owner .. string.sub(v, VAR)
end
redis.call('HSET', k, f, v)
if ARGV[13] == '1' then
  local stamp = readAt or t
  local w = tonumber(redis.call('HGET', k, 'w') or '-1')
  if w < 0 or stamp < w then redis.call('HSET', k, 'w', fmt(stamp)) end
end
prune_some(k, t)
extend(k, tonumber(ARGV[9]))
return {'ok'}
`;

/** KEYS: hash. ARGV: field, lastSeenAt, idleExpiresAt, epoch. → 1 renewed, 0 not. */
const TOUCH = `
local k = KEYS[1]
local v = redis.call('HGET', k, ARGV[1])
if not v then return 0 end
if stale_epoch(k, tonumber(ARGV[4])) then
  wipe(k, now_ms())
  return 0
end
local last, idle, abs = tonumber(ARGV[2]), u48(v, AT_IDLE), u48(v, AT_ABS)
-- Only a live session is extended: a renewal that lost the race to a
-- revocation (or to expiry) finds nothing to extend and writes nothing.
if idle <= last or abs <= last then return 0 end
local n = tonumber(ARGV[3])
if n > abs then n = abs end
redis.call('HSET', k, ARGV[1], string.sub(v, 1, AT_IDLE - 1) .. p48(n) .. string.sub(v, AT_IDLE + 6, AT_LAST - 1) .. p48(last) .. string.sub(v, AT_LAST + 6))
extend(k, n)
return 1
`;

/** KEYS: hash. ARGV: field. → nil when absent, else the owner (length byte + id, '' if unknown). */
const DELETE = `
local k = KEYS[1]
local v = redis.call('HGET', k, ARGV[1])
if not v then return false end
local t = now_ms()
local o = inline_owner(v)
if not o then
  local p = redis.call('HGET', k, 'u')
  if p then o = snap_owner(p) end
end
redis.call('HDEL', k, ARGV[1])
mark(k, t)
collapse(k, t)
return o or ''
`;

/**
 * KEYS: hash. ARGV: owner, kept field or '', '1' to drop the snapshot too.
 * → how many of the owner's sessions were removed.
 */
const DELETE_USER = `
local k, owner, keep = KEYS[1], ARGV[1], ARGV[2]
local t = now_ms()
local sfield, current, primary = snap_field(k, owner)
local mine = sfield == 'u'
local removed = 0
local function ours(f, v)
  local o = inline_owner(v)
  return o == owner or (not o and mine)
end
pass(k, redis.call('HGETALL', k), t, function(f, v)
  if ours(f, v) and f ~= keep then
    removed = removed + 1
    return true
  end
  return expires(v) <= t
end)
if ARGV[3] == '1' then redis.call('HDEL', k, sfield) end
mark(k, t)
collapse(k, t)
return removed
`;

/** KEYS: hash. ARGV: owner. → flat {field, value, agent text or '', …} of the owner's unexpired sessions. */
const LIST = `
local k, owner = KEYS[1], ARGV[1]
local t = now_ms()
local sfield = snap_field(k, owner)
local mine = sfield == 'u'
local _, live, texts = pass(k, redis.call('HGETALL', k), t, function(f, v) return expires(v) <= t end)
local out = {}
for i = 1, #live, 2 do
  local f, v = live[i], live[i + 1]
  local o = inline_owner(v)
  if o == owner or (not o and mine) then
    local a = agent_field(v)
    out[#out + 1] = f
    out[#out + 1] = v
    out[#out + 1] = (a and texts[a]) or ''
  end
end
return out
`;

/** KEYS: hash. ARGV: now, limit. → how many expired sessions were removed. */
const SWEEP = `
local k = KEYS[1]
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local removed = 0
pass(k, redis.call('HGETALL', k), now_ms(), function(f, v)
  if removed < limit and expires(v) <= now then
    removed = removed + 1
    return true
  end
  return false
end)
return removed
`;

/**
 * KEYS: hash. ARGV: owner, snapshot, mode ('set' | 'stale' | 'refill'),
 * readAt (refill only). 'set' and 'stale' follow a role change and mark
 * the key; 'refill' is refused (0) if it may have raced one.
 */
const USER = `
local k, owner, mode = KEYS[1], ARGV[1], ARGV[3]
local t = now_ms()
local sfield, current = snap_field(k, owner)
if mode == 'refill' then
  local d = tonumber(redis.call('HGET', k, 'd') or '0')
  local readAt = tonumber(ARGV[4])
  if readAt <= d or readAt < t - GRACE or not current then return 0 end
  redis.call('HSET', k, sfield, ARGV[2])
  return 1
end
if current then
  if mode == 'stale' then
    redis.call('HSET', k, sfield, '0' .. string.sub(current, 2))
  else
    redis.call('HSET', k, sfield, ARGV[2])
  end
end
mark(k, t)
return 1
`;

/** KEYS: epoch key. ARGV: ttl ms. → the epoch after the bump (Redis time, never lower than before). */
const BUMP_EPOCH = `
local t = now_ms()
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if t > cur then cur = t end
redis.call('SET', KEYS[1], fmt(cur), 'PX', ARGV[1])
return cur
`;

/** KEYS: counter. ARGV: now, windowMs. → {count, resetAt}. The window is the caller's clock, stored in the value. */
const RATE_HIT = `
local now, win = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('GET', KEYS[1])
local count, reset = 0, 0
if v then
  local sep = string.find(v, ':', 1, true)
  reset = tonumber(string.sub(v, 1, sep - 1))
  count = tonumber(string.sub(v, sep + 1))
end
if reset <= now then
  count = 1
  reset = now + win
else
  count = count + 1
end
-- Value and expiry in one SET: the counter can never outlive its window.
redis.call('SET', KEYS[1], fmt(reset) .. ':' .. fmt(count), 'PX', fmt(math.max(reset - now, 1)))
return {count, reset}
`;

export type RedisClient = Redis | Cluster;
type Arg = string | Buffer | number;
type ScriptCall = (key: string, ...args: Arg[]) => Promise<unknown>;

export interface LatchScripts {
  find: ScriptCall;
  put: ScriptCall;
  touch: ScriptCall;
  remove: ScriptCall;
  removeUser: ScriptCall;
  list: ScriptCall;
  sweep: ScriptCall;
  user: ScriptCall;
  bumpEpoch: ScriptCall;
  rateHit: ScriptCall;
}

const sources: Record<keyof LatchScripts, string> = {
  find: FIND,
  put: PUT,
  touch: TOUCH,
  remove: DELETE,
  removeUser: DELETE_USER,
  list: LIST,
  sweep: SWEEP,
  user: USER,
  bumpEpoch: BUMP_EPOCH,
  rateHit: RATE_HIT,
};

const defined = new WeakMap<RedisClient, LatchScripts>();

/**
 * The scripts bound to a client, defined on it once. Replies come back as
 * Buffers (the `…Buffer` variant), since session values are binary.
 *
 * @example
 * const { find } = latchScripts(redis);
 * const reply = await find(key, field, 0);
 */
export function latchScripts(client: RedisClient): LatchScripts {
  const known = defined.get(client);
  if (known !== undefined) return known;
  const bound = {} as Record<keyof LatchScripts, ScriptCall>;
  for (const [name, body] of Object.entries(sources) as [keyof LatchScripts, string][]) {
    const command = `latch_${name}`;
    client.defineCommand(command, { numberOfKeys: 1, lua: PRELUDE + body });
    const fn = (client as unknown as Record<string, (...args: Arg[]) => Promise<unknown>>)[`${command}Buffer`]!;
    bound[name] = (key, ...args) => fn.call(client, key, ...args);
  }
  defined.set(client, bound);
  return bound;
}
