// Drives code-server in Chromium as a user would, for tests/test_vscode_web.py: opens files,
// types, waits for ghost text, accepts it, and prints what it saw as one JSON line.
//
// node vscode_web_driver.mjs CONFIG.json, where the config names the tools folder (holding
// playwright-core), Chromium, the workbench URL, an empty profile folder, the screenshot path
// and the scenario's files and keystrokes.

import { readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { chromium } = createRequire(`${config.toolsDir}/node_modules/`)(
  "playwright-core",
);
const STATUS_ITEM = '[id="replit-lsp.replit-lsp"]';
const GHOST_TIMEOUT_MS = config.ghostTimeoutMs;
const SAVE_TIMEOUT_MS = 30_000;

/** The status item's label, recorded from page load on: loading can be brief. */
function recordStatus(selector) {
  window.replitStatus = [];
  setInterval(() => {
    const label = document.querySelector(selector)?.getAttribute("aria-label");
    const seen = window.replitStatus;
    if (label && seen[seen.length - 1] !== label) {
      seen.push(label);
    }
  }, 20);
}

/** The ghost text in the focused editor: the part on the cursor's line, then the lines
 * below it, as VS Code draws them (spaces as no-break spaces). */
function readGhost() {
  const editor = document.querySelector(".monaco-editor.focused");
  if (!editor) {
    return "";
  }
  const text = (nodes) => [...nodes].map((node) => node.textContent).join("");
  const first = text(
    editor.querySelectorAll(".view-lines .ghost-text-decoration"),
  );
  const rest = [
    ...editor.querySelectorAll(".view-zones .ghost-text .view-line"),
  ].map((line) => text(line.childNodes));
  if (!first && rest.length === 0) {
    return "";
  }
  return [first, ...rest].join("\n").replaceAll("\u00a0", " ");
}

async function waitForGhost(page) {
  await page.waitForFunction(() => window.replitGhost(), null, {
    timeout: GHOST_TIMEOUT_MS,
    polling: 50,
  });
  return page.evaluate(() => window.replitGhost());
}

async function openFile(page, name) {
  await page
    .locator(".explorer-folders-view .monaco-list-row", { hasText: name })
    .click();
  const tab = page.locator(".tabs-container .tab.active", { hasText: name });
  await tab.waitFor();
  await page
    .locator(".editor-instance .monaco-editor .view-lines")
    .first()
    .click();
  await page.keyboard.press("Control+End");
}

async function statusLabel(page) {
  return page.evaluate(
    (item) => document.querySelector(item)?.getAttribute("aria-label") ?? "",
    STATUS_ITEM,
  );
}

/** Waits for the status item's label (its text and tooltip) to include `text`. */
async function waitForStatus(page, text) {
  await page.waitForFunction(
    ([item, wanted]) =>
      document
        .querySelector(item)
        ?.getAttribute("aria-label")
        ?.includes(wanted),
    [STATUS_ITEM, text],
  );
  return statusLabel(page);
}

/** Runs a command from the Command Palette, by its title. */
async function runCommand(page, title) {
  await page.keyboard.press("F1");
  await page.keyboard.type(title);
  await page
    .locator(".quick-input-list .monaco-list-row.focused", { hasText: title })
    .waitFor();
  await page.keyboard.press("Enter");
}

/** Saves the edited file; returns what is on disk once the write has landed. */
async function save(page) {
  const before = statSync(config.main.path).mtimeMs;
  await page.keyboard.press("Control+S");
  const deadline = Date.now() + SAVE_TIMEOUT_MS;
  while (statSync(config.main.path).mtimeMs === before) {
    if (Date.now() > deadline) {
      throw new Error(`${config.main.path} was not saved`);
    }
    await page.waitForTimeout(50);
  }
  return readFileSync(config.main.path, "utf8");
}

const context = await chromium.launchPersistentContext(config.profileDir, {
  executablePath: config.chromium,
  headless: true,
  viewport: { width: 1000, height: 560 },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const result = {};
const started = Date.now();
/** Progress on stderr, which the test shows when the session fails. */
function step(name) {
  console.error(`${((Date.now() - started) / 1000).toFixed(1)} s: ${name}`);
}
try {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.addInitScript(recordStatus, STATUS_ITEM);
  await page.addInitScript(`window.replitGhost = ${readGhost}`);
  await page.goto(config.url);
  await page
    .locator(".explorer-folders-view .monaco-list-row")
    .first()
    .waitFor();

  // Typed as soon as the editor opens, before the server is up.
  step("workbench loaded");
  await openFile(page, config.early.file);
  result.statusWhenTyping = await statusLabel(page);
  await page.keyboard.type(config.early.typed);
  result.earlyGhost = await waitForGhost(page);
  step("early ghost text shown");
  await page.keyboard.press("Escape");

  await waitForStatus(page, "replit-lsp: ready");
  step("server ready");
  await openFile(page, config.main.file);
  await page.keyboard.type(config.main.typed);
  result.mainGhost = await waitForGhost(page);
  await page.screenshot({ path: config.screenshot });
  step("ghost text shown");
  await page.keyboard.press("Tab");
  await page.waitForFunction(() => !window.replitGhost(), null, {
    polling: 50,
  });
  result.savedAfterTab = await save(page);
  await waitForStatus(page, "1 accepted");

  // At the end of the first line, where nothing was typed (VS Code answers an explicit
  // trigger from what it already has for a position), ask with "Trigger Inline Suggestion"
  // and take one word of the answer with "Replit LSP: Accept Next Word of the Suggestion".
  await page.keyboard.press("Escape");
  step("accepted and counted");
  await page.keyboard.press("Control+Home");
  await page.keyboard.press("End");
  await page.waitForFunction(() => !window.replitGhost(), null, {
    polling: 50,
  });
  await runCommand(page, "Trigger Inline Suggestion");
  result.invokedGhost = await waitForGhost(page);
  step("invoked ghost text shown");
  await page.keyboard.press("Control+ArrowRight");
  await page.waitForFunction(
    (shown) => window.replitGhost() !== shown,
    result.invokedGhost,
  );
  await page.keyboard.press("Escape");
  result.savedAfterWord = await save(page);
  result.statusAfterWord = await waitForStatus(page, "1 partly accepted");
  step("word accepted and counted");
  result.statusHistory = await page.evaluate(() => window.replitStatus);

  // The cursor moved without typing and left to rest, then another editor switched to: the
  // extension tells the server where the cursor rests each time ("Show Recent Completions"
  // writes what the server recorded to the log).
  await page.keyboard.press("Control+End");
  await page.waitForTimeout(config.restMs);
  await page
    .locator(".explorer-folders-view .monaco-list-row", {
      hasText: config.early.file,
    })
    .click();
  await page
    .locator(".tabs-container .tab.active", { hasText: config.early.file })
    .waitFor();
  await page.waitForTimeout(config.restMs);
  // The Output panel shows the log's last lines: the heading or the records under it.
  await runCommand(page, "Replit LSP: Show Recent Completions");
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll(".view-line")].some((line) =>
        /completions:|generated,/.test(line.textContent),
      ),
    null,
    { polling: 100 },
  );
  step("cursor rested, editor switched, recent completions shown");
} catch (error) {
  // What the window looked like when the session went wrong.
  await context.pages()[0]?.screenshot({ path: config.failureScreenshot });
  throw error;
} finally {
  await context.close();
}
console.log(JSON.stringify(result));
