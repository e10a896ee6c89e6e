#!/usr/bin/env python3
"""ABI check: the dynamic symbols libaioloop.so exports, the names in lib/aioloop.sym and
the functions the public header declares with AIOL_EXPORT must be the same set. Also
checks the SONAME, that every export carries a version node of the script, that nothing
but functions is exported, and that each node of the script is sorted."""
import argparse
import re
import shutil
import subprocess
import sys


def run(cmd):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout


def nm_exports(nm, lib):
    """{name: version} for defined functions, plus a list of other defined symbols."""
    funcs, others, versions = {}, [], set()
    for line in run([nm, '-D', '--defined-only', lib]).splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        kind, sym = parts[-2], parts[-1]
        name, _, version = sym.partition('@')
        version = version.lstrip('@')
        if kind == 'A':          # version node definitions (AIOLOOP_0.1)
            versions.add(name)
            continue
        if kind in ('T', 't', 'W', 'i'):
            funcs[name] = version
        else:
            others.append('%s %s' % (kind, sym))
    return funcs, others, versions


def strip_c_comments(text):
    return re.sub(r'/\*.*?\*/|//[^\n]*', ' ', text, flags=re.S)


def sym_names(path):
    """[(node, [names in file order])] from a GNU ld version script."""
    text = strip_c_comments(open(path).read())
    text = re.sub(r'#[^\n]*', ' ', text)
    nodes = []
    for m in re.finditer(r'([A-Za-z_][\w.]*)\s*\{(.*?)\}\s*([\w.]*)\s*;', text, re.S):
        node, body = m.group(1), m.group(2)
        names, section = [], 'global'
        for tok in re.split(r'[;\s]+', body):
            if not tok:
                continue
            if tok.endswith(':'):
                section = tok[:-1]
                continue
            if section == 'global':
                names.append(tok)
        nodes.append((node, names))
    return nodes


def header_names(path):
    text = strip_c_comments(open(path).read())
    # Drop preprocessor lines (the #define of AIOL_EXPORT itself), joining continuations.
    text = re.sub(r'^[ \t]*#(?:[^\n]*\\\n)*[^\n]*', ' ', text, flags=re.M)
    return set(re.findall(r'\bAIOL_EXPORT\b[^;{}()]*?\b(aiol_\w+)\s*\(', text))


def soname(lib):
    if shutil.which('readelf'):
        out = run(['readelf', '-d', lib])
        m = re.search(r'\(SONAME\)\s+Library soname: \[([^\]]+)\]', out)
    else:
        out = run(['objdump', '-p', lib])
        m = re.search(r'^\s*SONAME\s+(\S+)', out, re.M)
    return m.group(1) if m else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--lib', required=True)
    ap.add_argument('--sym', required=True)
    ap.add_argument('--header', required=True)
    ap.add_argument('--soname', default='libaioloop.so.0')
    ap.add_argument('--nm', default='nm')
    a = ap.parse_args()

    failures = []

    def check(ok, what, detail=''):
        print('%s: %s' % ('ok' if ok else 'FAIL', what))
        if not ok:
            failures.append(what)
            if detail:
                print(detail)

    funcs, others, versions = nm_exports(a.nm, a.lib)
    nodes = sym_names(a.sym)
    script = {n for _, names in nodes for n in names}
    header = header_names(a.header)
    exported = set(funcs)
    print('%d exported functions, %d names in %s, %d AIOL_EXPORT declarations' %
          (len(exported), len(script), a.sym, len(header)))

    def diff(x, xn, y, yn):
        lines = []
        for n in sorted(x - y):
            lines.append('  only in %s: %s' % (xn, n))
        for n in sorted(y - x):
            lines.append('  only in %s: %s' % (yn, n))
        return '\n'.join(lines)

    check(exported == script, 'nm -D exports == version script names',
          diff(exported, 'nm -D', script, 'aioloop.sym'))
    check(exported == header, 'nm -D exports == AIOL_EXPORT functions of the header',
          diff(exported, 'nm -D', header, 'aioloop.h'))
    check(script == header, 'version script names == AIOL_EXPORT functions of the header',
          diff(script, 'aioloop.sym', header, 'aioloop.h'))
    check(not others, 'no exported data or other non-function symbols',
          '\n'.join('  ' + o for o in others))

    node_names = [n for n, _ in nodes]
    unversioned = sorted(n for n, v in funcs.items() if v not in node_names)
    check(not unversioned, 'every export carries a version node of the script',
          '\n'.join('  %s@%s' % (n, funcs[n] or '(none)') for n in unversioned))
    missing_nodes = sorted(set(node_names) - versions)
    check(not missing_nodes, 'every node of the script is defined in the library',
          '  missing: ' + ', '.join(missing_nodes))
    for node, names in nodes:
        check(names == sorted(names), 'node %s is in alphabetical order' % node,
              '  expected: ' + ' '.join(sorted(names)))
        dups = sorted({n for n in names if names.count(n) > 1})
        check(not dups, 'node %s has no duplicates' % node, '  ' + ' '.join(dups))
    all_listed = [n for _, names in nodes for n in names]
    check(len(all_listed) == len(set(all_listed)), 'no name is listed in two nodes')

    got = soname(a.lib)
    check(got == a.soname, 'SONAME is %s' % a.soname, '  got: %s' % got)

    if failures:
        print('%d check(s) failed' % len(failures))
        return 1
    print('all export checks passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
