#!/usr/bin/env python3
"""The layout of workers/sip stays a layering: no cycles between its files.

A module is a file name without .c/.h (sip_server.c + sip_server.h).  Two
graphs are built and each must be acyclic:
  - includes: module A -> B when A.c or A.h includes "B.h";
  - calls:    module A -> B when A.o uses a symbol B.o defines (nm), which
              also catches an extern declared by hand instead of included.
And no module but sip_settings (the GUC variables) exports a variable: state
is owned by one file and reached through its functions.

Usage: sip_layout_check.py [workers/sip directory]   (objects from `make`)
Prints "ok sip layout: ..." or the cycle, and exits 1 on a failure.
"""
import os
import re
import subprocess
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', '..', 'workers', 'sip')
root = os.path.abspath(root)
failures = []


def module(name):
    return re.sub(r'\.(c|h|o)$', '', name)


def cycle(graph):
    """A cycle as a list of modules, or None."""
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


sources = sorted(f for f in os.listdir(root) if f.endswith(('.c', '.h')))
modules = sorted({module(f) for f in sources})
includes = {m: set() for m in modules}
for f in sources:
    with open(os.path.join(root, f), encoding='utf-8', errors='replace') as fh:
        for line in fh:
            mt = re.match(r'\s*#\s*include\s+"([^"/]+)\.h"', line)
            if mt and mt.group(1) in includes and mt.group(1) != module(f):
                includes[module(f)].add(mt.group(1))
c = cycle(includes)
if c:
    failures.append('include cycle: ' + ' -> '.join(c))

# objects of the current sources only (a renamed file's old .o may linger)
objects = sorted(f for f in os.listdir(root) if f.endswith('.o') and os.path.exists(os.path.join(root, module(f) + '.c')))
defined = {}
used = {}
exported_data = []
for o in objects:
    out = subprocess.run(['nm', os.path.join(root, o)], capture_output=True, text=True, check=True).stdout
    m = module(o)
    used[m] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == 'U':
            used[m].add(parts[1])
        elif len(parts) == 3 and parts[1] in 'TDBCR':
            defined[parts[2]] = m
            if parts[1] in 'DBC' and m != 'sip_settings':
                exported_data.append('%s exports the variable %s' % (o, parts[2]))
calls = {m: {defined[s] for s in used[m] if s in defined and defined[s] != m} for m in used}
c = cycle(calls)
if c:
    failures.append('call cycle: ' + ' -> '.join(c))
failures += exported_data
if not objects:
    failures.append('no objects in %s: run make first' % root)

if failures:
    for f in failures:
        print('FAIL sip layout: ' + f)
    sys.exit(1)


def order(graph):
    """modules, each after what it depends on"""
    done, out = set(), []

    def visit(n):
        if n in done:
            return
        done.add(n)
        for m in sorted(graph.get(n, ())):
            visit(m)
        out.append(n)

    for n in sorted(graph):
        visit(n)
    return out


print('ok sip layout: %d modules, no include or call cycle, no shared variables; layers: %s'
      % (len(modules), ' < '.join(order(calls))))
