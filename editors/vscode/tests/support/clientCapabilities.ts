import "./register";

import { LanguageClient } from "vscode-languageclient/node";
import type { ClientCapabilities } from "vscode-languageserver-protocol";
import { CLIENT_ID, CLIENT_NAME } from "../../src/client";

/**
 * The capabilities the extension's client sends in `initialize`, computed by the same
 * `vscode-languageclient` the extension bundles (its features fill them in; no process starts).
 */
export function extensionClientCapabilities(): ClientCapabilities {
  const client = new LanguageClient(
    CLIENT_ID,
    CLIENT_NAME,
    { command: "unused" },
    { documentSelector: [{ scheme: "file" }, { scheme: "untitled" }] },
  );
  // Private in the typings; it is what `start()` puts in the initialize request.
  const internals = client as unknown as { computeClientCapabilities(): ClientCapabilities };
  return internals.computeClientCapabilities();
}
