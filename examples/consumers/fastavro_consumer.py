"""Decode a Puente delivery topic with fastavro and only the exported .avsc files.

    puente schemas export --recipient conapina --out schemas-conapina
    KAFKA_BOOTSTRAP_SERVERS=... python fastavro_consumer.py \
        --schemas schemas-conapina --topic hub.out.conapina.return_arrival

Each value is Avro single-object encoded: ``C3 01``, the CRC-64-AVRO fingerprint of
the writer schema's Parsing Canonical Form (8 bytes, little-endian), the body.
fastavro computes that fingerprint itself, so the lookup table is built from the
files; each decoded event is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import fastavro
from common import line, records, split
from fastavro.schema import fingerprint, to_parsing_canonical_form


def schemas_by_fingerprint(folder: Path) -> dict[bytes, tuple[str, Any]]:
    """Fingerprint (wire bytes) -> (file name, parsed schema) for every .avsc file."""
    found = {}
    for path in sorted(folder.glob("*.avsc")):
        parsed = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
        canonical = to_parsing_canonical_form(parsed)
        found[bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))] = (path.name, parsed)
    return found


def main() -> int:
    """Print every delivery of the topic, decoded; exit 1 if one has no schema here."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--schemas", type=Path, required=True)
    options.add_argument("--topic", required=True)
    options.add_argument("--idle-ms", type=int, default=5000)
    args = options.parse_args()
    known = schemas_by_fingerprint(args.schemas)
    missing = 0
    for record in records(args.topic, args.idle_ms):
        fp, body = split(record.value)
        if fp not in known:
            sys.stderr.write(f"no exported schema has fingerprint {fp.hex()}\n")
            missing += 1
            continue
        name, schema = known[fp]
        event = fastavro.schemaless_reader(io.BytesIO(body), schema)
        sys.stdout.write(line(record, name, event) + "\n")
        sys.stdout.flush()
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
