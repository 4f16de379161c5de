#!/bin/bash
# Session 13's second device call, on call 1's still-warm H100 with 165 s of device time left:
# the default suite again, verbose (addopts cleared: pyproject's -q hid the failing test's name in
# call 1), with -x, to name call 1's one failure before the time ran out.  Carry .wheels.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -1
XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cuda,cpu timeout 130 python3 -m pytest -o addopts="" \
  -m "not slow" -v -n 14 -x -p no:cacheprovider -rfE --junitxml=$OUT/junit.xml > $OUT/pytest2.txt 2>&1
echo exit $?; grep -E "FAILED|ERROR" $OUT/pytest2.txt | head; grep -c PASSED $OUT/pytest2.txt; tail -n 3 $OUT/pytest2.txt
