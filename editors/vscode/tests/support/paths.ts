import * as fs from "node:fs";
import * as path from "node:path";

/** The extension's folder (the one holding package.json), from src/ or from out/. */
export function extensionRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, "esbuild.mjs"))) {
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`no extension folder above ${__dirname}`);
    }
    dir = parent;
  }
  return dir;
}

export interface ConfigurationProperty {
  type: string;
  default: unknown;
}

export interface Manifest {
  main: string;
  activationEvents: string[];
  contributes: {
    commands: { command: string; title: string }[];
    configuration: { properties: Record<string, ConfigurationProperty> };
  };
}

export function readManifest(): Manifest {
  return JSON.parse(
    fs.readFileSync(path.join(extensionRoot(), "package.json"), "utf8"),
  ) as Manifest;
}
