"""Prints template.yaml as the stand-in deploys it: transformed by the SAM translator with
deploy.py's own transform_template, as JSON.

Usage: python3 transform.py TEMPLATE
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "standin"))
from deploy import BUCKET, transform_template  # noqa: E402

if __name__ == "__main__":
    json.dump(transform_template(sys.argv[1], BUCKET), sys.stdout, indent=1, sort_keys=True)
