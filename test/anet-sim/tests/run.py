#!/usr/bin/env python3
# run.py — tiny TAP runner: imports tests/test_*.py and runs every test_*
# function in file order; prints "ok N - name" / "not ok N - name".
import glob
import importlib.util
import os
import sys
import traceback

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
n = passed = failed = 0
for path in sorted(glob.glob(os.path.join(here, 'test_*.py'))):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, fn in list(vars(mod).items()):
        if not name.startswith('test_') or not callable(fn):
            continue
        n += 1
        label = '%s.%s' % (mod.__name__, name)
        try:
            fn()
            passed += 1
            print('ok %d - %s' % (n, label), flush=True)
        except Exception as e:  # noqa: any failure is a test failure
            failed += 1
            print('not ok %d - %s' % (n, label), flush=True)
            for line in traceback.format_exception_only(type(e), e):
                print('#   ' + line.rstrip(), flush=True)
print('1..%d' % n)
print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
