#!/usr/bin/env python3
# Lists C++ functions longer than N lines (default 60) outside tests/, longest first, for issue 16's
# "no function over ~60 lines without a reason". A brace-matching heuristic over text with comments
# and strings removed: it can miss or misname an odd declaration; a "// Long: <reason>" line just
# above a function is how a long one says why it stays long (those are listed too).
# usage: scripts/long_functions.py [N]   (from the repository root)
import re, sys, subprocess
N = int(sys.argv[1]) if len(sys.argv) > 1 else 60
files = subprocess.run(['git', 'ls-files', '*.cc', '*.h', '*.cu', '*.cuh'], capture_output=True, text=True).stdout.split()
files = [f for f in files if not f.startswith('tests/')]
def strip(src):
    out = []; i = 0; n = len(src)
    while i < n:
        c = src[i]
        if src.startswith('//', i):
            j = src.find('\n', i); j = n if j < 0 else j; i = j; continue
        if src.startswith('/*', i):
            j = src.find('*/', i + 2); j = n if j < 0 else j + 2
            out.append('\n' * src.count('\n', i, j)); i = j; continue
        if src.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', src[i:])
            if m:
                end = src.find(')' + m.group(1) + '"', i)
                out.append('""' + '\n' * src.count('\n', i, end)); i = end + len(m.group(1)) + 2; continue
        if c == '"' or (c == "'" and not (i > 0 and src[i-1].isalnum())):
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == '\\' else 1
            out.append(c + c); i = j + 1; continue
        out.append(c); i += 1
    return ''.join(out)
ctrl = re.compile(r'\b(if|for|while|switch|catch|do|else|try|namespace|struct|class|enum|union)\b[^;{}]*$|=\s*$|\]\s*\([^)]*\)[^;{}]*$|\]\s*$')
res = []
for f in files:
    raw = open(f, errors='replace').read()
    lines = raw.split('\n')
    s = strip(raw)
    depth = 0; stack = []; last = 0; line = 1
    for i, c in enumerate(s):
        if c == '\n': line += 1
        elif c == '{':
            head = s[last:i]
            is_fn = bool(re.search(r'\)\s*(const|override|final|noexcept|mutable|->\s*[\w:<>,\s*&]+|\s)*$', head) or re.search(r'\)\s*:\s*[\w:]+[({]', head)) and not ctrl.search(head.strip()) and not any(k for k in stack if k[0])
            name = ''
            if is_fn:
                m = re.findall(r'([~\w:]+(?:operator\S*)?)\s*\(', head)
                name = m[0] if m else '?'
            stack.append((is_fn, line, name)); last = i + 1
        elif c == '}':
            if stack:
                is_fn, start, name = stack.pop()
                if is_fn and line - start + 1 > N:
                    # The comment stands above the signature, which may span a few lines.
                    k = start - 2
                    while k > 0 and start - k < 6 and lines[k].strip() and not lines[k].strip().startswith('//'):
                        k -= 1
                    why = ' (reason given)' if k >= 0 and lines[k].strip().startswith('// Long:') else ''
                    res.append((line - start + 1, f, start, name + why))
            last = i + 1
        elif c == ';':
            last = i + 1
res.sort(reverse=True)
for n, f, l, name in res: print(f'{n:5d} {f}:{l} {name}')
