import "../support/register";

import * as assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import type * as vscode from "vscode";
import type {
  ClientOptions,
  CompletionRecord,
  ClientState,
  ServerClient,
  ServerController,
  ServerStatus,
  SuggestionCounts,
} from "../../src/controller";
import { activateWith, COMMANDS, deactivate } from "../../src/extension";
import { Disposable, type FakeStatusBarItem, fake } from "../support/vscode";

/** A client that answers `replitLsp/status` from a script and records what it was sent. */
class FakeClient implements ServerClient {
  readonly notifications: { method: string; params: unknown }[] = [];
  readonly commands: unknown[] = [];
  counts: SuggestionCounts | undefined;
  records: CompletionRecord[] = [];
  statuses: ServerStatus["state"][] = ["loading", "ready"];
  startError: Error | undefined;
  stopped = false;
  private readonly listeners = new Set<(state: ClientState) => void>();

  constructor(readonly options: ClientOptions) {}

  async start(): Promise<void> {
    this.emit("starting");
    if (this.startError) {
      this.emit("stopped");
      throw this.startError;
    }
    this.emit("running");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.emit("stopped");
  }

  async sendRequest<R>(method: string, params: unknown): Promise<R> {
    if (method === "workspace/executeCommand") {
      this.commands.push(params);
      return null as R;
    }
    if (method === "replitLsp/completions") {
      return this.records as R;
    }
    assert.equal(method, "replitLsp/status");
    const state = this.statuses.length > 1 ? this.statuses.shift() : this.statuses[0];
    const status: ServerStatus = {
      state: state!,
      message: `model ${state}`,
      percent: state === "loading" ? 42 : null,
      engine_id: 1,
      pid: 7,
      suggestions: this.counts,
    };
    return status as R;
  }

  async sendNotification(method: string, params: unknown): Promise<void> {
    this.notifications.push({ method, params });
  }

  isCompleting(): boolean {
    return false;
  }

  onDidChangeState(listener: (state: ClientState) => void): vscode.Disposable {
    this.listeners.add(listener);
    return new Disposable(() => this.listeners.delete(listener));
  }

  private emit(state: ClientState): void {
    this.listeners.forEach((listener) => listener(state));
  }
}

let clients: FakeClient[];
let context: { subscriptions: { dispose(): unknown }[] };
let configure: (client: FakeClient) => void;

function activate(): ServerController {
  const factory = (options: ClientOptions): FakeClient => {
    const client = new FakeClient(options);
    configure(client);
    clients.push(client);
    return client;
  };
  return activateWith(context as unknown as vscode.ExtensionContext, factory);
}

