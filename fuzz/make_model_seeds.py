#!/usr/bin/env python3
# Seeds for fuzz/fuzz_model.c (input format at the top of that file): the
# client bytes of every transcript with its configuration, plus AUTH
# dialogues with a distinctive password. Run from the repository root:
#   python3 fuzz/make_model_seeds.py
import base64, glob, os, re

from transcript_text import unescape


EXT = {'PIPELINING': 0, 'SIZE': 1, '8BITMIME': 2, 'ENHANCEDSTATUSCODES': 3,
       'VRFY': 4, 'HELP': 5, 'AUTH': 6, 'STARTTLS': 7, 'CHUNKING': 8,
       'BINARYMIME': 9, 'DSN': 10, 'SMTPUTF8': 11, 'ETRN': 12}
SIZES = {0: 0, 1: 4, 2: 5, 10: 6, 12: 7, 40: 8, 100: 9, 1000: 10}
MECHS = ['PLAIN', 'LOGIN', 'CRAM-MD5', 'XOAUTH2', 'SCRAM-SHA-1', 'NTLM',
         'GSSAPI', 'DIGEST-MD5']
OUT = 'fuzz/corpus/fuzz_model'


def header(opts, refuse=0, defer=2, drain=1, end=0, seed=7):
    ext = 0x3f
    flags = 0
    bare = 0
    nmech, rot = 2, 0
    size = 0
    errs, authf, authl, outs = 6, 3, 2, 2
    for k, v in opts:
        if k == 'ext':
            if v == 'none':
                ext = 0
                continue
            for item in v.split(','):
                name = item[1:]
                bit = 1 << EXT[name]
                ext = ext | bit if item[0] == '+' else ext & ~bit
        elif k == 'flags':
            for f in v.split(','):
                flags |= {'502': 1, 'cleartext': 2, 'legacy': 4,
                          'require_auth': 8, 'require_tls': 16,
                          'proxy': 0x100, 'lmtp': 0x200}.get(f, 0)
        elif k == 'bare_lf':
            bare = ['normalize', 'reject', 'pass'].index(v)
        elif k == 'max_size':
            size = SIZES.get(int(v), 11)
        elif k == 'max_errors':
            errs = {1: 1, 2: 2, 3: 3, 5: 4, 10: 5}.get(int(v), 6)
        elif k == 'max_auth_failures':
            authf = {1: 1, 2: 2}.get(int(v), 3)
        elif k == 'max_auth_line':
            authl = 1 if int(v) <= 600 else 2
        elif k == 'output_size':
            outs = 1 if int(v) <= 1024 else 2
        elif k == 'auth_mechanisms':
            ms = v.split()
            rot = MECHS.index(ms[0])
            nmech = len(ms)
    b = bytearray(13)
    b[0] = bare + 3 * (flags & 0x3f)
    b[1] = ext & 0xff
    b[2] = (ext >> 8) | (0x20 if flags & 0x100 else 0) | \
        (0x40 if flags & 0x200 else 0)
    b[3] = nmech | (rot << 4)
    b[4] = size << 4
    b[5] = errs | (authf << 4)
    b[6] = authl | (outs << 2)
    b[7] = refuse | (defer << 3) | (drain << 6)
    b[8] = end | (63 << 2)
    b[9:13] = seed.to_bytes(4, 'little')
    return bytes(b)


def write(name, data):
    with open(os.path.join(OUT, name), 'wb') as f:
        f.write(data)


os.makedirs(OUT, exist_ok=True)
for path in sorted(glob.glob('tests/transcripts/*.txt')):
    opts, data, end = [], bytearray(), 0
    proxy = False
    for line in open(path, encoding='latin-1'):
        line = line.rstrip('\r\n')
        if line.startswith('O:'):
            k, _, v = line[2:].strip().partition('=')
            opts.append((k, v))
            proxy |= k == 'flags' and 'proxy' in v
        elif line.startswith('X: timeout'):
            end = 1
        elif line.startswith('C:') or line.startswith('R:'):
            body = line[2:]
            if body.startswith(' '):
                body = body[1:]
            data += unescape(body)
            if line.startswith('C:'):
                data += b'\r\n'
    if proxy:
        continue  # the harness writes the PROXY header itself
    name = os.path.basename(path)[:-4]
    write(name, header(opts, end=end) + bytes(data))
    write(name + '-host', header(opts, refuse=3, defer=4, drain=2, end=end,
                                 seed=99) + bytes(data))

# AUTH with a distinctive password, each way an exchange can end
user, pw = b'fuzzuser', b'Zq8-fuzz-secret-Pw4'
plain = base64.b64encode(b'\0' + user + b'\0' + pw)
auth = [('auth', 'cleartext'), ('ext', '+AUTH,+CHUNKING,+DSN,+SMTPUTF8,+ETRN')]
ehlo = b'EHLO client.example.org\r\n'
dialogues = {
    'plain-ir': b'AUTH PLAIN ' + plain + b'\r\nMAIL FROM:<a@b.example>\r\n',
    'plain-cont': b'AUTH PLAIN\r\n' + plain + b'\r\nNOOP\r\n',
    'plain-cancel': b'AUTH PLAIN\r\n*\r\nNOOP\r\n',
    'login': b'AUTH LOGIN\r\n' + base64.b64encode(user) + b'\r\n' +
             base64.b64encode(pw) + b'\r\nNOOP\r\n',
    'login-ir': b'AUTH LOGIN ' + base64.b64encode(user) + b'\r\n' +
                base64.b64encode(pw) + b'\r\nQUIT\r\n',
    'login-cancel': b'AUTH LOGIN ' + base64.b64encode(user) + b'\r\n*\r\n',
    'login-bad': b'AUTH LOGIN\r\n' + base64.b64encode(user) + b'\r\n' +
                 base64.b64encode(pw)[:-1] + b'!\r\nNOOP\r\n',
    'step': b'AUTH CRAM-MD5\r\n' + base64.b64encode(user + b' ' + pw) +
            b'\r\n' + base64.b64encode(pw + pw) + b'\r\n*\r\nNOOP\r\n',
    'step-ir': b'AUTH XOAUTH2 ' + base64.b64encode(b'user=x\1auth=Bearer ' +
                                                   pw) + b'\r\nNOOP\r\n',
    'retry': (b'AUTH PLAIN ' + plain + b'\r\n') * 4,
}
for name, d in dialogues.items():
    for i, (mopt, refuse) in enumerate([('PLAIN LOGIN CRAM-MD5 XOAUTH2', 0),
                                        ('PLAIN LOGIN CRAM-MD5 XOAUTH2', 4)]):
        o = [('flags', 'cleartext'), ('ext', '+AUTH'),
             ('auth_mechanisms', mopt)]
        write('auth-%s-%d' % (name, i),
              header(o, refuse=refuse, defer=3, seed=1000 + i) + ehlo + d)

# CHUNKING / LMTP / pipelining mixtures
mix = (b'LHLO x\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME SMTPUTF8\r\n'
       b'RCPT TO:<c@d.example> NOTIFY=SUCCESS ORCPT=rfc822;c@d.example\r\n'
       b'RCPT TO:<e@d.example>\r\nBDAT 5\r\nhelloBDAT 3 LAST\r\nabc'
       b'MAIL FROM:<>\r\nRCPT TO:<x@y.example>\r\nDATA\r\n..a\nb\r.\r\n'
       b'.\r\nRSET\r\nETRN @y.example\r\nQUIT\r\n')
o = [('flags', 'lmtp'), ('ext', '+CHUNKING,+BINARYMIME,+DSN,+SMTPUTF8,+ETRN')]
for pol in range(3):
    h = bytearray(header(o, refuse=2, defer=3, seed=5 + pol))
    h[0] = pol
    write('lmtp-mix-%d' % pol, bytes(h) + mix)
    h[2] &= ~0x40
    write('smtp-mix-%d' % pol, bytes(h) + b'EHLO' + mix[4:])

# LLSMTP_CFG_SYNC_CHECK (byte 6 bit 6; bit 7: an early talker; the seed's
# top two bits: how the client's bytes fall into reads)
sync = {
    'plain': ehlo + b'MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n'
             b'DATA\r\nhello\r\n.\r\nNOOP\r\nNOOP\r\nQUIT\r\n',
    'helo': b'HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n'
            b'DATA\r\nhi\r\n.\r\nQUIT\r\n',
    'auth': ehlo + b'AUTH PLAIN ' + plain + b'\r\nMAIL FROM:<a@b.example>\r\n'
            b'RCPT TO:<c@d.example>\r\nBDAT 3 LAST\r\nabcNOOP\r\n'
            b'AUTH LOGIN\r\n' + base64.b64encode(user) + b'\r\n' +
            base64.b64encode(pw) + b'\r\nQUIT\r\n',
}
for name, d in sync.items():
    for mode in range(4):
        for early in (0, 1):
            o = [('flags', 'cleartext'), ('ext', '+AUTH,+CHUNKING'),
                 ('auth_mechanisms', 'PLAIN LOGIN CRAM-MD5 XOAUTH2')]
            h = bytearray(header(o, refuse=1, defer=2,
                                 seed=(mode << 30) | 77))
            h[6] |= 0x40 | (0x80 if early else 0)
            write('sync-%s-%d%s' % (name, mode, '-early' if early else ''),
                  bytes(h) + d)
