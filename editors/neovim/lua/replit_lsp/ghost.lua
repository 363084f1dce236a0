--- Ghost text for Neovim 0.10 and 0.11, which have no `vim.lsp.inline_completion`.
---
--- In insert mode, a `textDocument/inlineCompletion` request goes out once typing pauses for
--- the debounce (`replit_lsp.latency`); any edit cancels the request in flight. The answer is
--- shown only if the buffer and the cursor are still where they were when it was asked for.
--- The first line of the suggestion is drawn inline at the cursor, the following lines as
--- virtual lines below it.
---
--- Typing the characters the suggestion shows keeps the rest of it on screen; any other edit,
--- moving the cursor or leaving insert mode dismisses it.

local api = vim.api
local latency = require("replit_lsp.latency")

local M = {}

M.ns = api.nvim_create_namespace("replit_lsp_ghost")

local METHOD = "textDocument/inlineCompletion"
local TRIGGER_INVOKED = 1
local TRIGGER_AUTOMATIC = 2
local HAS_011 = vim.fn.has("nvim-0.11") == 1

M.PARTIAL_ACCEPT_COMMAND = "replitLsp.didPartiallyAcceptSuggestion"
M.hl_group = "ReplitLspGhost"
M.hint_hl_group = "ReplitLspGhostHint"

---@class replit_lsp.Item
---@field text string what the suggestion adds at the cursor
---@field replaced string buffer text after the cursor that accepting the item replaces
---@field command? table
---@field client_id integer

---@class replit_lsp.Suggestion
---@field items replit_lsp.Item[]
---@field index integer
---@field row integer 0-based line of the cursor the suggestion belongs to
---@field col integer byte column of that cursor
---@field line string that line's text when the suggestion was drawn
---@field tick integer the buffer's changedtick when the suggestion was drawn

---@class replit_lsp.Request
---@field client_id integer
---@field id? integer
---@field row integer
---@field col integer
---@field tick integer

---@class replit_lsp.BufState
---@field client_id integer
---@field timer? uv.uv_timer_t
---@field request? replit_lsp.Request
---@field suggestion? replit_lsp.Suggestion
---@field augroup integer
---@field seen_tick integer the changedtick last handled by an edit or on entering insert mode

---@type table<integer, replit_lsp.BufState>
local buffers = {}

-- ------------------------------------------------------------------ helpers

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == "i"
end

