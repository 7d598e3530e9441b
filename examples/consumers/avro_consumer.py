"""Decode a Puente delivery topic with the Apache ``avro`` library and exported files.

    puente schemas export --recipient conapina --out schemas-conapina
    KAFKA_BOOTSTRAP_SERVERS=... python avro_consumer.py \
        --schemas schemas-conapina --topic hub.out.conapina.return_arrival

The fingerprint in each value (and in ``ce_dataschema``) is the CRC-64-AVRO of the
specification's Parsing Canonical Form, as fastavro and Java compute it. The ``avro``
library (1.12) computes *another* number for any schema with a logical type: its
canonical form keeps ``{"type": "string"}`` where the specification writes
``"string"``. So ``Schema.fingerprint()`` cannot be the lookup key; this consumer
takes the specification's fingerprints from the export's ``index.json``
(fingerprint hex -> file) instead. Decoding itself is the same.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
from common import line, records, split


def schemas_by_fingerprint(folder: Path) -> dict[bytes, tuple[str, Any]]:
    """Fingerprint (wire bytes) -> (file name, parsed schema), from ``index.json``."""
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    found = {}
    for fingerprint_hex, name in index.items():
        text = (folder / name).read_text(encoding="utf-8")
        found[bytes.fromhex(fingerprint_hex)] = (name, avro.schema.parse(text))
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
        event = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(body)))
        sys.stdout.write(line(record, name, event) + "\n")
        sys.stdout.flush()
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
