"""Thin entry point: ``composer train.py yamls/<run>.yaml [key=value ...]``.

All logic lives in :mod:`composer_plugins.train_entry`.
"""
import sys

from composer_plugins.train_entry import main

if __name__ == '__main__':
    sys.exit(main())