--- The byte column of `character` (counted in `encoding` units) on `line`, clamped to the line.
---@param line string
---@param character integer
---@param encoding string "utf-8", "utf-16" or "utf-32"
---@return integer
function M.byte_col(line, character, encoding)
  if character <= 0 then
    return 0
  end
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  local ok, col
  if HAS_011 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  if not ok or not col then
    return #line
  end
  return math.min(col, #line)
end

--- An LSP position as (row, byte column), or nil when the line is not in the buffer.
---@return integer?, integer?
local function to_byte_pos(bufnr, position, encoding)
  local row = position.line
  if row < 0 or row >= api.nvim_buf_line_count(bufnr) then
    return nil, nil
  end
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
  return row, M.byte_col(line, position.character, encoding)
end

local function before(r1, c1, r2, c2)
  return r1 < r2 or (r1 == r2 and c1 < c2)
end

--- The plain text of an `insertText`, which may be a snippet (`StringValue`).
---@return string?
local function plain_text(insert_text)
  if type(insert_text) == "string" then
    return insert_text
  end
  if type(insert_text) == "table" and type(insert_text.value) == "string" then
    local text = insert_text.value
    text = text:gsub("%${%d+:([^}]*)}", "%1"):gsub("%${%d+}", ""):gsub("%$%d+", "")
    return (text:gsub("\\([$}\\])", "%1"))
  end
  return nil
end

--- The part of `text` that `kind` ("word" or "line") accepts.
---@param text string
---@param kind "word"|"line"
---@return string
function M.partial(text, kind)
  if kind == "line" then
    if text:sub(1, 1) == "\n" then
      return "\n" .. text:sub(2):match("^[^\n]*")
    end
    return text:match("^[^\n]*")
  end
  return text:match("^%s*[%w_\128-\255]+")
    or text:match("^%s*[^%w_%s\128-\255]+")
    or text:match("^%s+")
    or text
end

--- The (row, col) that `text` ends at when it starts at (row, col).
local function text_end(row, col, text)
  local lines = vim.split(text, "\n", { plain = true })
  if #lines == 1 then
    return row, col + #text
  end
  return row + #lines - 1, #lines[#lines]
end

--- Converts one server item to what the cursor at (row, col) would gain from it, or nil when
--- the item does not fit: its range must contain the cursor, and the text from the range's
--- start to the cursor must be a prefix of the insert text.
---@return replit_lsp.Item?
local function normalize(bufnr, client, raw, row, col)
  local text = plain_text(raw.insertText)
  if not text or text == "" then
    return nil
  end
  text = text:gsub("\r\n?", "\n")
  local srow, scol, erow, ecol = row, col, row, col
  if raw.range then
    srow, scol = to_byte_pos(bufnr, raw.range.start, client.offset_encoding)
    erow, ecol = to_byte_pos(bufnr, raw.range["end"], client.offset_encoding)
    if not srow or not erow then
      return nil
    end
  end
  if before(row, col, srow, scol) or before(erow, ecol, row, col) then
    return nil
  end
  local typed = table.concat(api.nvim_buf_get_text(bufnr, srow, scol, row, col, {}), "\n")
  if text:sub(1, #typed) ~= typed or #text == #typed then
    return nil
  end
  return {
    text = text:sub(#typed + 1),
    replaced = table.concat(api.nvim_buf_get_text(bufnr, row, col, erow, ecol, {}), "\n"),
    command = raw.command,
    client_id = client.id,
  }
end

--- Expands tabs for display: virtual text does not render a tab as indentation.
local function expand_tabs(text, bufnr)
  if not text:find("\t", 1, true) then
    return text
  end
  local width = vim.bo[bufnr].tabstop
  local out, column = {}, 0
  for char in text:gmatch(".") do
    if char == "\t" then
      local pad = width - column % width
      out[#out + 1] = string.rep(" ", pad)
      column = column + pad
    else
      out[#out + 1] = char
      column = column + 1
    end
  end
  return table.concat(out)
end

-- ---------------------------------------------------------------- rendering

local function clear(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

local function render(bufnr)
  clear(bufnr)
  local state = buffers[bufnr]
  local s = state and state.suggestion
  if not s then
    return
  end
  local item = s.items[s.index]
  local shown = item.text
  -- Text after the cursor that the completion ends with anyway (a closing bracket) is already
  -- on screen: show only what comes before it.
  if item.replaced ~= "" and #shown > #item.replaced and vim.endswith(shown, item.replaced) then
    shown = shown:sub(1, #shown - #item.replaced)
  end
  local lines = vim.split(shown, "\n", { plain = true })
  local virt_text = { { lines[1], M.hl_group } }
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { expand_tabs(lines[i], bufnr), M.hl_group } }
  end
  if #s.items > 1 then
    local hint = (" (%d/%d)"):format(s.index, #s.items)
    local last = #virt_lines > 0 and virt_lines[#virt_lines] or virt_text
    last[#last + 1] = { hint, M.hint_hl_group }
  end
  local opts = { hl_mode = "combine", priority = 65534 }
  if virt_text[1][1] ~= "" or #virt_text > 1 then
    opts.virt_text = virt_text
    opts.virt_text_pos = "inline"
  end
  if #virt_lines > 0 then
    opts.virt_lines = virt_lines
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, s.row, s.col, opts)
end

-- ----------------------------------------------------------------- requests

local function client_request(client, method, params, handler, bufnr)
  if HAS_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function client_cancel(client, id)
  if HAS_011 then
    client:cancel_request(id)
  else
    client.cancel_request(id)
  end
end

local function stop_timer(state)
  if state.timer then
    state.timer:stop()
  end
end

--- Cancels the debounce timer and the request in flight, if any.
local function cancel(state)
  stop_timer(state)
  local request = state.request
  state.request = nil
  if request and request.id then
    local client = vim.lsp.get_client_by_id(request.client_id)
    if client then
      pcall(client_cancel, client, request.id)
    end
  end
end

---@param bufnr integer
---@param request replit_lsp.Request
local function on_result(bufnr, request, err, result)
  local state = buffers[bufnr]
  if not state or state.request ~= request then
    return -- superseded, cancelled or detached
  end
  state.request = nil
  if err or not result then
    return
  end
  if
    not api.nvim_buf_is_valid(bufnr)
    or api.nvim_get_current_buf() ~= bufnr
    or not in_insert_mode()
    or api.nvim_buf_get_changedtick(bufnr) ~= request.tick
  then
    return
  end
  local cursor = api.nvim_win_get_cursor(0)
  if cursor[1] - 1 ~= request.row or cursor[2] ~= request.col then
    return
  end
  local client = vim.lsp.get_client_by_id(request.client_id)
  if not client then
    return
  end
  local items = {}
  for _, raw in ipairs(result.items or result) do
    local item = normalize(bufnr, client, raw, request.row, request.col)
    if item then
      items[#items + 1] = item
    end
  end
  if #items == 0 then
    return
  end
  state.suggestion = {
    items = items,
    index = 1,
    row = request.row,
    col = request.col,
    line = api.nvim_buf_get_lines(bufnr, request.row, request.row + 1, true)[1],
    tick = request.tick,
  }
  render(bufnr)
end

--- Sends a request for the cursor's position now (cancelling the one in flight).
---@param bufnr integer
---@param trigger integer
local function request_now(bufnr, trigger)
  local state = buffers[bufnr]
  if not state then
    return
  end
  cancel(state)
  if api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
    return
  end
  local client = vim.lsp.get_client_by_id(state.client_id)
  if not client then
    return
  end
  local cursor = api.nvim_win_get_cursor(0)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger }
  ---@type replit_lsp.Request
  local request = {
    client_id = client.id,
    row = cursor[1] - 1,
    col = cursor[2],
    tick = api.nvim_buf_get_changedtick(bufnr),
  }
  state.request = request
  local ok, id = client_request(client, METHOD, params, function(err, result)
    on_result(bufnr, request, err, result)
  end, bufnr)
  if ok then
    request.id = id
  elseif state.request == request then
    state.request = nil
  end
end

--- Asks again once typing has paused for the debounce.
local function schedule(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  cancel(state)
  if not state.timer then
    state.timer = assert((vim.uv or vim.loop).new_timer())
  end
  state.timer:start(
    latency.debounce_ms(),
    0,
    vim.schedule_wrap(function()
      if buffers[bufnr] == state then
        request_now(bufnr, TRIGGER_AUTOMATIC)
      end
    end)
  )
end

-- ------------------------------------------------------------------- events

local function hide(bufnr)
  local state = buffers[bufnr]
  if state then
    state.suggestion = nil
  end
  clear(bufnr)
end

--- After an edit: keeps the suggestion if the user typed exactly what it showed, else asks again.
local function on_text_changed(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  local tick = api.nvim_buf_get_changedtick(bufnr)
  state.seen_tick = tick
  local s = state.suggestion
  if s and s.tick == tick then
    return -- our own edit (a partial accept), already accounted for
  end
  latency.keystroke()
  if s then
    local cursor = api.nvim_win_get_cursor(0)
    local row, col = cursor[1] - 1, cursor[2]
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
    local typed = line:sub(s.col + 1, col)
    local item = s.items[s.index]
    if
      row == s.row
      and col > s.col
      and #typed < #item.text
      and item.text:sub(1, #typed) == typed
      and line == s.line:sub(1, s.col) .. typed .. s.line:sub(s.col + 1)
    then
      item.text = item.text:sub(#typed + 1)
      s.items, s.index = { item }, 1
      s.col, s.line, s.tick = col, line, tick
      cancel(state)
      render(bufnr)
      return
    end
  end
  hide(bufnr)
  schedule(bufnr)
end

--- After a cursor move: a move that is not part of an edit dismisses the suggestion and asks
--- again at the new position. CursorMovedI may come before or after TextChangedI; an edit is
--- recognised by the changedtick that TextChangedI has not seen yet.
local function on_cursor_moved(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  if M.is_visible(bufnr) or api.nvim_buf_get_changedtick(bufnr) ~= state.seen_tick then
    return
  end
  hide(bufnr)
  schedule(bufnr)
end

-- ----------------------------------------------------------------------- API

--- Starts showing suggestions from client `client_id` in buffer `bufnr`.
---@param bufnr integer
---@param client_id integer
function M.attach(bufnr, client_id)
  if buffers[bufnr] then
    buffers[bufnr].client_id = client_id
    return
  end
  local group = api.nvim_create_augroup("replit_lsp_ghost_" .. bufnr, { clear = true })
  buffers[bufnr] = {
    client_id = client_id,
    augroup = group,
    seen_tick = api.nvim_buf_get_changedtick(bufnr),
  }
  api.nvim_create_autocmd("InsertEnter", {
    group = group,
    buffer = bufnr,
    callback = function()
      buffers[bufnr].seen_tick = api.nvim_buf_get_changedtick(bufnr)
      schedule(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "TextChangedI", "TextChangedP" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      on_text_changed(bufnr)
    end,
  })
  api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = bufnr,
    callback = function()
      on_cursor_moved(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.dismiss(bufnr)
    end,
  })
  api.nvim_create_autocmd("BufUnload", {
    group = group,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
end

---@param bufnr integer
function M.detach(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  cancel(state)
  if state.timer and not state.timer:is_closing() then
    state.timer:close()
  end
  buffers[bufnr] = nil
  pcall(api.nvim_del_augroup_by_id, state.augroup)
  clear(bufnr)
end

---@param bufnr? integer
---@return boolean
function M.is_attached(bufnr)
  return buffers[bufnr or api.nvim_get_current_buf()] ~= nil
end

--- Whether a suggestion is on screen at the cursor.
---@param bufnr? integer
---@return boolean
function M.is_visible(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local state = buffers[bufnr]
  local s = state and state.suggestion
  if not s then
    return false
  end
  local cursor = api.nvim_win_get_cursor(0)
  return cursor[1] - 1 == s.row and cursor[2] == s.col
end

--- The text the current suggestion would insert at the cursor, or nil.
---@return string?
function M.current_text(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  if not M.is_visible(bufnr) then
    return nil
  end
  local s = buffers[bufnr].suggestion
  return s.items[s.index].text
end

--- Tells the server that the user accepted the item whose acceptance command is `command`
--- (whole, or a word or line of it when `partial`): it counts what its suggestions are worth.
---@param client vim.lsp.Client
---@param command lsp.Command
---@param bufnr integer
---@param partial boolean
function M.report_acceptance(client, command, bufnr, partial)
  local params = {
    command = partial and M.PARTIAL_ACCEPT_COMMAND or command.command,
    arguments = command.arguments,
  }
  client_request(client, "workspace/executeCommand", params, function() end, bufnr)
end

--- Inserts the suggestion, or its next word or line (`kind` "word" or "line").
--- Returns false when no suggestion is shown.
---@param kind? "word"|"line"
---@return boolean
function M.accept(kind)
  local bufnr = api.nvim_get_current_buf()
  if not M.is_visible(bufnr) then
    return false
  end
  local state = buffers[bufnr]
  local s = assert(state.suggestion)
  local item = s.items[s.index]
  local part = kind and M.partial(item.text, kind) or item.text
  local whole = #part >= #item.text
  local erow, ecol = s.row, s.col
  if whole then
    erow, ecol = text_end(s.row, s.col, item.replaced)
  end
  cancel(state)
  clear(bufnr)
  local lines = vim.split(part, "\n", { plain = true })
  api.nvim_buf_set_text(bufnr, s.row, s.col, erow, ecol, lines)
  local row, col = text_end(s.row, s.col, part)
  api.nvim_win_set_cursor(0, { row + 1, col })
  local client = item.command and vim.lsp.get_client_by_id(item.client_id)
  if client then
    M.report_acceptance(client, item.command, bufnr, not whole)
  end
  if whole then
    state.suggestion = nil
    return true
  end
  item.text = item.text:sub(#part + 1)
  s.items, s.index = { item }, 1
  s.row, s.col = row, col
  s.line = api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
  s.tick = api.nvim_buf_get_changedtick(bufnr)
  render(bufnr)
  return true
end

--- Hides the suggestion and cancels pending requests. Returns whether one was shown.
---@param bufnr? integer
---@return boolean
function M.dismiss(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  local state = buffers[bufnr]
  if not state then
    return false
  end
  local shown = state.suggestion ~= nil
  cancel(state)
  hide(bufnr)
  return shown
end

--- Shows the next (`step` 1) or previous (-1) suggestion; asks the server when none is shown.
---@param step integer
function M.cycle(step)
  local bufnr = api.nvim_get_current_buf()
  if not M.is_visible(bufnr) then
    M.request(bufnr)
    return
  end
  local s = buffers[bufnr].suggestion
  s.index = (s.index - 1 + step) % #s.items + 1
  render(bufnr)
end

--- Asks for a suggestion at the cursor now, without waiting for a pause in typing.
---@param bufnr? integer
function M.request(bufnr)
  bufnr = bufnr or api.nvim_get_current_buf()
  hide(bufnr)
  request_now(bufnr, TRIGGER_INVOKED)
end

return M
