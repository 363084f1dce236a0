--- replit-lsp for Neovim: starts the `replit-lsp` language server and shows its inline
--- completions as ghost text.
---
--- On Neovim 0.12+ the completions go through the built-in `vim.lsp.inline_completion`; on
--- 0.10 and 0.11 through this plugin's own ghost text (`replit_lsp.ghost`).

local api = vim.api

local M = {}

M.name = "replit_lsp"

---@class replit_lsp.Keymaps
---@field accept string|false
---@field accept_line string|false
---@field accept_word string|false
---@field dismiss string|false
---@field next string|false
---@field prev string|false
---@field trigger string|false

---@class replit_lsp.Config
---@field cmd string[] the server command line
---@field cmd_env? table<string, string>
---@field cmd_cwd? string the server's working directory
---@field filetypes string[]
---@field root_markers string[]
---@field settings table sent as `initializationOptions` and `workspace/didChangeConfiguration`
---@field keymaps replit_lsp.Keymaps
---@field debounce_ms integer pause in typing before asking: the shortest, or the only one when
--- not adaptive (own ghost text only)
---@field debounce_max_ms integer the longest pause in typing before asking
---@field adaptive_debounce boolean set the pause from the answer times and the typing pace
---@field prewarm boolean tell the server where the cursor rests (`replitLsp/cursorIdle`)
---@field idle_ms integer how long the cursor rests after a move before the server is told
---@field slow_threshold_ms integer median answer time above which suggestions are "slow"
---@field ghost_text "auto"|"native"|"plugin" "auto": Neovim's own on 0.12+, else the plugin's

---@type replit_lsp.Config
M.defaults = {
  cmd = { "replit-lsp", "--stdio" },
  filetypes = {
    "c",
    "cpp",
    "cs",
    "css",
    "go",
    "html",
    "java",
    "javascript",
    "javascriptreact",
    "json",
    "lua",
    "markdown",
    "php",
    "python",
    "ruby",
    "rust",
    "scala",
    "sh",
    "sql",
    "swift",
    "typescript",
    "typescriptreact",
    "yaml",
  },
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod" },
  settings = {},
  keymaps = {
    accept = "<Tab>",
    accept_line = "<M-C-Right>",
    accept_word = "<M-Right>",
    dismiss = "<C-]>",
    next = "<M-]>",
    prev = "<M-[>",
    trigger = "<M-\\>",
  },
  debounce_ms = 75,
  debounce_max_ms = 1000,
  adaptive_debounce = true,
  prewarm = true,
  idle_ms = 300,
  slow_threshold_ms = 1500,
  ghost_text = "auto",
}

---@type replit_lsp.Config?
M.config = nil

local group = api.nvim_create_augroup("replit_lsp", { clear = true })

-- --------------------------------------------------------------- back ends

local function use_native()
  local config = M.config or M.defaults
  if config.ghost_text == "plugin" then
    return false
  end
  return vim.lsp.inline_completion ~= nil
end

local native_ns ---@type integer?

--- Native back end (Neovim 0.12+): whether the built-in completion shows something.
local function native_visible(bufnr)
  native_ns = native_ns or api.nvim_get_namespaces()["nvim.lsp.inline_completion"]
  if not native_ns then
    return false
  end
  return #api.nvim_buf_get_extmarks(bufnr, native_ns, 0, -1, { limit = 1 }) > 0
end

