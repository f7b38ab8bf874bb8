"""Parses a Prometheus text exposition from stdin with the real prometheus_client parser
and prints one JSON array per sample: [family, type, sample name, labels, value]. A text
the parser rejects makes it exit non-zero."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps([family.name, family.type, sample.name, sample.labels, sample.value]))
