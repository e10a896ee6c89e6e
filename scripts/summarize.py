#!/usr/bin/env python3
"""Summarize Meson test logs (meson-logs/testlog.json) of several builds.

    summarize.py --build NAME BUILD_DIR STATUS [--build ...] [--suite NAME STATUS NOTE ...]
    summarize.py BUILD_DIR [BUILD_DIR ...]        (name = directory name, status ok)

STATUS is what scripts/test.sh saw: ok, or configure/compile/test-setup when that step
failed (counted as one failure of the build), or test-exit=N when `meson test` failed
without the log showing why. Prints a table per build, the failing tests, and ends with
exactly one line "N passed, N failed" (", N skipped" appended when there are skips).
A --suite is a runner outside Meson (a binding's cargo/go/Lua suite, the bench smoke):
it counts as one test, passed when STATUS is ok; NOTE (its own counts) is shown beside it.
Exit status 1 if anything failed.
"""
import argparse
import json
import os
import sys

PASS = {'OK', 'EXPECTEDFAIL'}
SKIP = {'SKIP'}
# Everything else (FAIL, TIMEOUT, ERROR, UNEXPECTEDPASS, unknown) is a failure.


def read_log(path):
    """[(suite, name, result, duration)] from a testlog.json; None if there is no log."""
    if not os.path.exists(path):
        return None
    rows = []
    with open(path, encoding='utf-8', errors='replace') as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                rows.append(('?', '%s:%d' % (os.path.basename(path), n), 'ERROR', 0.0))
                continue
            name = str(obj.get('name', '?'))
            suite = obj.get('suite')
            if suite is None and ' / ' in name:
                # Meson 1.0 has no "suite" field: name is "project:suite1+suite2 / test".
                suite, name = name.split(' / ', 1)
            if isinstance(suite, list):
                suite = '+'.join(suite)
            suite = '+'.join(s.split(':', 1)[-1] for s in str(suite or '').split('+'))
            rows.append((suite, name, str(obj.get('result', 'ERROR')).upper(),
                         float(obj.get('duration') or 0.0)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--build', nargs=3, action='append', default=[],
                    metavar=('NAME', 'DIR', 'STATUS'))
    ap.add_argument('--suite', nargs=3, action='append', default=[],
                    metavar=('NAME', 'STATUS', 'NOTE'))
    ap.add_argument('dirs', nargs='*')
    a = ap.parse_args()
    builds = [tuple(b) for b in a.build] + [(os.path.basename(os.path.normpath(d)), d, 'ok')
                                            for d in a.dirs]
    if not builds and not a.suite:
        ap.error('no builds given')

    total_pass = total_fail = total_skip = 0
    table = []
    failures = []
    for name, bdir, status in builds:
        rows = read_log(os.path.join(bdir, 'meson-logs', 'testlog.json'))
        p = sum(1 for r in rows or [] if r[2] in PASS)
        s = sum(1 for r in rows or [] if r[2] in SKIP)
        bad = [r for r in rows or [] if r[2] not in PASS | SKIP]
        f = len(bad)
        for suite, tname, result, dur in bad:
            failures.append('%s: %s / %s  %s (%.2fs)' % (name, suite, tname, result, dur))
        note = ''
        if status != 'ok':
            if status.startswith('test-exit') and f:
                note = status   # the log already explains it
            else:
                f += 1           # a build that did not build or test is a failure
                failures.append('%s: build step failed: %s' % (name, status))
                note = 'FAILED: ' + status
        elif rows is None:
            note = 'no testlog.json'
        elif not rows:
            note = 'no tests'
        table.append((name, p, f, s, note))
        total_pass += p
        total_fail += f
        total_skip += s

    for name, status, note in a.suite:
        ok = status == 'ok'
        if not ok:
            failures.append('%s: %s' % (name, status))
        table.append((name, int(ok), int(not ok), 0, note if ok else 'FAILED: %s %s' % (status, note)))
        total_pass += int(ok)
        total_fail += int(not ok)

    w = max(5, max(len(t[0]) for t in table))
    print('%-*s %7s %7s %7s  %s' % (w, 'build', 'passed', 'failed', 'skipped', 'note'))
    print('-' * (w + 32))
    for name, p, f, s, note in table:
        print('%-*s %7d %7d %7d  %s' % (w, name, p, f, s, note))
    if failures:
        print()
        print('failures:')
        for line in failures:
            print('  ' + line)
    print()
    line = '%d passed, %d failed' % (total_pass, total_fail)
    if total_skip:
        line += ', %d skipped' % total_skip
    print(line)
    return 1 if total_fail else 0


if __name__ == '__main__':
    sys.exit(main())
