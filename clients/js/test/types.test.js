// The TypeScript declarations (tipcast.d.ts, msgpack.d.ts) compile under
// tsc --strict (test/tsconfig.json) against test/types-check.ts, which uses the documented API
// and expects errors where the types must refuse a wrong use.
import assert from "node:assert/strict";
import {execFileSync} from "node:child_process";
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
