// The TypeScript declarations (tipcast.d.ts, msgpack.d.ts) compile under
// tsc --strict (test/tsconfig.json) against test/types-check.ts, which uses the documented API
// and expects errors where the types must refuse a wrong use.
import assert from "node:assert/strict";
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import {test} from "node:test";
import {fileURLToPath} from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("tipcast.d.ts: tsc --strict accepts the documented uses, refuses wrong ones", () => {
  const tsc = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
  let out = "";
  try {
    out = execFileSync(process.execPath, [tsc, "-p", path.join(ROOT, "test", "tsconfig.json")], {cwd: ROOT, encoding: "utf8"});
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`);
  }
  assert.equal(out.trim(), "");
});

// The declarations' ServerErrorCode, and the codes docs/clients.md's error
// table names, are the codes of docs/protocol.md's error table (itself held
// to the server's core/errors.c by tests/unit_errors.c).
test("tipcast.d.ts's ServerErrorCode and docs/clients.md's error table are the protocol's codes", () => {
  const repo = path.resolve(ROOT, "..", "..");
  const protocol = fs.readFileSync(path.join(repo, "docs", "protocol.md"), "utf8");
  // The error table: from "### `error`" to the next section ("## Room features" follows it now).
  const start = protocol.indexOf("### `error`");
  const section = protocol.slice(start, protocol.indexOf("\n## ", start));
  const serverCodes = new Set([...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]));
  assert.ok(serverCodes.size >= 20, `found the protocol's error table (${serverCodes.size} codes)`);

  const dts = fs.readFileSync(path.join(ROOT, "tipcast.d.ts"), "utf8");
  const union = dts.slice(dts.indexOf("export type ServerErrorCode"), dts.indexOf("export type SdkErrorCode"));
  const declared = new Set([...union.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]));
  assert.deepEqual([...declared].sort(), [...serverCodes].sort());

  const clients = fs.readFileSync(path.join(repo, "docs", "clients.md"), "utf8");
  const table = clients.slice(clients.indexOf("## Errors by code"), clients.indexOf("## Overlay tokens"));
  const rows = [...table.matchAll(/^\| ((?:`[a-z_]+`(?:, )?)+) \| (SDK|server) \|/gm)];
  assert.ok(rows.length > 10, "found docs/clients.md's error table");
  for (const [, codes, from] of rows) {
    for (const [, code] of codes.matchAll(/`([a-z_]+)`/g)) {
      if (from === "server") assert.ok(serverCodes.has(code), `docs/clients.md: ${code} is a server code`);
      else assert.ok(["timeout", "closed", "not_connected"].includes(code), `docs/clients.md: ${code} is an SDK code`);
    }
  }
});
