#!/usr/bin/env bash
# Downloads exactly the wheels of benchmarks/device/wheels.txt (CPython 3.12, manylinux x86-64 or
# pure Python, no dependencies) into <repo>/.whl/, for check.sh on a device that cannot download.
# Run where PyPI is reachable, with any Python that has pip:  bash benchmarks/device/fetch_wheels.sh
set -eu
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PY=${PYTHON:-python3}
mkdir -p .whl
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl -r benchmarks/device/wheels.txt
# Anything else in .whl/ (an older wheel set) would be installed too: keep only the listed ones.
"$PY" - <<'PY'
import pathlib, re
want = set()
for line in open('benchmarks/device/wheels.txt'):
    line = line.split('#')[0].strip()
    if line:
        name, version = line.split('==')
        want.add((re.sub(r'[-_.]+', '_', name).lower(), version))
total = 0
for wheel in sorted(pathlib.Path('.whl').glob('*.whl')):
    name, version = wheel.name.split('-')[:2]
    if (re.sub(r'[-_.]+', '_', name).lower(), version) not in want:
        print(f'removing {wheel.name} (not in wheels.txt)')
        wheel.unlink()
    else:
        total += wheel.stat().st_size
count = len(list(pathlib.Path('.whl').glob('*.whl')))
print(f'.whl/: {count} wheels of {len(want)} listed, {total / 2**20:.1f} MiB')
assert count == len(want), 'a listed wheel is missing'
PY
