/**
 * Makes `require("vscode")` return the stub in vscode.ts. Import this before anything that
 * imports `vscode`. Names the stub lacks resolve to inert placeholders, because
 * `vscode-languageclient` reads many enums and classes while it loads and builds a client.
 */

import * as stub from "./vscode";

const STUB_ID = "vscode-stub";

type Resolve = (request: string, ...rest: unknown[]) => string;
const moduleInternals = require("node:module") as {
  _resolveFilename: Resolve;
  _cache: Record<string, unknown>;
};

function placeholder(): unknown {
  const members = new Map<PropertyKey, unknown>();
  const target = function placeholderFunction(): void {};
  return new Proxy(target, {
    get(self, property) {
      if (property === "prototype") {
        return self.prototype;
      }
      if (typeof property === "symbol" || property === "then") {
        return undefined;
      }
      if (!members.has(property)) {
        members.set(property, placeholder());
      }
      return members.get(property);
    },
    construct: () => placeholder() as object,
    apply: () => placeholder(),
  });
}

/** `target` with a placeholder for each name it lacks; its own plain objects likewise. */
function withFallback(target: Record<PropertyKey, unknown>): Record<PropertyKey, unknown> {
  const extra = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(self, property) {
      if (typeof property === "symbol") {
        return self[property];
      }
      if (!extra.has(property)) {
        const value = self[property];
        const isNamespace =
          typeof value === "object" && value !== null && value.constructor === Object;
        if (property in self && !isNamespace) {
          return value;
        }
        const namespace = value as Record<PropertyKey, unknown>;
        extra.set(property, isNamespace ? withFallback(namespace) : placeholder());
      }
      return extra.get(property);
    },
  });
}

const exportsWithFallback = withFallback(stub as Record<PropertyKey, unknown>);

moduleInternals._cache[STUB_ID] = {
  id: STUB_ID,
  filename: STUB_ID,
  loaded: true,
  exports: exportsWithFallback,
};

const resolve = moduleInternals._resolveFilename;
moduleInternals._resolveFilename = function (this: unknown, request, ...rest) {
  return request === "vscode" ? STUB_ID : resolve.call(this, request, ...rest);
};
