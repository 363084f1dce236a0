--- Tells the server where the cursor rests (`replitLsp/cursorIdle`), so that it reads the text
--- before it into the model's cache while the user is not typing and the first suggestion there
--- comes quicker.
---
--- Sent for the cursor of a window that shows an attached buffer when the buffer is attached
--- or the user enters that window or buffer, and after the cursor has rested for `idle_ms` after
--- a move that was not typing (a jump, a search, a click, arrow keys). A cursor move is typing
--- when the buffer changed since the previous move. Never twice in a row for the same document
--- version and position, nor while a completion request for the buffer is in flight, nor for
--- a filetype outside the server's `enabledLanguages`, nor in a buffer without suggestions.

local api = vim.api

local M = {}

M.METHOD = "replitLsp/cursorIdle"
local COMPLETION_METHOD = "textDocument/inlineCompletion"
local HAS_011 = vim.fn.has("nvim-0.11") == 1

---@class replit_lsp.PrewarmSettings
---@field idle_ms integer how long the cursor rests before the server is told
---@field enabled_languages string[] the server's `enabledLanguages`; empty: all
---@field completions_on fun(bufnr: integer): boolean whether the buffer gets suggestions

---@class replit_lsp.Rest
---@field row integer
---@field col integer
---@field tick integer the buffer's changedtick when the cursor came there

---@class replit_lsp.PrewarmBuffer
---@field client_id integer
---@field augroup integer
---@field timer? uv.uv_timer_t
---@field rest replit_lsp.Rest where the cursor was at the last cursor event

---@type table<integer, replit_lsp.PrewarmBuffer>
local buffers = {}
---@type replit_lsp.PrewarmSettings
local settings = {
  idle_ms = 300,
  enabled_languages = {},
  completions_on = function()
    return true
  end,
}
--- The last notification sent, per client: "uri version line character".
---@type table<integer, string>
local last_sent = {}

---@param config replit_lsp.PrewarmSettings
function M.configure(config)
  settings = config
end

local function cursor_rest(bufnr)
  local cursor = api.nvim_win_get_cursor(0)
  return { row = cursor[1] - 1, col = cursor[2], tick = api.nvim_buf_get_changedtick(bufnr) }
end

--- Whether a completion request of `client` for `bufnr` waits for its answer.
local function completing(client, bufnr)
  for _, request in pairs(client.requests or {}) do
    local same = request.method == COMPLETION_METHOD and request.bufnr == bufnr
    if same and request.type == "pending" then
      return true
    end
  end
  return false
end

local function language_enabled(bufnr)
  local languages = settings.enabled_languages
  return #languages == 0 or vim.tbl_contains(languages, vim.bo[bufnr].filetype)
end

--- Tells the server that the cursor of the current window rests in `bufnr`, unless one of the
--- rules above says not to.
---@param bufnr integer
function M.notify(bufnr)
  local state = buffers[bufnr]
  if not state or api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local client = vim.lsp.get_client_by_id(state.client_id)
  if not client or completing(client, bufnr) then
    return
  end
  if not language_enabled(bufnr) or not settings.completions_on(bufnr) then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local version = vim.lsp.util.buf_versions[bufnr] or 0
  local key = table.concat({
    params.textDocument.uri,
    version,
    params.position.line,
    params.position.character,
  }, " ")
  if last_sent[client.id] == key then
    return
  end
  last_sent[client.id] = key
  local notification = { textDocument = params.textDocument, position = params.position }
  if HAS_011 then
    client:notify(M.METHOD, notification)
  else
    client.notify(M.METHOD, notification)
  end
end

local function stop_timer(state)
  if state.timer then
    state.timer:stop()
  end
end

--- A cursor event: a move that is not typing starts the wait for the cursor to rest.
local function on_cursor_moved(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  local rest = cursor_rest(bufnr)
  local previous = state.rest
  state.rest = rest
  if rest.tick ~= previous.tick then
    stop_timer(state) -- typing: the edit moved the cursor
    return
  end
  if rest.row == previous.row and rest.col == previous.col then
    return
  end
  if not state.timer then
    state.timer = assert((vim.uv or vim.loop).new_timer())
  end
  state.timer:start(
    settings.idle_ms,
    0,
    vim.schedule_wrap(function()
      if buffers[bufnr] ~= state or api.nvim_get_current_buf() ~= bufnr then
        return
      end
      local now, rest = cursor_rest(bufnr), state.rest
      if now.tick == rest.tick and now.row == rest.row and now.col == rest.col then
        M.notify(bufnr)
      end
    end)
  )
end

--- An edit: no rest notification for the move it brings. An edit that leaves the cursor where
--- it was (deleting under it) brings no cursor event, so the edit is taken as seen here.
local function on_text_changed(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  stop_timer(state)
  local rest = cursor_rest(bufnr)
  if rest.row == state.rest.row and rest.col == state.rest.col then
    state.rest.tick = rest.tick
  end
end

--- Starts telling the server where the cursor rests in `bufnr`, for client `client_id`, and
--- tells it now when the buffer is the current one.
---@param bufnr integer
---@param client_id integer
function M.attach(bufnr, client_id)
  if buffers[bufnr] then
    buffers[bufnr].client_id = client_id
    M.notify(bufnr)
    return
  end
  local group = api.nvim_create_augroup("replit_lsp_prewarm_" .. bufnr, { clear = true })
  buffers[bufnr] = { client_id = client_id, augroup = group, rest = cursor_rest(bufnr) }
  api.nvim_create_autocmd({ "BufEnter", "WinEnter" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      local state = buffers[bufnr]
      if state then
        state.rest = cursor_rest(bufnr)
        M.notify(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      on_cursor_moved(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "TextChanged", "TextChangedI", "TextChangedP" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      on_text_changed(bufnr)
    end,
  })
  api.nvim_create_autocmd("BufUnload", {
    group = group,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
  M.notify(bufnr)
end

---@param bufnr integer
function M.detach(bufnr)
  local state = buffers[bufnr]
  if not state then
    return
  end
  stop_timer(state)
  if state.timer and not state.timer:is_closing() then
    state.timer:close()
  end
  buffers[bufnr] = nil
  pcall(api.nvim_del_augroup_by_id, state.augroup)
end

return M
