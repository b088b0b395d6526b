import json
def plain(ch):
    o = ord(ch)
    return ch == '\n' or (o >= 0x20 and not (0x7f <= o <= 0xa0) and o not in (0x2028, 0x2029, 0x3000, 0xfeff))
def lit(s):
    if all(plain(ch) for ch in s):
        n = 1
        while ('"' + '#' * n) in s: n += 1
        return 'r' + '#' * n + '"' + s + '"' + '#' * n
    out = ''
    for ch in s:
        if ch == '\\': out += '\\\\'
        elif ch == '"': out += '\\"'
        elif ch == '\n': out += '\\n'
        elif ch == '\t': out += '\\t'
        elif plain(ch): out += ch
        else: out += '\\u{%x}' % ord(ch)
    return '"' + out + '"'
out = []
for c in json.load(open('out.json')):
    exp = 'Ok(%s)' % lit(c['expected']) if 'expected' in c else 'Err(%s)' % lit(c['error'])
    out.append('    Compat {\n        name: %s,\n        template: %s,\n        extra: %s,\n        expected: %s,\n    },' % (
        json.dumps(c['name']), lit(c['template']), lit(json.dumps(c['extra'], ensure_ascii=False)), exp))
open('cases.rs', 'w').write('\n'.join(out) + '\n')