function statusItem(): FakeStatusBarItem {
  assert.equal(fake.statusItems.length, 1);
  return fake.statusItems[0]!;
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const waitForText = (text: string) =>
  waitFor(`status "${text}" (now "${fake.statusItems[0]?.text}")`, () =>
    statusItem().text.startsWith(text),
  );

beforeEach(() => {
  fake.reset();
  clients = [];
  context = { subscriptions: [] };
  configure = () => undefined;
});

afterEach(async () => {
  await deactivate();
  context.subscriptions.forEach((item) => item.dispose());
});

describe("activation", () => {
  test("starts the server with the settings and shows loading, then ready", async () => {
    fake.settings.set("replitLsp.serverArgs", ["--model", "demo"]);
    fake.settings.set("replitLsp.maxLines", 3);
    fake.workspaceFolders = [{ uri: { fsPath: "/work/project" } }];
    configure = (client) => {
      client.statuses = ["loading", "loading", "ready"];
    };
    activate();

    const item = statusItem();
    assert.ok(item.visible);
    assert.equal(item.command, COMMANDS.showOutput);
    assert.ok(fake.commands.has(COMMANDS.restart) && fake.commands.has(COMMANDS.showOutput));
    await waitForText("$(sync~spin) Replit 42%");
    assert.match(item.tooltip ?? "", /loading/);
    await waitForText("$(check) Replit");
    assert.match(item.tooltip ?? "", /model ready/);

    assert.equal(clients.length, 1);
    const options = clients[0]!.options;
    assert.deepEqual(options.command, {
      command: "replit-lsp",
      args: ["--stdio", "--model", "demo"],
      env: {},
    });
    assert.equal(options.cwd, "/work/project");
    assert.deepEqual(options.initializationOptions(), {
      replitLsp: {
        maxNewTokens: 64,
        invokedMaxNewTokens: 128,
        maxLines: 3,
        topK: 1,
        temperature: 1,
        enabledLanguages: [],
        requestWaitSeconds: 30,
        prependFilePath: false,
        backendUrl: "",
        backendModel: "",
        backendFields: {},
        prewarm: true,
      },
    });
  });

  test("shows the latency of the last completion once ready", async () => {
    activate();
    await waitForText("$(check) Replit");
    clients[0]!.options.onCompletion(123.4, "7");
    assert.equal(statusItem().text, "$(check) Replit 123 ms");
    assert.match(statusItem().tooltip ?? "", /last completion: 123 ms/);
  });

  test("shows slow suggestions, with their median and what to do", async () => {
    activate();
    await waitForText("$(check) Replit");
    const options = clients[0]!.options;
    for (const latency of [2600, 2300, 2400]) {
      options.onCompletion(latency, undefined);
    }
    assert.equal(statusItem().text, "$(check) Replit 2400 ms"); // too few answers to tell
    options.onCompletion(2500, undefined);
    const item = statusItem();
    assert.equal(item.text, "$(watch) Replit 2500 ms slow");
    assert.match(item.tooltip ?? "", /suggestions are slow: 2450 ms median/);
    assert.match(item.tooltip ?? "", /replitLsp\.slowThresholdMs: 1500 ms/);
    assert.match(item.tooltip ?? "", /"--quantization-encoding", "q4_0"/);
    assert.equal(
      (item.backgroundColor as { id: string } | undefined)?.id,
      "statusBarItem.warningBackground",
    );

    for (let i = 0; i < 8; i++) {
      options.onCompletion(90, undefined);
    }
    assert.equal(item.text, "$(check) Replit 90 ms");
    assert.equal(item.backgroundColor, undefined);
  });

  test("a higher slowThresholdMs is not slow", async () => {
    fake.settings.set("replitLsp.slowThresholdMs", 3000);
    activate();
    await waitForText("$(check) Replit");
    for (const latency of [2600, 2300, 2400, 2500]) {
      clients[0]!.options.onCompletion(latency, undefined);
    }
    assert.equal(statusItem().text, "$(check) Replit 2500 ms");
  });

  test("waits the debounce, adapting it to the answers and the typing pace", async () => {
    fake.settings.set("replitLsp.debounceMinMs", 60);
    const controller = activate();
    await waitForText("$(check) Replit");
    const options = clients[0]!.options;
    assert.equal(options.debounceMs(), 60); // nothing measured yet
    for (let i = 0; i < 8; i++) {
      options.onCompletion(3000, undefined);
    }
    for (let i = 0; i < 4; i++) {
      controller.keystroke();
      await new Promise((resolve) => setTimeout(resolve, 120));
    }
    const adapted = options.debounceMs();
    assert.ok(adapted > 120 && adapted < 1000, `${adapted}`);
    fake.settings.set("replitLsp.adaptiveDebounce", false);
    assert.equal(options.debounceMs(), 60);
  });

  test("asks for a suggestion once the client runs, for text typed while it started", async () => {
    let triggered = 0;
    fake.commands.set("editor.action.inlineSuggest.trigger", () => triggered++);
    activate();
    await waitForText("$(check) Replit");
    assert.equal(triggered, 1);
  });

  test("shows what became of the suggestions and reports a word accepted", async () => {
    const accepted: string[] = [];
    fake.commands.set("editor.action.inlineSuggest.acceptNextWord", () => accepted.push("word"));
    activate();
    await waitForText("$(check) Replit");
    const client = clients[0]!;
    client.counts = { shown: 3, accepted: 1, partially_accepted: 0, mean_latency_ms: 41.6 };
    client.options.onCompletion(50, "12");
    await waitFor("the counts", () => /3 shown, 1 accepted/.test(statusItem().tooltip ?? ""));
    assert.match(statusItem().tooltip ?? "", /0 partly accepted, 42 ms on average/);

    client.counts = { shown: 3, accepted: 1, partially_accepted: 1, mean_latency_ms: 41.6 };
    await fake.commands.get(COMMANDS.acceptWord)!();
    assert.deepEqual(accepted, ["word"]);
    assert.deepEqual(client.commands, [
      { command: "replitLsp.didPartiallyAcceptSuggestion", arguments: ["12"] },
    ]);
    assert.match(statusItem().tooltip ?? "", /1 partly accepted/);
  });

  test("shows the server's recent completions and pre-warms in the log", async () => {
    activate();
    await waitForText("$(check) Replit");
    clients[0]!.records = [
      {
        sequence: 4,
        uri: "file:///work/main.py",
        line: 5,
        character: 14,
        prompt_tokens: 40,
        reused_tokens: 32,
        generated_tokens: 0,
        finish: "prewarm",
        milliseconds: 3.1,
      },
    ];
    await fake.commands.get(COMMANDS.showCompletions)!();
    const channel = fake.outputChannels[0]!;
    assert.ok(channel.shown);
    assert.ok(
      channel.lines.includes(
        "[info] #4 file:///work/main.py 5:14 prewarm: prompt 40 tokens (32 reused), " +
          "0 generated, 3.1 ms",
      ),
      channel.lines.join("\n"),
    );
  });

  test("runs python -m lsp_server.cli when a Python interpreter is set", async () => {
    fake.settings.set("replitLsp.pythonPath", "/venv/bin/python");
    activate();
    await waitForText("$(check) Replit");
    assert.equal(clients[0]!.options.command.command, "/venv/bin/python");
    assert.deepEqual(clients[0]!.options.command.args, ["-m", "lsp_server.cli", "--stdio"]);
  });
});

describe("settings changes", () => {
  test("forwards a server setting without restarting", async () => {
    activate();
    await waitForText("$(check) Replit");
    fake.changeSettings({ "replitLsp.temperature": 0.5, "replitLsp.topK": 4 });
    await waitFor("didChangeConfiguration", () => clients[0]!.notifications.length === 1);

    const { method, params } = clients[0]!.notifications[0]!;
    assert.equal(method, "workspace/didChangeConfiguration");
    const settings = (params as { settings: { replitLsp: Record<string, unknown> } }).settings;
    assert.equal(settings.replitLsp.temperature, 0.5);
    assert.equal(settings.replitLsp.topK, 4);
    assert.equal(clients.length, 1);
    assert.equal(clients[0]!.stopped, false);
  });

  test("restarts the server when its command changes", async () => {
    activate();
    await waitForText("$(check) Replit");
    fake.changeSettings({ "replitLsp.serverArgs": ["--weight-path", "/models/x"] });
    await waitFor("a second client", () => clients.length === 2);
    await waitForText("$(check) Replit");

    assert.ok(clients[0]!.stopped);
    assert.deepEqual(clients[1]!.options.command.args, ["--stdio", "--weight-path", "/models/x"]);
    assert.equal(clients[0]!.notifications.length + clients[1]!.notifications.length, 0);
  });

  test("ignores changes to other settings", async () => {
    activate();
    await waitForText("$(check) Replit");
    fake.changeSettings({ "editor.fontSize": 20 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(clients.length, 1);
    assert.equal(clients[0]!.notifications.length, 0);
  });
});

describe("restart and failures", () => {
  test("the restart command replaces the running server", async () => {
    activate();
    await waitForText("$(check) Replit");
    await fake.commands.get(COMMANDS.restart)!();
    assert.equal(clients.length, 2);
    assert.ok(clients[0]!.stopped);
    assert.equal(clients[1]!.stopped, false);
    await waitForText("$(check) Replit");
  });

  test("a server that cannot start shows an error and says which setting to fix", async () => {
    fake.settings.set("replitLsp.serverPath", "/missing/replit-lsp");
    configure = (client) => {
      client.startError = new Error("spawn /missing/replit-lsp ENOENT");
    };
    activate();
    await waitForText("$(error) Replit");

    const item = statusItem();
    assert.match(item.tooltip ?? "", /ENOENT/);
    assert.equal(
      (item.backgroundColor as { id: string } | undefined)?.id,
      "statusBarItem.errorBackground",
    );
    const log = fake.outputChannels[0]!.lines.join("\n");
    assert.match(log, /could not start \/missing\/replit-lsp.*replitLsp\.serverPath/);
  });

  test("a model that fails to load shows an error", async () => {
    configure = (client) => {
      client.statuses = ["loading", "error"];
    };
    activate();
    await waitForText("$(error) Replit");
    assert.match(statusItem().tooltip ?? "", /model error/);
  });

  test("deactivation stops the server", async () => {
    activate();
    await waitForText("$(check) Replit");
    await deactivate();
    assert.ok(clients[0]!.stopped);
    assert.equal(statusItem().text, "$(circle-slash) Replit");
  });
});
