"""The reference AsyncAPI validator, ``@asyncapi/parser`` (npm), run from the tests.

It is installed on first use into a cache outside the repository
(``PUENTE_ASYNCAPI_PARSER_DIR``, default ``~/.cache/puente/asyncapi-parser``), the way
the Apache Kafka jars are fetched into the Maven repository, together with its Avro
schema parser so the Avro payloads are checked too. A machine without Node.js or
npm fails the test that needs it with one line saying so: nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest

PACKAGES: Final = ("@asyncapi/parser@3.6.3", "@asyncapi/avro-schema-parser@3.0.24")
_SCRIPT: Final = """\
// Validates AsyncAPI documents with @asyncapi/parser (Avro payloads included).
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";
import { AvroSchemaParser } from "@asyncapi/avro-schema-parser";

const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const names = ["error", "warning", "info", "hint"];
let failed = false;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
  const errors = diagnostics.filter((d) => d.severity === 0);
  const warnings = diagnostics.filter((d) => d.severity === 1);
  for (const d of diagnostics) {
    const where = d.path.join(".");
    console.log(`${file}: ${names[d.severity]} ${d.code} ${where}: ${d.message}`);
  }
  const state = document ? "parsed" : "not parsed";
  console.log(`${file}: ${errors.length} errors, ${warnings.length} warnings, ${state}`);
  if (errors.length || !document) failed = true;
}
process.exit(failed ? 1 : 0);
"""


def parser_dir() -> Path:
    """Where the parser is installed (outside the repository)."""
    configured = os.environ.get("PUENTE_ASYNCAPI_PARSER_DIR")
    return (
        Path(configured) if configured else Path.home() / ".cache/puente/asyncapi-parser"
    )


def ensure_parser() -> Path:
    """The validator script, the npm packages installed beside it on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the AsyncAPI document is validated by @asyncapi/parser: install Node.js "
            "and npm (Debian: apt-get install nodejs npm)",
            pytrace=False,
        )
    folder = parser_dir()
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "validate.mjs"
    if not script.exists() or script.read_text() != _SCRIPT:
        script.write_text(_SCRIPT)
    if not (folder / "node_modules/@asyncapi/avro-schema-parser").is_dir():
        manifest = {"name": "puente-asyncapi-parser", "private": True}
        (folder / "package.json").write_text(json.dumps(manifest))
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", *PACKAGES],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"npm could not install {' '.join(PACKAGES)}: {done.stderr[-500:]}",
                pytrace=False,
            )
    return script


def validate(*documents: Path) -> tuple[int, str]:
    """Run the validator on ``documents``: its exit code and its report."""
    script = ensure_parser()
    done = subprocess.run(
        [str(shutil.which("node")), str(script), *map(str, documents)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr
