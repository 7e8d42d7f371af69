# transcript_text.py - the escapes of tests/transcripts/*.txt (see its
# README), shared by the seed generators fuzz/make_seeds.py and
# fuzz/make_model_seeds.py.
import re


def unescape(t):
    """A transcript line's text as the bytes it stands for."""
    out = bytearray(); i = 0
    while i < len(t):
        m = re.match(r'\{\{(\\.|.)\*(\d+)\}\}', t[i:])
        if m:
            c = m.group(1)
            c = {'\\r': '\r', '\\n': '\n', '\\t': '\t'}.get(c, c[-1])
            out += c.encode('latin-1') * min(int(m.group(2)), 2000)
            i += m.end(); continue
        c = t[i]
        if c == '\\' and i + 1 < len(t):
            e = t[i + 1]; i += 2
            if e == 'x':
                out.append(int(t[i:i + 2], 16)); i += 2
            else:
                out += {'r': b'\r', 'n': b'\n', 't': b'\t',
                        '0': b'\0'}.get(e, e.encode('latin-1'))
            continue
        out += c.encode('latin-1'); i += 1
    return bytes(out)