--- Native back end: inserts part of an accepted item at the cursor.
local function native_accept_part(item, kind)
  local ghost = require("replit_lsp.ghost")
  local text = type(item.insert_text) == "string" and item.insert_text
    or (item.insert_text and item.insert_text.value)
  if type(text) ~= "string" then
    return
  end
  local cursor = api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  if item.range then
    local start = item.range.start
    local srow, scol = start.row or start[1], start.col or start[2]
    if srow == row and scol <= col then
      local typed = api.nvim_buf_get_text(0, row, scol, row, col, {})[1]
      if text:sub(1, #typed) == typed then
        text = text:sub(#typed + 1)
      end
    end
  end
  local client = M.clients(0)[1]
  if client and item.command then
    ghost.report_acceptance(client, item.command, api.nvim_get_current_buf(), true)
  end
  local part = ghost.partial(text, kind)
  local lines = vim.split(part, "\n", { plain = true })
  api.nvim_buf_set_text(0, row, col, row, col, lines)
  local end_row = row + #lines - 1
  local end_col = (#lines == 1 and col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(0, { end_row + 1, end_col })
end

-- --------------------------------------------------------- public actions

--- Whether a suggestion is shown in the current buffer.
---@return boolean
function M.is_visible()
  local bufnr = api.nvim_get_current_buf()
  if use_native() then
    return native_visible(bufnr)
  end
  return require("replit_lsp.ghost").is_visible(bufnr)
end

--- Accepts the whole suggestion. Returns false when none is shown.
---@return boolean
function M.accept()
  if use_native() then
    return vim.lsp.inline_completion.get() == true
  end
  return require("replit_lsp.ghost").accept()
end

---@param kind "word"|"line"
local function accept_part(kind)
  if use_native() then
    return vim.lsp.inline_completion.get({
      on_accept = function(item)
        native_accept_part(item, kind)
      end,
    }) == true
  end
  return require("replit_lsp.ghost").accept(kind)
end

--- Accepts the suggestion up to the end of its first line.
---@return boolean
function M.accept_line()
  return accept_part("line")
end

--- Accepts the suggestion's next word.
---@return boolean
function M.accept_word()
  return accept_part("word")
end

--- Hides the suggestion. Returns whether one was shown.
---@return boolean
function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  if use_native() then
    if not native_visible(bufnr) then
      return false
    end
    -- The built-in module has no dismiss: switching it off and on for the buffer clears it.
    vim.lsp.inline_completion.enable(false, { bufnr = bufnr })
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    return true
  end
  return require("replit_lsp.ghost").dismiss(bufnr)
end

---@param step integer
local function cycle(step)
  if use_native() then
    if native_visible(api.nvim_get_current_buf()) then
      vim.lsp.inline_completion.select({ count = step })
    else
      vim.lsp.inline_completion.get() -- asks the server when nothing is shown
    end
    return
  end
  require("replit_lsp.ghost").cycle(step)
end

--- Shows the next suggestion, or asks for one when none is shown.
function M.next()
  cycle(1)
end

--- Shows the previous suggestion, or asks for one when none is shown.
function M.prev()
  cycle(-1)
end

--- Asks the server for a suggestion at the cursor now (`triggerKind` Invoked, which may
--- bring a longer one than typing does).
function M.trigger()
  if use_native() then
    if not native_visible(api.nvim_get_current_buf()) then
      vim.lsp.inline_completion.get() -- asks the server when nothing is shown
    end
    return
  end
  require("replit_lsp.ghost").request()
end

--- "3/10 accepted, 1 in part, 45 ms": what became of a server's suggestions (the
--- `suggestions` of `replitLsp/status`).
---@param counts table
---@return string
function M.describe_suggestions(counts)
  local text = ("%d/%d accepted, %d in part"):format(
    counts.accepted,
    counts.shown,
    counts.partially_accepted
  )
  if type(counts.mean_latency_ms) == "number" then
    text = ("%s, %d ms"):format(text, counts.mean_latency_ms)
  end
  return text
end

local statusline_state = { text = "", asked_at = -math.huge }
local STATUSLINE_REFRESH_MS = 1000

--- The server's part of the statusline: its state, or what became of its suggestions.
local function server_statusline()
  local client = M.clients(api.nvim_get_current_buf())[1]
  if not client then
    return ""
  end
  local now = vim.uv.now()
  if now - statusline_state.asked_at >= STATUSLINE_REFRESH_MS then
    statusline_state.asked_at = now
    local function on_status(err, status)
      if err or type(status) ~= "table" then
        statusline_state.text = "replit: no status"
      elseif status.state == "ready" and status.suggestions then
        statusline_state.text = "replit " .. M.describe_suggestions(status.suggestions)
      elseif status.state == "loading" and type(status.percent) == "number" then
        statusline_state.text = ("replit loading %d%%"):format(status.percent)
      else
        statusline_state.text = "replit " .. tostring(status.state)
      end
      vim.cmd.redrawstatus()
    end
    if vim.fn.has("nvim-0.11") == 1 then
      client:request("replitLsp/status", vim.empty_dict(), on_status)
    else
      client.request("replitLsp/status", vim.empty_dict(), on_status)
    end
  end
  return statusline_state.text
end

--- For 'statusline': the model's state, or once it is ready how many suggestions were
--- accepted, e.g. `%{v:lua.require'replit_lsp'.statusline()}`, and "slow" with the median
--- answer time when recent answers were slow. Never blocks: it shows the last answer and asks
--- the server again at most once a second.
---@return string
function M.statusline()
  local text = server_statusline()
  local latency = require("replit_lsp.latency")
  local slow_ms = latency.slow_ms((M.config or M.defaults).slow_threshold_ms)
  if text ~= "" and slow_ms then
    text = ("%s, %s"):format(text, latency.describe_slow(slow_ms))
  end
  return text
end

--- The running replit-lsp clients (for the current buffer with `bufnr`).
---@param bufnr? integer
---@return vim.lsp.Client[]
function M.clients(bufnr)
  return vim.lsp.get_clients({ name = M.name, bufnr = bufnr })
end

-- ---------------------------------------------------------------- keymaps

local ACTIONS = {
  accept = "accept",
  accept_line = "accept_line",
  accept_word = "accept_word",
  dismiss = "dismiss",
}

local function set_keymaps(bufnr)
  local keymaps = M.config.keymaps
  for key, action in pairs(ACTIONS) do
    local lhs = keymaps[key]
    if lhs then
      -- An expression map, so that the key keeps its usual meaning when nothing is shown;
      -- the action itself runs as <Cmd>, outside the expression's text lock.
      local rhs = ("<Cmd>lua require('replit_lsp').%s()<CR>"):format(action)
      vim.keymap.set("i", lhs, function()
        if M.is_visible() then
          return rhs
        end
        return lhs
      end, {
        buffer = bufnr,
        expr = true,
        replace_keycodes = true,
        desc = "replit-lsp: " .. action:gsub("_", " "),
      })
    end
  end
  if keymaps.trigger then
    vim.keymap.set("i", keymaps.trigger, M.trigger, {
      buffer = bufnr,
      desc = "replit-lsp: ask for a suggestion",
    })
  end
  for key, step in pairs({ next = 1, prev = -1 }) do
    local lhs = keymaps[key]
    if lhs then
      vim.keymap.set("i", lhs, function()
        cycle(step)
      end, { buffer = bufnr, desc = "replit-lsp: " .. key .. " suggestion" })
    end
  end
end

local function on_attach(client, bufnr)
  if use_native() then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  else
    require("replit_lsp.ghost").attach(bufnr, client.id)
  end
  set_keymaps(bufnr)
  if M.config.prewarm then
    require("replit_lsp.prewarm").attach(bufnr, client.id)
  end
end

--- Whether the buffer gets suggestions from this plugin now.
local function completions_on(bufnr)
  if use_native() then
    local ok, enabled = pcall(vim.lsp.inline_completion.is_enabled, { bufnr = bufnr })
    return ok and enabled == true
  end
  return require("replit_lsp.ghost").is_attached(bufnr)
end

--- The server's `enabledLanguages` as the user set them (empty: every language).
local function enabled_languages(settings)
  local inner = settings.replitLsp or settings
  local languages = inner.enabledLanguages
  return type(languages) == "table" and languages or {}
end

local function configure_prewarm()
  require("replit_lsp.prewarm").configure({
    idle_ms = M.config.idle_ms,
    enabled_languages = enabled_languages(M.config.settings),
    completions_on = completions_on,
  })
end

-- ------------------------------------------------------------------ setup

--- The settings as the server reads them: under the `replitLsp` key.
local function wrapped_settings(settings)
  if settings == nil or next(settings) == nil then
    return nil
  end
  if settings.replitLsp ~= nil then
    return settings
  end
  return { replitLsp = settings }
end

--- Neovim offers UTF-8 first; positions in UTF-16, the protocol's default that every server
--- implements, keep the plugin independent of how well a server handles the others.
local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.general = caps.general or {}
  caps.general.positionEncodings = { "utf-16" }
  return caps
end

local function client_config()
  local config = M.config
  local settings = wrapped_settings(config.settings)
  return {
    name = M.name,
    cmd = config.cmd,
    capabilities = capabilities(),
    cmd_env = config.cmd_env,
    cmd_cwd = config.cmd_cwd,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    init_options = settings,
    -- Sent again as workspace/didChangeConfiguration once the server is initialized.
    settings = settings or vim.empty_dict(),
  }
end

--- Sends changed settings to running servers (and to servers started later).
---@param settings table
function M.update_settings(settings)
  assert(M.config, "replit_lsp: call setup() first")
  M.config.settings = settings
  configure_prewarm()
  local wrapped = wrapped_settings(settings) or vim.empty_dict()
  for _, client in ipairs(M.clients()) do
    client.settings = wrapped
    if vim.fn.has("nvim-0.11") == 1 then
      client:notify("workspace/didChangeConfiguration", { settings = wrapped })
    else
      client.notify("workspace/didChangeConfiguration", { settings = wrapped })
    end
  end
  if vim.lsp.config then
    vim.lsp.config(M.name, { settings = wrapped, init_options = wrapped })
  end
end

---@param opts? table see `replit_lsp.Config`
function M.setup(opts)
  if vim.fn.has("nvim-0.10") ~= 1 then
    vim.notify("replit_lsp needs Neovim 0.10 or newer", vim.log.levels.ERROR)
    return
  end
  opts = opts or {}
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  -- Lists replace the defaults rather than merge into them.
  for _, key in ipairs({ "cmd", "filetypes", "root_markers" }) do
    if opts[key] then
      M.config[key] = opts[key]
    end
  end
  if opts.settings then
    M.config.settings = opts.settings
  end
  if M.config.ghost_text == "builtin" then
    -- The old name of "plugin", which read as if it meant Neovim's built-in ghost text.
    vim.notify('replit_lsp: ghost_text = "builtin" is now "plugin"', vim.log.levels.WARN)
    M.config.ghost_text = "plugin"
  end
  for key, kind in pairs({
    cmd = "table",
    filetypes = "table",
    root_markers = "table",
    settings = "table",
    keymaps = "table",
    debounce_ms = "number",
    debounce_max_ms = "number",
    adaptive_debounce = "boolean",
    prewarm = "boolean",
    idle_ms = "number",
    slow_threshold_ms = "number",
  }) do
    if type(M.config[key]) ~= kind then
      error(("replit_lsp.setup: %s must be a %s, got %s"):format(key, kind, type(M.config[key])))
    end
  end

  local ghost = require("replit_lsp.ghost")
  local latency = require("replit_lsp.latency")
  latency.configure(M.config)
  configure_prewarm()
  api.nvim_set_hl(0, ghost.hl_group, { link = "Comment", default = true })
  api.nvim_set_hl(0, ghost.hint_hl_group, { link = "NonText", default = true })

  api.nvim_clear_autocmds({ group = group })
  latency.track(group, M.name)
  api.nvim_create_autocmd("LspAttach", {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        on_attach(client, args.buf)
      end
    end,
  })
  api.nvim_create_autocmd("LspDetach", {
    group = group,
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == M.name then
        require("replit_lsp.ghost").detach(args.buf)
        require("replit_lsp.prewarm").detach(args.buf)
      end
    end,
  })

  if vim.lsp.config and vim.lsp.enable then
    vim.lsp.config(M.name, client_config())
    vim.lsp.enable(M.name)
    return
  end

  -- Neovim 0.10: start (or reuse) the client for each buffer of a configured filetype.
  local function start(bufnr)
    local config = client_config()
    config.filetypes = nil
    config.root_markers = nil
    config.root_dir = vim.fs.root(bufnr, M.config.root_markers) or vim.fn.getcwd()
    vim.lsp.start(config, { bufnr = bufnr })
  end
  api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      if vim.bo[args.buf].buftype == "" then
        start(args.buf)
      end
    end,
  })
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    local filetype = vim.bo[bufnr].filetype
    if api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, filetype) then
      start(bufnr)
    end
  end
end

return M
