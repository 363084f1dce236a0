--- How fast the server answers and how fast the user types: the wait before asking for a
--- suggestion (the debounce) is set from both, and slow answers are shown as a "slow" state.
---
--- Answer times are measured by the client, from a `textDocument/inlineCompletion` request to
--- its answer (a request cancelled before it was answered is not counted); they are read from
--- `LspRequest` events, so they are the same whichever ghost text is drawn. Typing speed is
--- the intervals between edits in insert mode.

local M = {}

--- Answers the median answer time is taken over.
M.ANSWERS = 8
--- Fewer answers than this tell nothing about the server yet: no "slow" state before.
M.SLOW_MIN_ANSWERS = 4
--- Keystroke intervals the typing pace is taken over.
M.INTERVALS = 16
--- How far past the usual pause between keystrokes a slow server waits.
M.PAUSE_MARGIN = 1.5

local METHOD = "textDocument/inlineCompletion"

--- The debounce settings (`setup()` gives the plugin's).
---@class replit_lsp.DebounceSettings
---@field adaptive_debounce boolean
---@field debounce_ms integer the shortest wait, or the fixed one when not adaptive
---@field debounce_max_ms integer the longest wait
---@type replit_lsp.DebounceSettings
local settings = { adaptive_debounce = true, debounce_ms = 75, debounce_max_ms = 1000 }

---@type number[]
local answers = {}
---@type number[]
local intervals = {}
---@type number?
local last_keystroke_ms = nil
--- Requests in flight: request id (per client) -> when it was sent, or false once cancelled.
---@type table<string, number|false>
local started = {}

local function now_ms()
  return (vim.uv or vim.loop).hrtime() / 1e6
end

local function push(list, value, size)
  list[#list + 1] = value
  if #list > size then
    table.remove(list, 1)
  end
end

--- The median of `values`, or nil for none.
---@param values number[]
---@return number?
function M.median(values)
  if #values == 0 then
    return nil
  end
  local sorted = vim.deepcopy(values)
  table.sort(sorted)
  local middle = math.floor(#sorted / 2)
  if #sorted % 2 == 1 then
    return sorted[middle + 1]
  end
  return (sorted[middle] + sorted[middle + 1]) / 2
end

--- The debounce, in ms: one and a half times the shorter of the typical answer time and the
--- usual pause between keystrokes, within [min_ms, max_ms]. Fast answers make it short; when an
--- answer takes longer than the user's pause between keystrokes, a request sent in that pause
--- would be superseded by the next keystroke before it is answered, so the wait lasts past the
--- usual pause instead. With nothing measured yet it is `min_ms`.
---@param answer_ms number? the typical answer time
---@param keystroke_ms number? the usual interval between keystrokes
---@param min_ms number
---@param max_ms number
---@return integer
function M.adaptive_debounce(answer_ms, keystroke_ms, min_ms, max_ms)
  if not answer_ms or not keystroke_ms then
    return min_ms
  end
  local wait = M.PAUSE_MARGIN * math.min(answer_ms, keystroke_ms)
  return math.floor(math.max(min_ms, math.min(max_ms, wait)) + 0.5)
end

--- Records an answer time.
---@param ms number
function M.answered(ms)
  push(answers, ms, M.ANSWERS)
end

--- Sets the debounce settings.
---@param config replit_lsp.DebounceSettings
function M.configure(config)
  settings = {
    adaptive_debounce = config.adaptive_debounce,
    debounce_ms = config.debounce_ms,
    debounce_max_ms = config.debounce_max_ms,
  }
end

--- Records a keystroke (an edit in insert mode). Intervals as long as the longest wait are
--- pauses, not the typing pace: a request is sent in them whatever the debounce.
function M.keystroke()
  local now = now_ms()
  if last_keystroke_ms and now - last_keystroke_ms < settings.debounce_max_ms then
    push(intervals, now - last_keystroke_ms, M.INTERVALS)
  end
  last_keystroke_ms = now
end

--- The median time of the recent answers, or nil before any.
---@return number?
function M.median_answer_ms()
  return M.median(answers)
end

--- How many answer times the median is taken over.
---@return integer
function M.answer_count()
  return #answers
end

--- The wait before asking, from the settings and what was measured.
---@return integer
function M.debounce_ms()
  if not settings.adaptive_debounce then
    return settings.debounce_ms
  end
  return M.adaptive_debounce(
    M.median(answers),
    M.median(intervals),
    settings.debounce_ms,
    settings.debounce_max_ms
  )
end

--- The median answer time when it is over `threshold_ms` (and enough answers were measured),
--- else nil.
---@param threshold_ms number
---@return number?
function M.slow_ms(threshold_ms)
  local median = M.median(answers)
  if #answers >= M.SLOW_MIN_ANSWERS and median and median > threshold_ms then
    return median
  end
  return nil
end

--- What to say about slow answers, for the statusline and `:checkhealth`.
---@param median_ms number
---@return string
function M.describe_slow(median_ms)
  return ("slow: %d ms median"):format(median_ms)
end

--- Measures the answer time of every inline completion request of client `name`.
---@param group integer the augroup to add the autocommand to
---@param name string the client's name
function M.track(group, name)
  vim.api.nvim_create_autocmd("LspRequest", {
    group = group,
    callback = function(args)
      local request = args.data.request
      if not request or request.method ~= METHOD then
        return
      end
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if not client or client.name ~= name then
        return
      end
      local key = args.data.client_id .. ":" .. args.data.request_id
      if request.type == "pending" then
        started[key] = now_ms()
      elseif request.type == "cancel" then
        started[key] = false
      elseif request.type == "complete" then
        local sent = started[key]
        started[key] = nil
        if sent then
          M.answered(now_ms() - sent)
        end
      end
    end,
  })
end

--- Forgets every measurement.
function M.reset()
  answers, intervals, started, last_keystroke_ms = {}, {}, {}, nil
end

return M
