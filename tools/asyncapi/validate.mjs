// Validates an AsyncAPI document with the AsyncAPI project's own parser.
// Usage: node validate.mjs FILE. Prints every diagnostic; exits 1 when any is an error,
// 2 when the file cannot be read.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const SEVERITIES = ["error", "warning", "information", "hint"];

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate.mjs FILE");
  process.exit(2);
}
let text;
try {
  text = await readFile(path, "utf8");
} catch (error) {
  console.error(`cannot read ${path}: ${error.message}`);
  process.exit(2);
}
const { document, diagnostics } = await new Parser().parse(text, { source: path });
for (const diagnostic of diagnostics) {
  const where = diagnostic.path.length ? diagnostic.path.join(".") : "(document)";
  const severity = SEVERITIES[diagnostic.severity] ?? String(diagnostic.severity);
  console.log(`${severity} ${diagnostic.code} at ${where}: ${diagnostic.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
if (errors > 0 || document === undefined) {
  console.log(`${path}: ${errors} error(s); not a valid AsyncAPI document`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()}`);
