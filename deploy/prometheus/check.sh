#!/bin/sh
# Checks the Prometheus configuration, the alert rules and their unit tests with
# promtool (Debian package `prometheus`). Exits non-zero on the first failure.
set -eu
cd "$(dirname "$0")"
if ! command -v promtool > /dev/null 2>&1; then
  echo "promtool not found: apt-get install -y prometheus" >&2
  exit 1
fi
promtool check config prometheus.yml
promtool check rules rules/*.yml
promtool test rules tests/*.yml
