--- `:checkhealth replit_lsp`: the server binary, its version, the configuration, and the
--- model's state as each running server reports it.

local M = {}

local HAS_011 = vim.fn.has("nvim-0.11") == 1

--- The command without its options, to run `--help` with: `{"replit-lsp"}` from
--- `{"replit-lsp", "--stdio", ...}`, `{"python", "-m", "lsp_server.cli"}` from the module form.
local function base_command(cmd)
  local base = {}
  for i, arg in ipairs(cmd) do
    if i > 1 and arg:sub(1, 2) == "--" then
      break
    end
    base[#base + 1] = arg
  end
  return base
end

--- The description line of an argparse `--help`: the first paragraph after the usage.
local function description(help)
  local after_usage = help:match("\n%s*\n([^\n]+)")
  return vim.trim(after_usage or help:match("[^\n]+") or "")
end

local function check_binary(config)
  local health = vim.health
  local exe = config.cmd[1]
  local path = vim.fn.exepath(exe)
  if path == "" then
    health.error(("server `%s` not found: not executable or not on PATH"):format(exe), {
      "install the server: `pip install replit-lsp` (in a virtual environment is fine)",
      "or give its full path in setup(): "
        .. 'cmd = { "/path/to/replit-lsp", "--stdio", "--model", "demo" }',
    })
    return
  end
  health.ok(("server: `%s` (%s)"):format(table.concat(config.cmd, " "), path))
  local command = base_command(config.cmd)
  local shown = table.concat(command, " ") .. " --help"
  command[1] = path
  command[#command + 1] = "--help"
  local ok, process = pcall(vim.system, command, { text = true, env = config.cmd_env })
  if not ok then
    health.error(("`%s` could not start: %s"):format(shown, process))
    return
  end
  local result = process:wait(30000)
  if result.code == 0 then
    health.ok(("`%s` works: %s"):format(shown, description(result.stdout or "")))
  else
    local reason = result.signal ~= 0
        and ("timed out or was killed (signal %d)"):format(result.signal)
      or ("exited with %d"):format(result.code)
    health.error(
      ("`%s` %s"):format(shown, reason),
      { vim.trim((result.stderr or ""):sub(-500)) }
    )
  end
end

local function request_sync(client, method, params, timeout)
  if HAS_011 then
    return client:request_sync(method, params, timeout)
  end
  return client.request_sync(method, params, timeout)
end

local function check_clients(plugin)
  local health = vim.health
  local clients = plugin.clients()
  if #clients == 0 then
    health.info(
      "no replit-lsp server is running: open a file of a configured filetype to start one"
    )
    return
  end
  for _, client in ipairs(clients) do
    local info = client.server_info or {}
    local buffers = vim.tbl_count(client.attached_buffers or {})
    health.ok(
      ("client %d: server %s %s, root %s, attached to %d buffer(s)"):format(
        client.id,
        info.name or "?",
        info.version or "(no version reported)",
        client.root_dir or "(none)",
        buffers
      )
    )
    local response, err = request_sync(client, "replitLsp/status", vim.empty_dict(), 5000)
    if not response then
      health.warn(("model status: no answer (%s)"):format(err or "unknown error"))
    elseif response.err then
      health.warn(("model status: %s"):format(response.err.message or vim.inspect(response.err)))
    else
      local status = response.result or {}
      local line = ("model %s (server pid %s): %s"):format(
        tostring(status.state),
        tostring(status.pid),
        tostring(status.message or "")
      )
      if status.state == "loading" and type(status.percent) == "number" then
        line = ("%s [%s %d%%]"):format(line, tostring(status.stage), status.percent)
      end
      if status.state == "ready" then
        health.ok(line)
        if status.suggestions then
          health.info("suggestions: " .. plugin.describe_suggestions(status.suggestions))
        end
      elseif status.state == "loading" or status.state == "idle" then
        health.info(line)
      else
        health.error(line, { "run the server's command in a terminal to see the whole error" })
      end
    end
  end
end

--- The client's own measure of the answer times, and the advice when they are slow.
local function check_latency(config)
  local health = vim.health
  local latency = require("replit_lsp.latency")
  local median = latency.median_answer_ms()
  if not median then
    health.info("answer time: no suggestion asked for yet")
    return
  end
  local measured = ("%d ms median of the last %d answers, debounce %d ms"):format(
    median,
    latency.answer_count(),
    latency.debounce_ms()
  )
  if latency.slow_ms(config.slow_threshold_ms) then
    health.warn(
      ("suggestions are slow: %s, over slow_threshold_ms (%d ms)"):format(
        measured,
        config.slow_threshold_ms
      ),
      {
        "a quantized model answers faster: add `--quantization-encoding q4_0` to `cmd`",
        "or run the model on a GPU (`--use-gpu`) or a team server (`--backend-url`)",
      }
    )
  else
    health.ok("answer time: " .. measured)
  end
end

function M.check()
  local health = vim.health
  local plugin = require("replit_lsp")

  health.start("replit-lsp: editor")
  local version = vim.version()
  local version_text = ("%d.%d.%d"):format(version.major, version.minor, version.patch)
  if vim.fn.has("nvim-0.10") ~= 1 then
    health.error(("Neovim %s: 0.10 or newer is needed"):format(version_text))
    return
  end
  local native = vim.lsp.inline_completion ~= nil
    and (plugin.config or plugin.defaults).ghost_text ~= "plugin"
  health.ok(
    ("Neovim %s: %s"):format(
      version_text,
      native and "ghost text through vim.lsp.inline_completion"
        or "ghost text drawn by this plugin"
    )
  )
  local config = plugin.config
  if not config then
    health.warn('setup() has not been called: add require("replit_lsp").setup({...})')
    config = plugin.defaults
  else
    health.info("filetypes: " .. table.concat(config.filetypes, ", "))
    local settings = "(server defaults)"
    if next(config.settings) then
      settings = vim.inspect(config.settings, { newline = " ", indent = "" })
    end
    health.info("settings: " .. settings)
    local keys = {}
    local names = { "accept", "accept_line", "accept_word", "dismiss", "next", "prev", "trigger" }
    for _, name in ipairs(names) do
      keys[#keys + 1] = ("%s=%s"):format(name, tostring(config.keymaps[name]))
    end
    health.info("keymaps: " .. table.concat(keys, ", "))
  end

  health.start("replit-lsp: server")
  check_binary(config)
  check_clients(plugin)
  check_latency(config)
end

return M
