import "../support/register";

import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { COMMANDS } from "../../src/extension";
import {
  CLIENT_DEFAULTS,
  CLIENT_SETTING_KEYS,
  classifyChange,
  clientSettings,
  expandVariables,
  LAUNCH_SETTING_KEYS,
  languageEnabled,
  launchSettings,
  SECTION,
  SERVER_SETTING_KEYS,
  serverCommand,
  serverConfiguration,
  type Variables,
} from "../../src/settings";
import { readManifest } from "../support/paths";

const VARS: Variables = {
  home: "/home/ada",
  workspaceFolder: "/work/project",
  env: { MODELS: "/models" },
};

function reader(values: Record<string, unknown>) {
  return (key: string): unknown => values[key];
}

describe("serverConfiguration", () => {
  test("nests every server setting under the section the server accepts", () => {
    const values = {
      maxNewTokens: 32,
      invokedMaxNewTokens: 96,
      maxLines: 4,
      topK: 5,
      temperature: 0.2,
      enabledLanguages: ["python"],
      requestWaitSeconds: 2.5,
      prependFilePath: true,
    };
    assert.deepEqual(serverConfiguration(reader(values)), { replitLsp: values });
  });

  test("leaves out launch settings and unset values, so the server sees no unknown keys", () => {
    const values = { serverPath: "/bin/replit-lsp", serverArgs: ["--model", "demo"], topK: 2 };
    assert.deepEqual(serverConfiguration(reader(values)), { replitLsp: { topK: 2 } });
  });

  test("passes values through unchanged: the server validates and reports bad ones", () => {
    assert.deepEqual(serverConfiguration(reader({ maxLines: 0 })), { replitLsp: { maxLines: 0 } });
  });
});

describe("serverCommand", () => {
  test("runs the replit-lsp executable with --stdio before the extra arguments", () => {
    const launch = launchSettings(reader({ serverArgs: ["--model", "demo"] }));
    assert.deepEqual(serverCommand(launch, VARS), {
      command: "replit-lsp",
      args: ["--stdio", "--model", "demo"],
      env: {},
    });
  });

  test("runs the package's module when a Python interpreter is set", () => {
    const launch = launchSettings(
      reader({ serverPath: "ignored", pythonPath: "~/venv/bin/python", serverArgs: ["--x"] }),
    );
    assert.deepEqual(serverCommand(launch, VARS), {
      command: "/home/ada/venv/bin/python",
      args: ["-m", "lsp_server.cli", "--stdio", "--x"],
      env: {},
    });
  });

  test("expands variables in the path, the arguments and the environment", () => {
    const launch = launchSettings(
      reader({
        serverPath: "${workspaceFolder}/.venv/bin/replit-lsp",
        serverArgs: ["--weight-path", "${env:MODELS}/replit"],
        serverEnv: { HF_HOME: "${userHome}/.cache/hf", BAD: 3 },
      }),
    );
    assert.deepEqual(serverCommand(launch, VARS), {
      command: "/work/project/.venv/bin/replit-lsp",
      args: ["--stdio", "--weight-path", "/models/replit"],
      env: { HF_HOME: "/home/ada/.cache/hf" },
    });
  });

  test("falls back to the defaults for values of the wrong type", () => {
    assert.deepEqual(
      launchSettings(reader({ serverPath: " ", pythonPath: 7, serverArgs: "--x", serverEnv: [] })),
      { serverPath: "replit-lsp", pythonPath: "", serverArgs: [], serverEnv: {} },
    );
  });
});

describe("clientSettings", () => {
  test("reads the extension's own settings", () => {
    const settings = clientSettings(
      reader({
        prewarm: false,
        idleMs: 500,
        adaptiveDebounce: false,
        debounceMinMs: 50,
        debounceMaxMs: 800,
        slowThresholdMs: 2000,
        enabledLanguages: ["python"],
      }),
    );
    assert.deepEqual(settings, {
      prewarm: false,
      idleMs: 500,
      debounce: { adaptive: false, minMs: 50, maxMs: 800 },
      slowThresholdMs: 2000,
      enabledLanguages: ["python"],
    });
    assert.ok(languageEnabled(settings, "python"));
    assert.ok(!languageEnabled(settings, "go"));
    assert.ok(languageEnabled(CLIENT_DEFAULTS, "go"));
  });

  test("falls back to the defaults for values of the wrong type, and keeps max >= min", () => {
    const settings = clientSettings(
      reader({ prewarm: "yes", idleMs: -1, debounceMinMs: 400, debounceMaxMs: 100 }),
    );
    assert.deepEqual(settings, {
      ...CLIENT_DEFAULTS,
      debounce: { adaptive: true, minMs: 400, maxMs: 400 },
    });
  });

  test("the fallbacks are package.json's defaults", () => {
    const properties = readManifest().contributes.configuration.properties;
    const fromManifest = clientSettings((key) => properties[`${SECTION}.${key}`]?.default);
    assert.deepEqual(fromManifest, CLIENT_DEFAULTS);
  });
});

describe("expandVariables", () => {
  test("keeps ${workspaceFolder} as written when no folder is open", () => {
    const vars = { ...VARS, workspaceFolder: undefined };
    assert.equal(expandVariables("${workspaceFolder}/m", vars), "${workspaceFolder}/m");
  });

  test("expands ~ only at the start", () => {
    assert.equal(expandVariables("~", VARS), "/home/ada");
    assert.equal(expandVariables("a~/b", VARS), "a~/b");
    assert.equal(expandVariables("${env:UNSET}x", VARS), "x");
  });
});

describe("classifyChange", () => {
  const affects =
    (...keys: string[]) =>
    (section: string) =>
      keys.includes(section);

  test("restarts for launch settings, updates for server settings", () => {
    assert.equal(classifyChange(affects("replitLsp.serverArgs")), "restart");
    assert.equal(classifyChange(affects("replitLsp.pythonPath", "replitLsp.topK")), "restart");
    assert.equal(classifyChange(affects("replitLsp.temperature")), "update");
    assert.equal(classifyChange(affects("replitLsp.trace.server")), "none");
    assert.equal(classifyChange(affects("editor.fontSize")), "none");
  });
});

describe("package.json", () => {
  const manifest = readManifest();

  test("contributes exactly the settings the extension reads", () => {
    const read = [...SERVER_SETTING_KEYS, ...LAUNCH_SETTING_KEYS, ...CLIENT_SETTING_KEYS];
    const expected = [...read, "trace.server"].map((key) => `${SECTION}.${key}`).sort();
    assert.deepEqual(Object.keys(manifest.contributes.configuration.properties).sort(), expected);
  });

  test("gives every setting a default of its declared type", () => {
    for (const [name, property] of Object.entries(manifest.contributes.configuration.properties)) {
      const value = property.default;
      const actual = Array.isArray(value)
        ? "array"
        : Number.isInteger(value) && property.type === "integer"
          ? "integer"
          : typeof value;
      assert.equal(actual, property.type, `${name} defaults to ${JSON.stringify(value)}`);
    }
  });

  test("contributes the commands the extension registers", () => {
    const contributed = manifest.contributes.commands.map((command) => command.command).sort();
    assert.deepEqual(contributed, Object.values(COMMANDS).sort());
  });

  test("activates at startup and for the usual languages, from the bundle", () => {
    assert.equal(manifest.main, "./dist/extension.js");
    for (const event of ["onStartupFinished", "onLanguage:python", "onLanguage:typescript"]) {
      assert.ok(manifest.activationEvents.includes(event), event);
    }
  });
});
