#!/usr/bin/env bash
# Checks the Prometheus rules and the Grafana dashboard under deploy/monitoring with promtool:
# every alert expression and every dashboard query parses, the alert unit tests pass, every
# alert has a test in which it fires and a runbook entry in deploy/README.md.
set -euo pipefail
cd "$(dirname "$0")/../deploy/monitoring"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

promtool check rules alerts.yaml

# The dashboard's queries as recording rules (JSON is YAML), with Grafana's interval
# variables replaced by a literal range, so promtool parses each one.
python3 - grafana-dashboard.json >"$tmp/dashboard-rules.json" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
rules = []
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(dash["panels"]):
    for t in p.get("targets", []):
        expr = t["expr"]
        for var in ("$__rate_interval", "$__interval", "$__range"):
            expr = expr.replace(var, "5m")
        rules.append({"record": "dashboard:panel_%s:%s" % (p["id"], t.get("refId", "A")),
                      "expr": expr})
if len(rules) < 10:
    sys.exit("found only %d dashboard queries" % len(rules))
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, sys.stdout, indent=1)
PY
promtool check rules "$tmp/dashboard-rules.json"

promtool test rules alerts_test.yaml

# Every alert fires in at least one test and has a runbook entry.
python3 - alerts.yaml alerts_test.yaml ../README.md <<'PY'
import re, sys
alerts = re.findall(r"^\s*- alert: (\w+)", open(sys.argv[1]).read(), re.M)
tests = open(sys.argv[2]).read()
fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
runbook = open(sys.argv[3]).read()
missing = [a for a in alerts if a not in fired]
if missing:
    sys.exit("alerts without a test in which they fire: %s" % missing)
undocumented = [a for a in alerts if not re.search(r"^#+ .*\b%s\b" % a, runbook, re.M)]
if undocumented:
    sys.exit("alerts without a runbook entry in deploy/README.md: %s" % undocumented)
print("%d alerts: each fires in a test and has a runbook entry" % len(alerts))
PY
