#!/usr/bin/env python
"""Django's command-line utility for the django-rexecutor test project."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # Make the library importable from a plain checkout, without `pip install -e .`.
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
